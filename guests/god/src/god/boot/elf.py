"""Just enough ELF (32- and 64-bit little-endian) to load a kernel's PT_LOAD segments by
physical address and read its notes (the PVH entry lives in a note)."""

from __future__ import annotations

import struct

from god.boot.errors import LoaderError

PT_LOAD, PT_NOTE = 1, 4
SHT_NOTE = 7


# Plain classes, not dataclasses: god's start-up time (see god/machine.py).


class Segment:
    __slots__ = ("filesz", "memsz", "offset", "paddr", "type", "vaddr")

    def __init__(self, type: int, offset: int, vaddr: int, paddr: int, filesz: int,
                 memsz: int) -> None:
        self.type = type
        self.offset = offset
        self.vaddr = vaddr
        self.paddr = paddr
        self.filesz = filesz
        self.memsz = memsz


class Note:
    __slots__ = ("desc", "name", "type")

    def __init__(self, name: bytes, type: int, desc: bytes) -> None:
        self.name = name
        self.type = type
        self.desc = desc


class Elf:
    __slots__ = ("bits", "entry", "machine", "notes", "segments")

    def __init__(self, bits: int, machine: int, entry: int, segments: list[Segment],
                 notes: list[Note]) -> None:
        self.bits = bits
        self.machine = machine
        self.entry = entry
        self.segments = segments
        self.notes = notes


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def _notes(data: bytes, off: int, size: int) -> list[Note]:
    out = []
    end = min(off + size, len(data))
    while off + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        off += 12
        name = data[off:off + namesz].rstrip(b"\0")
        off += (namesz + 3) & ~3
        desc = data[off:off + descsz]
        off += (descsz + 3) & ~3
        if off > end:
            break
        out.append(Note(name, ntype, desc))
    return out


def parse(data: bytes) -> Elf:
    if not is_elf(data) or len(data) < 52:
        raise LoaderError("not an ELF file")
    ei_class, ei_data = data[4], data[5]
    if ei_data != 1:
        raise LoaderError("big-endian ELF is not an x86 kernel")
    if ei_class == 1:
        _, machine, _, entry, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _ = \
            struct.unpack_from("<HHIIIIIHHHHHH", data, 16)
        phfmt, bits = "<IIIIIIII", 32
    elif ei_class == 2:
        if len(data) < 64:
            raise LoaderError("truncated ELF64 header")
        _, machine, _, entry, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _ = \
            struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        phfmt, bits = "<IIQQQQQQ", 64
    else:
        raise LoaderError(f"bad ELF class {ei_class}")
    if phoff + phnum * phentsize > len(data):
        raise LoaderError("ELF program headers run past the end of the file")
    segments: list[Segment] = []
    notes: list[Note] = []
    for i in range(phnum):
        f = struct.unpack_from(phfmt, data, phoff + i * phentsize)
        if bits == 32:
            ptype, off, vaddr, paddr, filesz, memsz = f[0], f[1], f[2], f[3], f[4], f[5]
        else:
            ptype, off, vaddr, paddr, filesz, memsz = f[0], f[2], f[3], f[4], f[5], f[6]
        seg = Segment(ptype, off, vaddr, paddr, filesz, memsz)
        if ptype in (PT_LOAD, PT_NOTE) and off + filesz > len(data):
            raise LoaderError(f"ELF segment {i} runs past the end of the file")
        segments.append(seg)
        if ptype == PT_NOTE:
            notes += _notes(data, off, filesz)
    if not notes and shoff and shnum and shoff + shnum * shentsize <= len(data):
        # No PT_NOTE: some linkers keep notes only as sections.
        for i in range(shnum):
            base = shoff + i * shentsize
            if bits == 32:
                _, shtype, _, _, off, size = struct.unpack_from("<IIIIII", data, base)
            else:
                _, shtype, _, _, off, size = struct.unpack_from("<IIQQQQ", data, base)
            if shtype == SHT_NOTE:
                notes += _notes(data, off, size)
    return Elf(bits, machine, entry, segments, notes)


def load(elf: Elf, data: bytes, mem) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Copy PT_LOAD segments to their physical addresses; returns (lowest, end) addresses."""
    from god.memory import GuestMemoryError

    lo, hi = None, 0
    for seg in elf.segments:
        if seg.type != PT_LOAD or seg.memsz == 0:
            continue
        if seg.filesz > seg.memsz:
            raise LoaderError("ELF segment with filesz > memsz")
        try:
            mem.write(seg.paddr, data[seg.offset:seg.offset + seg.filesz])
            if seg.memsz > seg.filesz:
                mem.fill(seg.paddr + seg.filesz, seg.memsz - seg.filesz)
        except GuestMemoryError as e:
            raise LoaderError(f"ELF segment at {seg.paddr:#x}+{seg.memsz:#x} does not fit in "
                              f"guest RAM ({e}); give more --mem") from e
        lo = seg.paddr if lo is None else min(lo, seg.paddr)
        hi = max(hi, seg.paddr + seg.memsz)
    if lo is None:
        raise LoaderError("ELF has no loadable segments")
    return lo, hi


def virt_to_phys(elf: Elf, addr: int) -> int:
    for seg in elf.segments:
        if seg.type == PT_LOAD and seg.vaddr <= addr < seg.vaddr + seg.memsz:
            return addr - seg.vaddr + seg.paddr
    return addr
