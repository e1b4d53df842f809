"""Kernel loaders on real headers: a multiboot ELF and a PVH ELF built here with gcc/ld and
booted, a bzImage with a hand-built setup header booted through the 64-bit entry, and
Debian's kernel (skipped when guests/linux has not unpacked one)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from god.boot import BootInputs, LoaderError, Module, detect_format, load_kernel
from god.boot import layout as L
from god.boot.linux import parse_header
from god.boot.multiboot import find_header
from god.memory import GuestMemory
from guestbuild import build_asm, build_elf32, run_guest

PUTS32 = """
/* puts(%edi): NUL-terminated string to COM1 */
puts:
    mov $0x3f8, %dx
1:  movb (%edi), %al
    test %al, %al
    jz 2f
    out %al, %dx
    inc %edi
    jmp 1b
2:  ret
/* putn(%edi, %ecx): ecx bytes */
putn:
    mov $0x3f8, %dx
1:  test %ecx, %ecx
    jz 2f
    movb (%edi), %al
    out %al, %dx
    inc %edi
    dec %ecx
    jmp 1b
2:  ret
nl: mov $0x3f8, %dx
    mov $'\\n', %al
    out %al, %dx
    ret
"""

MULTIBOOT_S = """
.section .multiboot, "a"
.align 4
.long 0x1BADB002, 0x00000003, -(0x1BADB002 + 0x00000003)
.text
.code32
.globl _start
_start:
    mov $0x9f000, %esp
    cmp $0x2BADB002, %eax
    jne bad
    mov %ebx, %esi
    mov 16(%esi), %edi           /* cmdline */
    call puts
    call nl
    mov 24(%esi), %ebx           /* mods_addr */
    mov (%ebx), %edi             /* mod_start */
    mov 4(%ebx), %ecx            /* mod_end */
    sub %edi, %ecx
    call putn
    call nl
    mov 8(%ebx), %edi            /* module string */
    call puts
    call nl
    mov 20(%esi), %eax           /* mods_count */
    shl $4, %eax
    mov 44(%esi), %ecx           /* mmap_length / 24 = entries */
    mov %ecx, %ebp
    mov %ebp, %eax
    xor %edx, %edx
    mov $24, %ecx
    div %ecx
    mov 20(%esi), %ecx
    shl $4, %ecx
    or %ecx, %eax                /* exit value = mods_count << 4 | mmap entries */
    mov $0xf4, %dx
    out %al, %dx
bad:
    mov $0xf4, %dx
    mov $0x7f, %al
    out %al, %dx
""" + PUTS32

MULTIBOOT_LD = """
ENTRY(_start)
SECTIONS { . = 0x100000; .text : { *(.multiboot) *(.text*) } .data : { *(.data*) } }
"""

PVH_S = """
.section .note.Xen, "a"
.align 4
.long 4, 4, 18
.asciz "Xen"
.long _start
.text
.code32
.globl _start
_start:
    mov $0x9f000, %esp
    cmpl $0x336ec578, (%ebx)
    jne bad
    mov %ebx, %esi
    mov 24(%esi), %edi           /* cmdline_paddr (low half) */
    call puts
    call nl
    mov 16(%esi), %ebx           /* modlist_paddr */
    mov (%ebx), %edi             /* paddr */
    mov 8(%ebx), %ecx            /* size */
    call putn
    call nl
    mov 16(%ebx), %edi           /* module cmdline */
    call puts
    call nl
    mov 12(%esi), %eax           /* nr_modules */
    shl $4, %eax
    or 48(%esi), %eax            /* memmap_entries */
    mov $0xf4, %dx
    out %al, %dx
bad:
    mov $0xf4, %dx
    mov $0x7f, %al
    out %al, %dx
