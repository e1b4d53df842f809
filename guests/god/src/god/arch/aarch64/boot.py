"""Putting an arm64 kernel into guest RAM: the Linux arm64 Image protocol
(Documentation/arch/arm64/booting.rst), gzip'd Images (Debian's vmlinuz), ELF and raw
binaries for small kernels.

Image (booting.rst section 4, "Call the kernel image"): a 64-byte header with
text_offset (u64 at 8), image_size (u64 at 16), flags (u64 at 24) and the magic "ARM\\x64"
at 0x38. The Image goes text_offset bytes above a 2 MiB-aligned base; image_size is how
much memory from there the kernel uses (BSS included). A header with image_size 0 is a
kernel older than 3.17, whose text_offset is 0x80000 whatever the field says.

The DTB (section 2): 8-byte aligned, at most 2 MiB, in a 2 MiB region of its own: god
puts it at the first 2 MiB boundary past the kernel and the initrd at the next one past
the DTB's 2 MiB. Entry (section 4): x0 = the DTB's physical address, x1..x3 = 0, MMU off,
PSTATE EL1h with DAIF masked (god.kvm.arm64.PSTATE_BOOT).

Small kernels: an ELF (EM_AARCH64) is loaded by its PT_LOAD physical addresses and entered
at e_entry; anything else is a raw binary loaded at RAM base + 0x80000 and entered there
(what QEMU virt does with a non-Image -kernel, so the arm64 probe links at 0x40080000).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass

from god.arch.aarch64 import layout as L
from god.boot import elf as E
from god.boot.errors import LoaderError
from god.memory import GuestMemory

IMAGE_MAGIC = b"ARM\x64"
IMAGE_MAGIC_OFFSET = 0x38
IMAGE_HEADER_SIZE = 64
LEGACY_TEXT_OFFSET = 0x80000
RAW_LOAD_OFFSET = 0x80000
EM_AARCH64 = 183
ALIGN_2M = 2 * L.MiB
DTB_MAX = 2 * L.MiB
DTB_LIMIT = L.RAM_BASE + 512 * L.MiB  # older booting.rst: the DTB in the first 512 MiB


@dataclass(frozen=True)
class ImageHeader:
    text_offset: int
    image_size: int
    flags: int

    @property
    def big_endian(self) -> bool:
        return bool(self.flags & 1)  # flags bit 0: kernel endianness, 1 = BE

    @property
    def page_size_kib(self) -> int | None:
        """flags bits 1-2: 1 = 4K, 2 = 16K, 3 = 64K, 0 = unspecified."""
        return {1: 4, 2: 16, 3: 64}.get((self.flags >> 1) & 3)


def parse_image_header(data: bytes) -> ImageHeader | None:
    """The Image header, or None if data is not an arm64 Image."""
    if len(data) < IMAGE_HEADER_SIZE or \
            data[IMAGE_MAGIC_OFFSET:IMAGE_MAGIC_OFFSET + 4] != IMAGE_MAGIC:
        return None
    text_offset, image_size, flags = struct.unpack_from("<QQQ", data, 8)
    if image_size == 0:
        text_offset = LEGACY_TEXT_OFFSET
    return ImageHeader(text_offset, image_size, flags)


def gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise LoaderError(f"kernel looks gzip'd but does not decompress: {e}") from e


@dataclass(frozen=True)
class Plan:
    """Where everything goes; computed without guest RAM (so --dry-run can print it)."""
    fmt: str                       # "image", "elf", "raw"
    kernel: bytes                  # decompressed Image / the raw binary / the ELF file
    load_addr: int                 # lowest address the kernel occupies
    kernel_end: int                # first byte past it (image_size, or the ELF's/raw's end)
    entry: int
    dtb_addr: int
    initrd_addr: int | None
    initrd_size: int

    @property
    def initrd_range(self) -> tuple[int, int] | None:
        if self.initrd_addr is None:
            return None
        return self.initrd_addr, self.initrd_addr + self.initrd_size


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def plan(kernel: bytes, mem_bytes: int, initrd_size: int | None = None) -> Plan:
    """Decide formats and addresses; LoaderError names what does not fit."""
    if kernel[:2] == b"\x1f\x8b":
        kernel = gunzip(kernel)
        if parse_image_header(kernel) is None:
            raise LoaderError("gzip'd kernel is not an arm64 Image (no 'ARM\\x64' magic at 0x38)")
    ram_end = L.RAM_BASE + mem_bytes
    hdr = parse_image_header(kernel)
    if hdr is not None:
        if hdr.big_endian:
            raise LoaderError("big-endian arm64 Image: god runs little-endian guests only")
        fmt = "image"
        load = L.RAM_BASE + hdr.text_offset  # RAM_BASE is 2 MiB aligned
        end = load + max(hdr.image_size, len(kernel))
        entry = load
    elif E.is_elf(kernel):
        elf = E.parse(kernel)
        if elf.machine != EM_AARCH64 or elf.bits != 64:
            raise LoaderError(f"ELF kernel for machine {elf.machine} ({elf.bits}-bit), "
                              f"not AArch64 ({EM_AARCH64})")
        segs = [s for s in elf.segments if s.type == E.PT_LOAD and s.memsz]
        if not segs:
            raise LoaderError("ELF has no loadable segments")
        fmt = "elf"
        load = min(s.paddr for s in segs)
        end = max(s.paddr + s.memsz for s in segs)
        entry = E.virt_to_phys(elf, elf.entry)
        if not load <= entry < end:
            raise LoaderError(f"ELF entry {entry:#x} is outside its segments {load:#x}..{end:#x}")
    else:
        fmt = "raw"
        load = L.RAM_BASE + RAW_LOAD_OFFSET
        end = load + len(kernel)
        entry = load
    if load < L.RAM_BASE or end > ram_end:
        raise LoaderError(f"{fmt} kernel at {load:#x}..{end:#x} does not fit in guest RAM "
                          f"{L.RAM_BASE:#x}..{ram_end:#x}; give more --mem")
    dtb = _align(end, ALIGN_2M)
    if dtb + DTB_MAX > ram_end:
        raise LoaderError(f"no room for the device tree at {dtb:#x} below the end of RAM "
                          f"{ram_end:#x}; give more --mem")
    if dtb + DTB_MAX > DTB_LIMIT:
        raise LoaderError(f"kernel ends at {end:#x}: the device tree would not be within "
                          "the first 512 MiB of RAM (booting.rst)")
    initrd = None
    size = initrd_size or 0
    if initrd_size is not None:
        initrd = dtb + DTB_MAX
        if initrd + initrd_size > ram_end:
            raise LoaderError(f"initrd of {initrd_size} bytes does not fit in guest RAM at "
                              f"{initrd:#x} (RAM ends at {ram_end:#x}); give more --mem")
    return Plan(fmt, kernel, load, end, entry, dtb, initrd, size)


def load(mem: GuestMemory, p: Plan, initrd: bytes | None, dtb: bytes) -> None:
    """Copy the kernel, the initrd and the DTB into guest RAM as planned."""
    if len(dtb) > DTB_MAX:
        raise LoaderError(f"device tree of {len(dtb)} bytes exceeds booting.rst's 2 MiB")
    if p.fmt == "elf":
        E.load(E.parse(p.kernel), p.kernel, mem)
    else:
        mem.write(p.load_addr, p.kernel)
    if initrd is not None and p.initrd_addr is not None:
        mem.write(p.initrd_addr, initrd)
    mem.write(p.dtb_addr, dtb)
