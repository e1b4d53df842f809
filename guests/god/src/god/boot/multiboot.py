"""Multiboot v1, as QEMU's -kernel loads it: header in the first 8 KiB (magic 0x1BADB002),
either an ELF loaded by physical address or the a.out kludge (flag 16) giving load and entry
addresses. Modules go page-aligned after the kernel; each module's string is its command
line. The kernel starts in 32-bit protected mode with EAX=0x2BADB002, EBX=&multiboot_info.

The kernel's command line (multiboot spec 0.6.96 section 3.3, `cmdline`) starts with the
kernel image's path, then the user's arguments, as QEMU ("%s %s" of -kernel and -append) and
GRUB ("multiboot PATH ARGS") both pass it: kernels take argv[0] from it.
"""

from __future__ import annotations

import struct

from god.boot import elf as E
from god.boot import layout as L
from god.boot.common import BootInputs, StringArea, write_cmdline
from god.boot.cpu import EntryState
from god.boot.errors import LoaderError
from god.memory import GuestMemory, GuestMemoryError

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
SEARCH = 8192
FLAG_AOUT_KLUDGE = 1 << 16
INFO_MEM, INFO_CMDLINE, INFO_MODS, INFO_MMAP, INFO_LOADER = 1, 1 << 2, 1 << 3, 1 << 6, 1 << 9
MODS_OFF, MMAP_OFF = 0x100, 0x400
MBI = struct.Struct("<22I")  # 88 bytes


def find_header(data: bytes) -> tuple[int, int] | None:
    """(file offset, flags) of a valid multiboot v1 header, or None."""
    for off in range(0, min(len(data), SEARCH) - 11, 4):
        magic, flags, csum = struct.unpack_from("<III", data, off)
        if magic == HEADER_MAGIC and (magic + flags + csum) & 0xFFFFFFFF == 0:
            return off, flags
    return None


def kernel_cmdline(inp: BootInputs) -> str:
    """'PATH ARGS' (QEMU's exact form, so 'PATH ' with no arguments); only ARGS when the
    caller gave no path (god used as a library)."""
    return f"{inp.kernel_path} {inp.cmdline}" if inp.kernel_path else inp.cmdline


def load_multiboot(mem: GuestMemory, inp: BootInputs) -> EntryState:
    hit = find_header(inp.kernel)
    if hit is None:
        raise LoaderError("no multiboot header in the first 8 KiB")
    hoff, flags = hit
    data = inp.kernel
    if flags & FLAG_AOUT_KLUDGE:
        if hoff + 32 > len(data):
            raise LoaderError("truncated multiboot header")
        header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from("<5I", data, hoff + 12)
        if load_addr > header_addr:
            raise LoaderError("multiboot header_addr below load_addr")
        file_off = hoff - (header_addr - load_addr)
        if file_off < 0:
            raise LoaderError("multiboot load address lies before the file start")
        size = (load_end - load_addr) if load_end else len(data) - file_off
        if size < 0 or file_off + size > len(data):
            raise LoaderError("multiboot load range runs past the end of the file")
        try:
            mem.write(load_addr, data[file_off:file_off + size])
            kernel_end = load_addr + size
            if bss_end > kernel_end:
                mem.fill(kernel_end, bss_end - kernel_end)
                kernel_end = bss_end
        except GuestMemoryError as e:
            raise LoaderError(f"multiboot kernel does not fit in guest RAM: {e}") from e
    elif E.is_elf(data):
        elf = E.parse(data)
        _, kernel_end = E.load(elf, data, mem)
        entry = E.virt_to_phys(elf, elf.entry)
    else:
        raise LoaderError("multiboot image is neither ELF nor uses the a.out kludge (flag 16)")
    if entry >= 1 << 32:
        raise LoaderError(f"multiboot entry {entry:#x} is above 4 GiB")

    info = L.BOOT_INFO_ADDR
    mem.fill(info, L.BOOT_INFO_SIZE)
    text = kernel_cmdline(inp)
    cmdline = write_cmdline(mem, text)
    strings = StringArea(mem, L.CMDLINE_ADDR + len(text.encode()) + 1,
                         L.CMDLINE_ADDR + L.CMDLINE_MAX)
    pos = L.align_up(kernel_end, L.PAGE)
    for i, m in enumerate(inp.modules):
        if MODS_OFF + (i + 1) * 16 > MMAP_OFF:
            raise LoaderError("too many multiboot modules")
        try:
            mem.write(pos, m.data)
        except GuestMemoryError as e:
            raise LoaderError(f"multiboot module {i} does not fit in guest RAM: {e}") from e
        mem.write(info + MODS_OFF + 16 * i,
                  struct.pack("<4I", pos, pos + len(m.data), strings.add(m.cmdline), 0))
        pos = L.align_up(pos + len(m.data), L.PAGE)
    mmap = L.memory_map(inp.mem_bytes)
    for i, (addr, size, typ) in enumerate(mmap):
        # Each entry starts with its own size (20), which excludes the size field itself.
        mem.write(info + MMAP_OFF + 24 * i, struct.pack("<IQQI", 20, addr, size, typ))
    low_end = mem.regions[0].end
    fields = [0] * 22
    fields[0] = INFO_MEM | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER
    fields[1] = L.EBDA_ADDR >> 10                       # mem_lower, KiB
    fields[2] = (low_end - L.KERNEL_ADDR) >> 10         # mem_upper, KiB above 1 MiB
    fields[3] = 0xFFFFFFFF                              # boot_device: none
    fields[4] = cmdline
    fields[5] = len(inp.modules)
    fields[6] = info + MODS_OFF
    fields[11] = 24 * len(mmap)                         # mmap_length
    fields[12] = info + MMAP_OFF                        # mmap_addr
    fields[16] = strings.add("god")                     # boot_loader_name
    mem.write(info, MBI.pack(*fields))
    return EntryState("prot32", entry, {"rax": BOOTLOADER_MAGIC, "rbx": info})
