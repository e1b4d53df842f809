"""Initial x86 CPU state for each boot mode, set through KVM_SET_SREGS / KVM_SET_REGS.

No firmware runs: god puts the BSP directly into the mode a boot protocol promises
(PLATFORM.md: under PVM, real mode and long mode set this way work).
"""

from __future__ import annotations

from god.boot import layout as L
from god.kvm.structs import KvmRegs, KvmSegment, KvmSregs
from god.memory import GuestMemory

CR0_PE, CR0_ET, CR0_NE, CR0_PG = 0x1, 0x10, 0x20, 0x80000000
CR4_PAE = 0x20
EFER_LME, EFER_LMA = 0x100, 0x400

GDT_CODE32 = 0x00CF9B000000FFFF
GDT_CODE64 = 0x00AF9B000000FFFF
GDT_DATA = 0x00CF93000000FFFF
BOOT_CS, BOOT_DS = 0x10, 0x18  # Linux's __BOOT_CS / __BOOT_DS; fine for PVH/multiboot too


class EntryState:
    """Where and how the BSP starts: mode is 'real16', 'prot32' or 'long64'."""
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    __slots__ = ("cs_base", "mode", "regs", "rip")

    def __init__(self, mode: str, rip: int, regs: dict[str, int] | None = None,
                 cs_base: int = 0) -> None:
        self.mode = mode
        self.rip = rip
        self.regs: dict[str, int] = {} if regs is None else regs
        self.cs_base = cs_base  # real mode only


def _flat(seg: KvmSegment, selector: int, code: bool, long: bool) -> None:
    seg.base, seg.limit, seg.selector = 0, 0xFFFFFFFF, selector
    seg.type = 0xB if code else 0x3
    seg.present, seg.dpl, seg.s, seg.g, seg.avl, seg.unusable = 1, 0, 1, 1, 0, 0
    seg.l = 1 if long else 0
    seg.db = 0 if long else 1


def write_gdt(mem: GuestMemory, long: bool) -> None:
    mem.pack_into(L.GDT_ADDR, "<4Q", 0, 0, GDT_CODE64 if long else GDT_CODE32, GDT_DATA)


def write_identity_page_tables(mem: GuestMemory) -> None:
    """Identity map 0..4 GiB with 2 MiB pages (covers kernel, boot info, initrd, MMIO)."""
    mem.fill(L.PML4_ADDR, 6 * L.PAGE)
    mem.write_u64(L.PML4_ADDR, L.PDPT_ADDR | 0x3)
    for i in range(4):
        mem.write_u64(L.PDPT_ADDR + 8 * i, (L.PD_ADDR + i * L.PAGE) | 0x3)
    entries = b"".join(((i << 21) | 0x83).to_bytes(8, "little") for i in range(2048))
    mem.write(L.PD_ADDR, entries)


def apply(sregs: KvmSregs, regs: KvmRegs, mem: GuestMemory, st: EntryState) -> None:
    """Fill sregs/regs (as read from a fresh vCPU) for st, writing GDT/page tables."""
    segs = (sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss)
    if st.mode == "real16":
        sel = st.cs_base >> 4
        for seg in segs:
            seg.selector, seg.base, seg.limit = sel, sel << 4, 0xFFFF
            seg.type = 0x3
            seg.present, seg.dpl, seg.db, seg.s, seg.l, seg.g, seg.unusable = 1, 0, 0, 1, 0, 0, 0
        sregs.cs.type = 0xB
        sregs.cr0 = (sregs.cr0 & ~(CR0_PE | CR0_PG)) | CR0_ET
        sregs.cr4, sregs.efer = 0, 0
    else:
        long = st.mode == "long64"
        write_gdt(mem, long)
        sregs.gdt.base, sregs.gdt.limit = L.GDT_ADDR, 4 * 8 - 1
        sregs.idt.base, sregs.idt.limit = 0, 0
        _flat(sregs.cs, BOOT_CS, True, long)
        for seg in segs[1:]:
            _flat(seg, BOOT_DS, False, False)
        sregs.cr0 = CR0_PE | CR0_ET | CR0_NE
        sregs.cr4, sregs.efer = 0, 0
        if long:
            write_identity_page_tables(mem)
            sregs.cr3 = L.PML4_ADDR
            sregs.cr4 = CR4_PAE
            sregs.efer = EFER_LME | EFER_LMA
            sregs.cr0 |= CR0_PG
    # A usable busy TSS and LDT: VMX entry checks insist, PVM/SVM do not mind.
    sregs.tr.base, sregs.tr.limit, sregs.tr.selector, sregs.tr.type = 0, 0x67, 0, 0xB
    sregs.tr.present, sregs.tr.s, sregs.tr.unusable = 1, 0, 0
    sregs.ldt.base, sregs.ldt.limit, sregs.ldt.selector, sregs.ldt.type = 0, 0xFFFF, 0, 0x2
    sregs.ldt.present, sregs.ldt.s, sregs.ldt.unusable = 1, 0, 0
    for name in KvmRegs._fields_:
        setattr(regs, name[0], 0)
    regs.rflags = 0x2  # interrupts off, reserved bit 1 set
    regs.rip = st.rip
    # No boot protocol promises a stack, but a usable one turns an early `call` in a
    # hand-written kernel into working code instead of a triple fault.
    regs.rsp = L.FLAT_STACK_TOP if st.mode != "real16" else 0xFFF0
    for k, v in st.regs.items():
        setattr(regs, k, v)