""" + PUTS32

PVH_LD = """
ENTRY(_start)
PHDRS { text PT_LOAD; note PT_NOTE; }
SECTIONS {
  . = 0x100000;
  .text : { *(.text*) } :text
  .note : { *(.note.Xen) } :text :note
}
"""


def test_multiboot_elf_boots_with_cmdline_and_module(kvm, gcc, tmp_path):
    elf = build_elf32(tmp_path, MULTIBOOT_S, "mb", MULTIBOOT_LD)
    assert detect_format(elf.read_bytes()) == "multiboot"
    r = run_guest(elf, flat_addr=None, cmdline="console=ttyS0 mb=1",
                  modules=[Module(b"MODULE-DATA", "initrd.img arg=2")])
    assert r.text == "console=ttyS0 mb=1\nMODULE-DATA\ninitrd.img arg=2\n", r.text
    nmap = len(L.memory_map(32 << 20))
    assert r.result.status == (((1 << 4) | nmap) << 1 | 1) & 0xFF, r.result


def test_multiboot_via_cli_initrd_syntax(kvm, gcc, tmp_path):
    elf = build_elf32(tmp_path, MULTIBOOT_S, "mb", MULTIBOOT_LD)
    mod = tmp_path / "mod.bin"
    mod.write_bytes(b"CLI-MODULE")
    p = subprocess.run([sys.executable, "-m", "god", "run", str(elf), "--append", "from cli",
                        "--initrd", f"{mod} x=1", "--mem", "32"], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    # multiboot's cmdline starts with the kernel's path, as QEMU and GRUB give it
    assert p.stdout == f"{elf} from cli\nCLI-MODULE\n{mod} x=1\n".encode(), p.stderr


def test_pvh_elf_boots_with_start_info(kvm, gcc, tmp_path):
    elf = build_elf32(tmp_path, PVH_S, "pvh", PVH_LD)
    assert detect_format(elf.read_bytes()) == "pvh"
    r = run_guest(elf, flat_addr=None, cmdline="pvh cmdline",
                  modules=[Module(b"INITRD!", "rd")])
    assert r.text == "pvh cmdline\nINITRD!\nrd\n", r.text
    nmap = len(L.memory_map(32 << 20))
    assert r.result.status == (((1 << 4) | nmap) << 1 | 1) & 0xFF, r.result


BZ_ENTRY64 = """
.globl _start
_start:
    .org 0x200                   /* the 64-bit entry is at load address + 0x200 */
    cmpl $0x53726448, 0x202(%rsi)  /* the setup header was copied to the zero page */
    jne bad
    mov %rsi, %rbx
    mov 0x228(%rbx), %edi        /* cmd_line_ptr */
    call puts
    mov 0x218(%rbx), %edi        /* ramdisk_image */
    mov 0x21c(%rbx), %ecx        /* ramdisk_size */
    call putn
    movzbl 0x1e8(%rbx), %eax     /* e820_entries */
    mov $0xf4, %dx
    out %al, %dx
bad:
    mov $0xf4, %dx
    mov $0x7f, %al
    out %al, %dx
puts:
    mov $0x3f8, %dx
1:  movb (%rdi), %al
    test %al, %al
    jz 2f
    out %al, %dx
    inc %rdi
    jmp 1b
2:  ret
putn:
    mov $0x3f8, %dx
1:  test %ecx, %ecx
    jz 2f
    movb (%rdi), %al
    out %al, %dx
    inc %rdi
    dec %ecx
    jmp 1b
