"""A virtio driver written in Python, for host-side tests: it plays the guest against a
VirtioMmio on a GuestMemory (no KVM needed), through the same registers a guest uses."""

from __future__ import annotations

import struct
import time

from god.memory import GuestMemory
from god.virtio import mmio as R
from god.virtio.device import VIRTIO_F_VERSION_1
from god.virtio.mmio import VirtioMmio

DESC = struct.Struct("<QIHH")


class Alloc:
    """Bump allocator over guest RAM."""

    def __init__(self, start: int, end: int) -> None:
        self.next, self.end = start, end

    def __call__(self, size: int, align: int = 16) -> int:
        a = (self.next + align - 1) & ~(align - 1)
        if a + size > self.end:
            raise MemoryError("test allocator exhausted")
        self.next = a + size
        return a


class DriverQueue:
    """Driver side of one split ring."""

    def __init__(self, mem: GuestMemory, alloc: Alloc, size: int) -> None:
        self.mem, self.size = mem, size
        self.desc = alloc(16 * size, 16)
        self.avail = alloc(6 + 2 * size, 2)
        self.used = alloc(6 + 8 * size, 4)
        mem.fill(self.desc, 16 * size)
        mem.fill(self.avail, 6 + 2 * size)
        mem.fill(self.used, 6 + 8 * size)
        self.free = list(range(size))
        self.avail_idx = 0
        self.used_seen = 0
        self.chains: dict[int, list[int]] = {}

    def add(self, bufs: list[tuple[int, int, bool]]) -> int:
        """bufs: (gpa, len, device_writable). Returns the head index."""
        ids = [self.free.pop(0) for _ in bufs]
        for i, (d, (gpa, n, w)) in enumerate(zip(ids, bufs)):
            flags = (2 if w else 0) | (1 if i + 1 < len(ids) else 0)
            nxt = ids[i + 1] if i + 1 < len(ids) else 0
            self.mem.write(self.desc + 16 * d, DESC.pack(gpa, n, flags, nxt))
        self.chains[ids[0]] = ids
        self.publish(ids[0])
        return ids[0]

    def add_indirect(self, table: int, bufs: list[tuple[int, int, bool]]) -> int:
        for i, (gpa, n, w) in enumerate(bufs):
            flags = (2 if w else 0) | (1 if i + 1 < len(bufs) else 0)
            self.mem.write(table + 16 * i, DESC.pack(gpa, n, flags, i + 1))
        d = self.free.pop(0)
        self.mem.write(self.desc + 16 * d, DESC.pack(table, 16 * len(bufs), 4, 0))
        self.chains[d] = [d]
        self.publish(d)
        return d

    def publish(self, head: int) -> None:
        self.mem.write_int(self.avail + 4 + 2 * (self.avail_idx % self.size), 2, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.mem.write_int(self.avail + 2, 2, self.avail_idx)

    def take_used(self) -> list[tuple[int, int]]:
        out = []
        idx = self.mem.read_int(self.used + 2, 2)
        while self.used_seen != idx:
            slot = self.used + 4 + 8 * (self.used_seen % self.size)
            head, n = struct.unpack("<II", self.mem.read(slot, 8))
            out.append((head, n))
            self.free += self.chains.pop(head, [])
            self.used_seen = (self.used_seen + 1) & 0xFFFF
        return out


class Driver:
    def __init__(self, dev: VirtioMmio, mem: GuestMemory, alloc: Alloc) -> None:
        self.dev, self.mem, self.alloc = dev, mem, alloc
        self.queues: list[DriverQueue] = []

    def w(self, reg: int, v: int) -> None:
        self.dev.write(reg, 4, v)

    def r(self, reg: int) -> int:
        return self.dev.read(reg, 4)

    def init(self, features: int = VIRTIO_F_VERSION_1, sizes: list[int] | None = None) -> int:
        assert self.r(R.R_MAGIC) == R.MAGIC and self.r(R.R_VERSION) == 2
        self.w(R.R_STATUS, 0)
        self.w(R.R_STATUS, R.ACKNOWLEDGE)
        self.w(R.R_STATUS, R.ACKNOWLEDGE | R.DRIVER)
        offered = 0
        for sel in (0, 1):
            self.w(R.R_DEVICE_FEATURES_SEL, sel)
            offered |= self.r(R.R_DEVICE_FEATURES) << (32 * sel)
        for sel in (0, 1):
            self.w(R.R_DRIVER_FEATURES_SEL, sel)
            self.w(R.R_DRIVER_FEATURES, (features >> (32 * sel)) & 0xFFFFFFFF)
        self.w(R.R_STATUS, R.ACKNOWLEDGE | R.DRIVER | R.FEATURES_OK)
        if not self.r(R.R_STATUS) & R.FEATURES_OK:
            return self.r(R.R_STATUS)
        n = len(self.dev.device.queue_sizes)
        for i in range(n):
            self.w(R.R_QUEUE_SEL, i)
            size = (sizes[i] if sizes else None) or self.r(R.R_QUEUE_NUM_MAX)
            q = DriverQueue(self.mem, self.alloc, size)
            self.queues.append(q)
            self.w(R.R_QUEUE_NUM, size)
            for lo, val in ((R.R_QUEUE_DESC_LOW, q.desc), (R.R_QUEUE_DRIVER_LOW, q.avail),
                            (R.R_QUEUE_DEVICE_LOW, q.used)):
                self.w(lo, val & 0xFFFFFFFF)
                self.w(lo + 4, val >> 32)
            self.w(R.R_QUEUE_READY, 1)
        self.w(R.R_STATUS, R.ACKNOWLEDGE | R.DRIVER | R.FEATURES_OK | R.DRIVER_OK)
        return self.r(R.R_STATUS)

    def notify(self, q: int) -> None:
        self.w(R.R_QUEUE_NOTIFY, q)

    def wait_used(self, q: int, count: int = 1, timeout: float = 5.0) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            out += self.queues[q].take_used()
            if len(out) >= count:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue {q}: {len(out)}/{count} used buffers")
            time.sleep(0.001)
        return out
