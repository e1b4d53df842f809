"""PVH boot (Xen's direct-boot ABI, also used by QEMU and Firecracker for ELF kernels).

The ELF names its 32-bit entry in a note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18).
The kernel starts in 32-bit protected mode, paging off, flat CS/DS, with EBX pointing at a
struct hvm_start_info (version 1: command line, module list and memory map).
"""

from __future__ import annotations

import struct

from god.boot import elf as E
from god.boot import layout as L
from god.boot.common import BootInputs, StringArea, place_top, write_cmdline
from god.boot.cpu import EntryState
from god.boot.errors import LoaderError
from god.memory import GuestMemory

XEN_ELFNOTE_PHYS32_ENTRY = 18
HVM_START_MAGIC = 0x336EC578
START_INFO = struct.Struct("<IIIIQQQQII")  # 56 bytes
MODLIST_ENTRY = struct.Struct("<QQQQ")     # 32 bytes
MEMMAP_ENTRY = struct.Struct("<QQII")      # 24 bytes
MODLIST_OFF, MEMMAP_OFF = 0x40, 0x400
MAX_MODULES = (MEMMAP_OFF - MODLIST_OFF) // MODLIST_ENTRY.size


def pvh_entry(elf: E.Elf) -> int | None:
    for n in elf.notes:
        if n.name == b"Xen" and n.type == XEN_ELFNOTE_PHYS32_ENTRY and len(n.desc) >= 4:
            return int.from_bytes(n.desc[:4], "little")  # a 32-bit physical address
    return None


def load_pvh(mem: GuestMemory, inp: BootInputs) -> EntryState:
    elf = E.parse(inp.kernel)
    entry = pvh_entry(elf)
    if entry is None:
        raise LoaderError("ELF has no Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY)")
    _, kernel_end = E.load(elf, inp.kernel, mem)
    cmdline = write_cmdline(mem, inp.cmdline)
    strings = StringArea(mem, L.CMDLINE_ADDR + len(inp.cmdline.encode()) + 1,
                         L.CMDLINE_ADDR + L.CMDLINE_MAX)
    if len(inp.modules) > MAX_MODULES:
        raise LoaderError(f"at most {MAX_MODULES} modules")
    info = L.BOOT_INFO_ADDR
    mem.fill(info, L.BOOT_INFO_SIZE)
    ceiling = mem.regions[0].end
    for i, m in enumerate(inp.modules):
        addr = place_top(mem, m.data, L.align_up(kernel_end, L.PAGE), ceiling)
        ceiling = addr
        mcmd = strings.add(m.cmdline) if m.cmdline else 0
        mem.write(info + MODLIST_OFF + i * MODLIST_ENTRY.size,
                  MODLIST_ENTRY.pack(addr, len(m.data), mcmd, 0))
    mmap = L.memory_map(inp.mem_bytes)
    for i, (addr, size, typ) in enumerate(mmap):
        mem.write(info + MEMMAP_OFF + i * MEMMAP_ENTRY.size, MEMMAP_ENTRY.pack(addr, size, typ, 0))
    mem.write(info, START_INFO.pack(
        HVM_START_MAGIC, 1, 0, len(inp.modules),
        info + MODLIST_OFF if inp.modules else 0, cmdline, 0,
        info + MEMMAP_OFF, len(mmap), 0))
    return EntryState("prot32", entry, {"rbx": info})