2:  ret
"""


def make_bzimage(kernel: bytes) -> bytes:
    setup_sects = 1
    hdr = bytearray((setup_sects + 1) * 512)
    hdr[0x1F1] = setup_sects
    hdr[0x1FE:0x200] = b"\x55\xaa"
    hdr[0x200:0x202] = b"\xeb\x66"                    # jmp over the header: end = 0x268
    hdr[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", hdr, 0x206, 0x020F)         # boot protocol 2.15
    hdr[0x211] = 0x01                                  # LOADED_HIGH
    struct.pack_into("<I", hdr, 0x214, 0x100000)
    struct.pack_into("<I", hdr, 0x22C, 0x7FFFFFFF)     # initrd_addr_max
    struct.pack_into("<I", hdr, 0x230, 0x200000)
    struct.pack_into("<H", hdr, 0x236, 0x0001)         # XLF_KERNEL_64
    struct.pack_into("<I", hdr, 0x238, 2047)           # cmdline_size
    struct.pack_into("<I", hdr, 0x260, 0x10000)        # init_size
    return bytes(hdr) + kernel


def test_bzimage_64bit_entry_zero_page(kvm, gcc, tmp_path):
    blob = build_asm(tmp_path, BZ_ENTRY64, "bz", 0x100000).read_bytes()
    img = tmp_path / "bzImage"
    img.write_bytes(make_bzimage(blob))
    assert detect_format(img.read_bytes()) == "bzimage"
    r = run_guest(img, flat_addr=None, cmdline="root=/dev/vda ", modules=[Module(b"RD1"), Module(b"RD2")])
    assert r.text == "root=/dev/vda RD1RD2", r.text  # initrds concatenate
    assert r.result.status == (len(L.memory_map(32 << 20)) << 1) | 1


def test_bzimage_cmdline_too_long_is_refused(tmp_path):
    mem = GuestMemory(L.ram_layout(32 << 20))
    try:
        with pytest.raises(LoaderError, match="command line"):
            load_kernel(mem, BootInputs(make_bzimage(b"\x90" * 0x300), "x" * 3000, [], 32 << 20))
    finally:
        mem.close()


def test_unknown_formats_are_refused():
    with pytest.raises(LoaderError, match="unknown kernel format"):
        detect_format(b"\x00" * 1024)
    elf_no_note = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x100000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    with pytest.raises(LoaderError, match="PVH note"):
        detect_format(elf_no_note)


def test_multiboot_header_needs_valid_checksum():
    good = struct.pack("<III", 0x1BADB002, 0, (-0x1BADB002) & 0xFFFFFFFF)
    bad = struct.pack("<III", 0x1BADB002, 0, 0)
    assert find_header(b"\0" * 64 + good) == (64, 0)
    assert find_header(b"\0" * 64 + bad) is None
    assert find_header(b"\0" * 8192 + good) is None  # beyond the first 8 KiB


def test_loader_refuses_kernel_larger_than_ram(gcc, tmp_path):
    blob = build_asm(tmp_path, BZ_ENTRY64, "bz", 0x100000).read_bytes()
    mem = GuestMemory(L.ram_layout(4 << 20))
    try:
        with pytest.raises(LoaderError):
            load_kernel(mem, BootInputs(blob + b"\0" * (8 << 20), "", [], 4 << 20), 0x100000, 64)
    finally:
        mem.close()


# --- Debian's kernel (unpacked by guests/linux into the cache) ----------------------------

def _debian_kernel() -> tuple[Path, Path] | None:
    cache = Path.home() / ".cache" / "pytest-vmm"
    for d in sorted(cache.glob("linux-*"), reverse=True):
        if not (d / ".complete").exists():
            continue
        vmlinuz = sorted((d / "boot").glob("vmlinuz-*"))
        if vmlinuz and (d / "vmlinux").exists():
            return vmlinuz[0], d / "vmlinux"
    return None


@pytest.fixture
def debian_kernel() -> tuple[Path, Path]:
    k = _debian_kernel()
    if k is None:
        pytest.skip("no Debian kernel unpacked in ~/.cache/pytest-vmm/linux-* "
                    "(run python guests/linux/build.py --out DIR)")
    return k


def test_debian_bzimage_setup_header(debian_kernel):
    data = debian_kernel[0].read_bytes()
    hdr = parse_header(data)
    assert hdr.version >= 0x020F
    assert hdr.xloadflags & 1            # has the 64-bit entry god uses
    assert hdr.relocatable and hdr.pref_address == 0x1000000
    assert hdr.setup_size + hdr.payload_offset + hdr.payload_length <= len(data)
    payload = data[hdr.setup_size + hdr.payload_offset:][:6]
    assert payload[:2] in (b"\xfd7", b"\x1f\x8b", b"\x28\xb5", b"\x02\x21", b"\x89\x4c") or payload[:4] == b"\x28\xb5\x2f\xfd"


def test_debian_kernels_load(debian_kernel):
    vmlinuz, vmlinux = debian_kernel
    for path, fmt in ((vmlinuz, "bzimage"), (vmlinux, "pvh")):
        mem = GuestMemory(L.ram_layout(256 << 20))
        try:
            got, entry = load_kernel(mem, BootInputs(path.read_bytes(), "console=ttyS0", [Module(b"rd")], 256 << 20))
            assert got == fmt
            if fmt == "bzimage":
                assert entry.mode == "long64" and entry.rip == 0x1000000 + 0x200
                assert mem.read(L.BOOT_INFO_ADDR + 0x202, 4) == b"HdrS"
                assert mem.read_u32(L.BOOT_INFO_ADDR + 0x228) == L.CMDLINE_ADDR
            else:
                assert entry.mode == "prot32" and entry.regs["rbx"] == L.BOOT_INFO_ADDR
                assert mem.read_u32(L.BOOT_INFO_ADDR) == 0x336EC578
            assert mem.read_cstring(L.CMDLINE_ADDR) == b"console=ttyS0"
        finally:
            mem.close()


def test_mp_table_checksums_and_entries():
    from god.boot import mptable
    mpf, table = mptable.build(2)
    assert mpf[:4] == b"_MP_" and sum(mpf) & 0xFF == 0 and len(mpf) == 16
    assert struct.unpack_from("<I", mpf, 4)[0] == mptable.MPC_ADDR
    assert table[:4] == b"PCMP" and sum(table) & 0xFF == 0
    length, count, lapic = struct.unpack_from("<H", table, 4)[0], struct.unpack_from("<H", table, 34)[0], \
        struct.unpack_from("<I", table, 36)[0]
    assert length == len(table) and lapic == 0xFEE00000
    types = []
    off = 44
    for _ in range(count):
        types.append(table[off])
        off += 20 if table[off] == 0 else 8
    assert off == len(table)
    assert types.count(0) == 2 and types.count(2) == 1 and types.count(3) == 16
    assert table[44 + 3] == 3 and table[64 + 3] == 1  # BSP flag on CPU 0 only
