"""Guest-physical memory.

Every address that comes from the guest (a DMA pointer, a boot-info field, a descriptor) goes
through GuestMemory, which checks it against the RAM regions and raises GuestMemoryError for
anything outside them. Python slicing would silently truncate an out-of-range read, and a
raw pointer would crash the host; an exception is the device's to report instead.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)  # libc is already in the process; no lookup
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
_MADV_MERGEABLE = 12


class GuestMemoryError(ValueError):
    """A guest-physical access outside guest RAM (or too large to be honest)."""


class Region:
    """One contiguous range of guest RAM: guest-physical [gpa, gpa+size) at host_addr."""
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    __slots__ = ("gpa", "host_addr", "size", "view")

    def __init__(self, gpa: int, size: int, host_addr: int, view: memoryview) -> None:
        self.gpa = gpa
        self.size = size
        self.host_addr = host_addr
        self.view = view

    @property
    def end(self) -> int:
        return self.gpa + self.size


class RegionMemory:
    """Bounds-checked guest-physical access over a list of regions (each with gpa, size,
    end and a memoryview). Shared by god's own RAM and a vhost-user back-end's view of
    QEMU's RAM, so device models and virtqueues run unchanged on either."""

    regions: list[Any]
    _last: Any = None

    def _find(self, gpa: int, length: int) -> tuple[Region, int]:
        if length < 0 or gpa < 0:
            raise GuestMemoryError(f"bad guest access {gpa:#x}+{length}")
        r = self._last
        if r is None or not (r.gpa <= gpa and gpa + length <= r.end):
            for r in self.regions:
                if r.gpa <= gpa and gpa + length <= r.end:
                    self._last = r
                    break
            else:
                raise GuestMemoryError(
                    f"guest-physical range {gpa:#x}..{gpa + length:#x} is outside guest RAM")
        return r, gpa - r.gpa

    def contains(self, gpa: int, length: int = 1) -> bool:
        try:
            self._find(gpa, length)
            return True
        except GuestMemoryError:
            return False

    def view(self, gpa: int, length: int) -> memoryview:
        """A zero-copy window onto guest RAM (for device DMA); bounds-checked."""
        r, off = self._find(gpa, length)
        return r.view[off:off + length]

    def read(self, gpa: int, length: int) -> bytes:
        r, off = self._find(gpa, length)
        return bytes(r.view[off:off + length])

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        r, off = self._find(gpa, len(data))
        r.view[off:off + len(data)] = data

    def fill(self, gpa: int, length: int, byte: int = 0) -> None:
        self.view(gpa, length)[:] = bytes([byte]) * length

    def read_int(self, gpa: int, size: int) -> int:
        r, off = self._find(gpa, size)
        return int.from_bytes(r.view[off:off + size], "little")

    def write_int(self, gpa: int, size: int, value: int) -> None:
        self.write(gpa, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def read_u32(self, gpa: int) -> int:
        return self.read_int(gpa, 4)

    def write_u32(self, gpa: int, value: int) -> None:
        self.write_int(gpa, 4, value)

    def read_u64(self, gpa: int) -> int:
        return self.read_int(gpa, 8)

    def write_u64(self, gpa: int, value: int) -> None:
        self.write_int(gpa, 8, value)

    def pack_into(self, gpa: int, fmt: str, *values: object) -> None:
        self.write(gpa, struct.pack(fmt, *values))

    def read_cstring(self, gpa: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string; the limit stops a guest from making us scan all RAM."""
        r, off = self._find(gpa, 1)
        end = min(r.size, off + limit)
        chunk = bytes(r.view[off:end])
        nul = chunk.find(0)
        if nul < 0:
            raise GuestMemoryError(f"no NUL within {limit} bytes at {gpa:#x}")
        return chunk[:nul]


class GuestMemory(RegionMemory):
    """Guest RAM made of non-overlapping regions, each its own anonymous mapping.

    The mappings are made with libc mmap (not Python's mmap module) so close() can unmap
    them even while memoryviews exist: a VM torn down in a test must give its RAM back.
    """

    def __init__(self, layout: list[tuple[int, int]]) -> None:
        self.regions: list[Region] = []
        for gpa, size in sorted(layout):
            if size <= 0 or size % mmap.PAGESIZE or gpa % mmap.PAGESIZE:
                raise GuestMemoryError(f"region {gpa:#x}+{size:#x} is not page aligned")
            if self.regions and gpa < self.regions[-1].end:
                raise GuestMemoryError(f"region {gpa:#x} overlaps {self.regions[-1].gpa:#x}")
            # MAP_NORESERVE: a 1 GiB guest that touches 20 MiB should cost 20 MiB.
            addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE,
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
            if addr in (None, _MAP_FAILED):
                raise MemoryError(f"mmap of {size >> 20} MiB guest RAM failed "
                                  f"(errno {ctypes.get_errno()})")
            _libc.madvise(addr, size, _MADV_MERGEABLE)
            view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
            self.regions.append(Region(gpa, size, addr, view))
        self._last = self.regions[0] if self.regions else None

    @property
    def size(self) -> int:
        return sum(r.size for r in self.regions)

    def fill(self, gpa: int, length: int, byte: int = 0) -> None:
        r, off = self._find(gpa, length)
        ctypes.memset(r.host_addr + off, byte, length)

    def close(self) -> None:
        for r in self.regions:
            r.view.release()
            _libc.munmap(r.host_addr, r.size)
        self.regions = []
        self._last = None
