"""Address-range buses for port I/O and MMIO. Architecture-neutral: an arm64 backend uses the
MMIO bus alone, x86 uses both.

The contract every device implements (and all another issue's virtio-mmio devices need):

    bus.register(base, size, device)
    device.read(offset, size) -> int      # offset from base; size 1, 2, 4 or 8 bytes
    device.write(offset, size, value)

Unassigned addresses answer like QEMU's unassigned memory and an empty ISA bus: reads return
all ones of the access size, writes are ignored. The bus counts them (`unassigned`) and, when
`trace` is set, reports the first access to each address, so a guest probing hardware we do
not have (PCI config at 0xcf8, a second UART at 0x2f8) sees "nothing here", not a crash.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from god.devices.diag import say


class Device(Protocol):
    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class BusError(ValueError):
    """A registration that overlaps another device or has a bad range."""


class Bus:
    """Sorted, non-overlapping [base, base+size) ranges mapped to devices."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._bases: list[int] = []
        self._entries: list[tuple[int, int, Device]] = []  # (base, end, device)
        self._misses: dict[int, _Unassigned] = {}
        self.trace: Callable[[str], None] | None = None
        # addr -> (base, device) for addresses seen before: the vCPU loop's fast path skips
        # the bisect. Bounded, and cleared whenever the map changes.
        self.cache: dict[int, tuple[int, Device]] = {}
        # vCPU-loop cache of decoded port-I/O OUT headers; cleared with `cache`.
        self.out_cache: dict[int, tuple] = {}

    def register(self, base: int, size: int, device: Device) -> None:
        if size <= 0 or base < 0 or base + size > self.limit:
            raise BusError(f"{self.name}: bad range {base:#x}+{size:#x}")
        i = bisect.bisect_right(self._bases, base)
        if i > 0 and self._entries[i - 1][1] > base:
            raise BusError(f"{self.name}: {base:#x}+{size:#x} overlaps {self._entries[i - 1][0]:#x}")
        if i < len(self._entries) and self._entries[i][0] < base + size:
            raise BusError(f"{self.name}: {base:#x}+{size:#x} overlaps {self._entries[i][0]:#x}")
        self._bases.insert(i, base)
        self._entries.insert(i, (base, base + size, device))
        self.cache.clear()
        self.out_cache.clear()

    def unregister(self, base: int) -> None:
        i = self._bases.index(base)
        del self._bases[i]
        del self._entries[i]
        self.cache.clear()
        self.out_cache.clear()

    def find(self, addr: int) -> tuple[int, Device] | None:
        """(base, device) for the range holding addr, or None."""
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            base, end, dev = self._entries[i]
            if addr < end:
                return base, dev
        return None

    def lookup(self, addr: int) -> tuple[int, Device]:
        """Like find(), but unassigned addresses get an _Unassigned stand-in, and the answer
        is cached: the vCPU loop calls this once per new address, then hits the cache."""
        hit = self.cache.get(addr)
        if hit is None:
            hit = self.find(addr)
            if hit is None:
                miss = self._misses.get(addr)
                if miss is None:
                    miss = self._misses[addr] = _Unassigned(self, addr)
                hit = (addr, miss)
            if len(self.cache) >= 4096:
                self.cache.clear()
            self.cache[addr] = hit
        return hit

    @property
    def unassigned(self) -> Counter[int]:
        """Accesses to unassigned addresses, per address."""
        return Counter({a: u.n for a, u in self._misses.items() if u.n})

    def read(self, addr: int, size: int) -> int:
        base, dev = self.cache.get(addr) or self.lookup(addr)
        return dev.read(addr - base, size) & ((1 << (8 * size)) - 1)

    def write(self, addr: int, size: int, value: int) -> None:
        base, dev = self.cache.get(addr) or self.lookup(addr)
        dev.write(addr - base, size, value)

    def _first_miss(self, addr: int, size: int, value: int | None) -> None:
        if self.trace is not None:
            what = "read" if value is None else f"write {value:#x}"
            self.trace(f"{self.name}: unassigned {what} size {size} at {addr:#x}")


# The bus's trace line is god's one `god: ...` stderr line (devices/diag.say).
stderr_trace = say


class _Unassigned:
    """What one unassigned address answers: all ones on read, writes dropped. Counts its
    accesses itself (cheap on the vCPU hot path); the bus reports only the first."""

    __slots__ = ("addr", "bus", "n")

    def __init__(self, bus: Bus, addr: int) -> None:
        self.bus, self.addr, self.n = bus, addr, 0

    def read(self, offset: int, size: int) -> int:
        self.n += 1
        if self.n == 1:
            self.bus._first_miss(self.addr, size, None)
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        self.n += 1
        if self.n == 1:
            self.bus._first_miss(self.addr, size, value)
