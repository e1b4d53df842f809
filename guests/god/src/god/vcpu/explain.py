"""Readable explanations for vCPU crashes: which instruction stopped the vCPU and why.

KVM_EXIT_INTERNAL_ERROR with suberror 1 means KVM's instruction emulator gave up. Under PVM
the emulator runs all guest ring-0 code and cannot do SSE/x87/xsave/clac/int3 (PLATFORM.md),
so naming the instruction class is usually the whole diagnosis.
"""

from __future__ import annotations

SSE_NAMES = {0x10: "movups", 0x11: "movups", 0x28: "movaps", 0x29: "movaps", 0x57: "xorps",
             0x54: "andps", 0x58: "addps", 0x59: "mulps", 0x6E: "movd/movq", 0x7E: "movd/movq",
             0x6F: "movdqa/movq", 0x7F: "movdqa/movq", 0xEF: "pxor", 0xD6: "movq"}
LEGACY_PREFIXES = {0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65}


def classify(code: bytes, long_mode: bool = True) -> str | None:
    """Name the instruction class at the start of code (a few bytes at RIP), or None."""
    i = 0
    rex_w = False
    while i < len(code) and code[i] in LEGACY_PREFIXES:
        i += 1
    if long_mode and i < len(code) and 0x40 <= code[i] <= 0x4F:
        rex_w = bool(code[i] & 8)
        i += 1
    if i >= len(code):
        return None
    op = code[i]
    if op == 0xCC:
        return "int3 (breakpoint exception delivery)"
    if op == 0x9B:
        return "fwait (x87)"
    if 0xD8 <= op <= 0xDF:
        return "x87 floating-point instruction"
    if op == 0xF4:
        return "hlt"
    if op == 0xC4 or op == 0xC5:
        return "AVX (VEX-encoded) instruction"
    if op == 0x62 and long_mode:
        return "AVX-512 (EVEX-encoded) instruction"
    if op != 0x0F or i + 1 >= len(code):
        return None
    op2 = code[i + 1]
    modrm = code[i + 2] if i + 2 < len(code) else 0
    reg = (modrm >> 3) & 7
    if op2 == 0x01 and modrm == 0xCA:
        return "clac (SMAP)"
    if op2 == 0x01 and modrm == 0xCB:
        return "stac (SMAP)"
    if op2 == 0x0B:
        return "ud2 (deliberate invalid opcode)"
    if op2 == 0xAE:
        names = {0: "fxsave", 1: "fxrstor", 2: "ldmxcsr (SSE)", 3: "stmxcsr (SSE)",
                 4: "xsave", 5: "xrstor", 6: "xsaveopt", 7: "clflush"}
        if modrm >> 6 == 3:
            return {5: "lfence", 6: "mfence", 7: "sfence"}.get(reg)
        return names[reg]
    if op2 == 0xC7 and reg == 1:
        return "cmpxchg16b" if rex_w else "cmpxchg8b"
    if op2 == 0x38 or op2 == 0x3A:
        return "SSE instruction (SSSE3/SSE4)"
    if 0x10 <= op2 <= 0x17 or 0x28 <= op2 <= 0x2F or 0x50 <= op2 <= 0x7F \
            or op2 in (0xC2, 0xC3, 0xC4, 0xC5, 0xC6) or 0xD0 <= op2 <= 0xFF:
        name = SSE_NAMES.get(op2)
        return f"SSE instruction ({name})" if name else "SSE/MMX instruction"
    return None


def explain(code: bytes, cpl: int, long_mode: bool, flavour: str) -> str:
    kind = classify(code, long_mode)
    if kind is None:
        what = "an instruction KVM's emulator could not handle"
    else:
        what = kind
    where = f"in ring {cpl}"
    if flavour == "pvm" and cpl == 0:
        why = "PVM runs guest ring-0 code in KVM's instruction emulator, which lacks it; "
        if kind is not None and any(w in kind for w in ("SSE", "MMX", "x87", "AVX", "fwait",
                                                        "mxcsr")):
            why += ("build kernel-mode code with -mgeneral-regs-only -mno-red-zone (no "
                    "SSE/x87) or move the work to ring 3")
        else:
            why += ("keep it out of ring 0 (a kernel that picks it from CPUID needs that bit "
                    "masked) or run the code in ring 3")
        return f"{what} {where} under PVM: {why}"
    return f"{what} {where}"
