"""Guest memory as a vhost-user backend sees it: the front-end's RAM regions, received as
file descriptors (memfd, share=on) and mapped here MAP_SHARED.

Access (read/write/view/contains, GuestMemoryError outside RAM) is god's RegionMemory, the
same code as god's own GuestMemory, so the device models and virtqueue code run unchanged.
Vring addresses arrive as the front-end's own virtual addresses; va_to_gpa translates.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

from god.memory import GuestMemoryError
from god.memory.guest import RegionMemory


@dataclass
class SharedRegion:
    gpa: int
    size: int
    user_addr: int          # where the front-end (QEMU) has it mapped
    view: memoryview

    @property
    def end(self) -> int:
        return self.gpa + self.size


class SharedMemory(RegionMemory):
    def __init__(self) -> None:
        self.regions: list[SharedRegion] = []

    def add(self, fd: int, gpa: int, size: int, user_addr: int, mmap_offset: int) -> None:
        """Map one region. The fd is closed here: the mapping keeps the memory alive."""
        try:
            if size <= 0 or size > 1 << 40 or mmap_offset < 0:
                raise GuestMemoryError(f"bad memory region {gpa:#x}+{size:#x}")
            mm = mmap.mmap(fd, size + mmap_offset, mmap.MAP_SHARED,
                           mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        # The memoryview holds the mmap; dropping every view unmaps it (no explicit close,
        # so a queue still holding a view can never touch unmapped memory).
        view = memoryview(mm)[mmap_offset:mmap_offset + size]
        self.regions.append(SharedRegion(gpa, size, user_addr, view))

    def va_to_gpa(self, va: int, length: int = 1) -> int:
        for r in self.regions:
            if r.user_addr <= va and va + length <= r.user_addr + r.size:
                return r.gpa + (va - r.user_addr)
        raise GuestMemoryError(f"front-end address {va:#x}+{length:#x} is in no memory region")

    def close(self) -> None:
        for r in self.regions:
            r.view.release()
        self.regions = []
