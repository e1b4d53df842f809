"""The driver side of virtio 1.2 over virtio-mmio: initialization (3.1.1), queue setup
(4.2.3.2), split virtqueues (2.7) and notifications (4.2.3.3).

Each step is its own method so a conformance check can stop between steps, poke a register
and look at what the device says; ``initialize`` runs the whole sequence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_vmm.virtio.access import Arena, Memory, Registers
from pytest_vmm.virtio.layout import (
    AVAIL_ALIGN,
    DESC,
    DESC_ALIGN,
    DESC_SIZE,
    F_VERSION_1,
    MAGIC_VALUE,
    USED_ALIGN,
    USED_ELEM,
    DescFlag,
    Reg,
    Status,
    avail_ring_size,
    bit,
    desc_table_size,
    used_ring_size,
)


class VirtioError(AssertionError):
    """The device did something the driver cannot go on from (it fails the check)."""


@dataclass(frozen=True)
class Buffer:
    """One descriptor's worth: guest-physical address, length, device-writable or not."""

    addr: int
    length: int
    writable: bool = False


@dataclass(frozen=True)
class Used:
    """One used-ring element (2.7.8): the chain's head and the bytes the device wrote."""

    head: int
    length: int


class SplitQueue:
    """Driver side of one split virtqueue in guest memory (2.7)."""

    def __init__(self, mem: Memory, arena: Arena, index: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"queue size {size} is not a power of 2 (2.7)")
        self.mem, self.arena, self.index, self.size = mem, arena, index, size
        self.desc = arena.alloc(desc_table_size(size), DESC_ALIGN)
        self.avail = arena.alloc(avail_ring_size(size), AVAIL_ALIGN)
        self.used = arena.alloc(used_ring_size(size), USED_ALIGN)
        # Zeroed as a driver's fresh allocation is (Linux: vring_alloc_queue, __GFP_ZERO), so
        # a device that advances idx without writing its element shows as a zero element.
        mem.fill(self.desc, desc_table_size(size))
        mem.fill(self.avail, avail_ring_size(size))
        mem.fill(self.used, used_ring_size(size))
        self.free = list(range(size))
        self.avail_idx = 0
        self.last_used = 0
        self.chains: dict[int, list[int]] = {}

    # ----------------------------------------------------------- descriptors
    def add(self, bufs: Sequence[Buffer], publish: bool = True) -> int:
        """Put a descriptor chain in the table (2.7.13.1); returns its head."""
        if not bufs:
            raise ValueError("a descriptor chain needs at least one buffer")
        if len(bufs) > len(self.free):
            raise VirtioError(f"queue {self.index}: {len(bufs)} descriptors asked, {len(self.free)} free")
        ids = [self.free.pop(0) for _ in bufs]
        for i, (d, b) in enumerate(zip(ids, bufs)):
            last = i + 1 == len(ids)
            flags = (DescFlag.WRITE if b.writable else 0) | (0 if last else DescFlag.NEXT)
            self.mem.write(self.desc + DESC_SIZE * d, DESC.pack(b.addr, b.length, flags, 0 if last else ids[i + 1]))
        self.chains[ids[0]] = ids
        if publish:
            self.publish(ids[0])
        return ids[0]

    def add_indirect(self, bufs: Sequence[Buffer], publish: bool = True) -> int:
        """One VIRTQ_DESC_F_INDIRECT descriptor pointing at a table of ``bufs`` (2.7.5.3)."""
        table = self.arena.alloc(DESC_SIZE * len(bufs), DESC_ALIGN)
        entries = b"".join(
            DESC.pack(b.addr, b.length, (DescFlag.WRITE if b.writable else 0)
                      | (DescFlag.NEXT if i + 1 < len(bufs) else 0), i + 1 if i + 1 < len(bufs) else 0)
            for i, b in enumerate(bufs))
        self.mem.write(table, entries)
        d = self.free.pop(0)
        self.mem.write(self.desc + DESC_SIZE * d, DESC.pack(table, len(entries), DescFlag.INDIRECT, 0))
        self.chains[d] = [d]
        if publish:
            self.publish(d)
        return d

    # ----------------------------------------------------------- rings
    def publish(self, head: int) -> None:
        """Ring entry first, then idx (2.7.13.2-3: the device may read the entry once idx moves)."""
        slot = self.avail + 4 + 2 * (self.avail_idx % self.size)
        self.mem.write(slot, head.to_bytes(2, "little"))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.mem.write(self.avail + 2, self.avail_idx.to_bytes(2, "little"))

    def set_avail_flags(self, flags: int) -> None:
        self.mem.write(self.avail, flags.to_bytes(2, "little"))

    def used_flags(self) -> int:
        return int.from_bytes(self.mem.read(self.used, 2), "little")

    def used_idx(self) -> int:
        return int.from_bytes(self.mem.read(self.used + 2, 2), "little")

    def take_used(self) -> list[Used]:
        """Used elements the device added since the last call; their descriptors go back to the free list."""
        idx = self.used_idx()
        pending = (idx - self.last_used) & 0xFFFF
        if pending > self.size:
            raise VirtioError(f"queue {self.index}: used idx {idx} is {pending} ahead of the driver's "
                              f"{self.last_used}, more than the queue size {self.size} (2.7.8)")
        out: list[Used] = []
        if not pending:
            return out
        first = self.last_used % self.size
        count_to_end = min(pending, self.size - first)
        raw = self.mem.read(self.used + 4 + USED_ELEM.size * first, USED_ELEM.size * count_to_end)
        if pending > count_to_end:
            raw += self.mem.read(self.used + 4, USED_ELEM.size * (pending - count_to_end))
        for i in range(pending):
            head, length = USED_ELEM.unpack_from(raw, USED_ELEM.size * i)
            if head not in self.chains:
                raise VirtioError(f"queue {self.index}: used ring names descriptor {head}, which is not "
                                  f"the head of an available chain (2.7.8.1)")
            self.free += self.chains.pop(head)
            out.append(Used(head, length))
        self.last_used = idx
        return out

    def wait_used(self, count: int = 1, timeout: float = 10.0) -> list[Used]:
        out: list[Used] = []
        deadline = time.monotonic() + timeout
        while True:
            out += self.take_used()
            if len(out) >= count:
                return out
            if time.monotonic() > deadline:
                raise VirtioError(f"queue {self.index}: {len(out)} of {count} buffers used within {timeout:.0f}s")
            time.sleep(0.005)


class MmioDevice:
    """The driver's view of one virtio-mmio (version 2) device."""

    def __init__(self, regs: Registers, mem: Memory, arena: Arena, gsi: int | None = None) -> None:
        self.regs, self.mem, self.arena = regs, mem, arena
        self.gsi = gsi  # the device's interrupt line, where the platform says
        self.queues: dict[int, SplitQueue] = {}

    # ----------------------------------------------------------- registers
    def read(self, reg: int, width: int = 4) -> int:
        return self.regs.read(reg, width)

    def write(self, reg: int, value: int, width: int = 4) -> None:
        self.regs.write(reg, value, width)

    @property
    def status(self) -> int:
        return self.read(Reg.STATUS)

    def set_status(self, value: int) -> None:
        self.write(Reg.STATUS, value)

    def add_status(self, bits: int) -> int:
        """Set ``bits`` on top of the current status (3.1.1: the driver only adds bits); returns the status read back."""
        self.set_status(self.status | bits)
        return self.status

    def reset(self, timeout: float = 5.0) -> None:
        """Write 0 and wait until Status reads 0 (4.2.3.1: reset may take time)."""
        self.set_status(0)
        deadline = time.monotonic() + timeout
        while self.status != 0:
            if time.monotonic() > deadline:
                raise VirtioError(f"Status still {self.status:#x} {timeout:.0f}s after writing 0 (reset, 4.2.3.1)")
            time.sleep(0.01)
        self.queues.clear()

    def device_features(self) -> int:
        features = 0
        for sel in (0, 1):
            self.write(Reg.DEVICE_FEATURES_SEL, sel)
            features |= self.read(Reg.DEVICE_FEATURES) << (32 * sel)
        return features

    def write_driver_features(self, features: int) -> None:
        for sel in (0, 1):
            self.write(Reg.DRIVER_FEATURES_SEL, sel)
            self.write(Reg.DRIVER_FEATURES, (features >> (32 * sel)) & 0xFFFFFFFF)

    def config_read(self, offset: int, width: int = 4) -> int:
        return self.read(Reg.CONFIG + offset, width)

    def config_generation(self) -> int:
        return self.read(Reg.CONFIG_GENERATION)

    def interrupt_status(self) -> int:
        return self.read(Reg.INTERRUPT_STATUS)

    def ack_interrupt(self, bits: int) -> None:
        self.write(Reg.INTERRUPT_ACK, bits)

    def notify(self, queue: int) -> None:
        self.write(Reg.QUEUE_NOTIFY, queue)

    # ----------------------------------------------------------- 3.1.1 steps
    def begin(self) -> None:
        """Steps 1-3: reset, ACKNOWLEDGE, DRIVER."""
        if self.read(Reg.MAGIC_VALUE) != MAGIC_VALUE:
            raise VirtioError(f"MagicValue {self.read(Reg.MAGIC_VALUE):#x} is not 'virt' (4.2.2)")
        self.reset()
        self.set_status(Status.ACKNOWLEDGE)
        self.set_status(Status.ACKNOWLEDGE | Status.DRIVER)

    def negotiate(self, features: int) -> bool:
        """Steps 4-6: write ``features``, set FEATURES_OK, re-read it; True if the device kept it."""
        self.write_driver_features(features)
        return bool(self.add_status(Status.FEATURES_OK) & Status.FEATURES_OK)

    def setup_queue(self, index: int, size: int | None = None) -> SplitQueue:
        """Step 7 for one queue (4.2.3.2)."""
        self.write(Reg.QUEUE_SEL, index)
        if self.read(Reg.QUEUE_READY):
            raise VirtioError(f"queue {index}: QueueReady reads 1 before setup (4.2.3.2 step 2)")
        num_max = self.read(Reg.QUEUE_NUM_MAX)
        if num_max == 0:
            raise VirtioError(f"queue {index}: QueueNumMax is 0, the queue is not available (4.2.3.2)")
        size = size or min(num_max, 16)  # small rings: every byte goes through the agent
        queue = SplitQueue(self.mem, self.arena, index, size)
        self.write(Reg.QUEUE_NUM, size)
        for low, addr in ((Reg.QUEUE_DESC_LOW, queue.desc), (Reg.QUEUE_DRIVER_LOW, queue.avail),
                          (Reg.QUEUE_DEVICE_LOW, queue.used)):
            self.write(low, addr & 0xFFFFFFFF)
            self.write(low + 4, addr >> 32)
        self.write(Reg.QUEUE_READY, 1)
        self.queues[index] = queue
        return queue

    def initialize(self, features: int = bit(F_VERSION_1), queues: Sequence[int] = (0,),
                   size: int | None = None) -> None:
        """The whole of 3.1.1 up to DRIVER_OK."""
        self.begin()
        offered = self.device_features()
        missing = features & ~offered
        if missing:
            raise VirtioError(f"device does not offer features {missing:#x} (offered {offered:#x})")
        if not self.negotiate(features):
            raise VirtioError(f"device cleared FEATURES_OK for features {features:#x} it offered (3.1.1 step 6)")
        for index in queues:
            self.setup_queue(index, size)
        self.add_status(Status.DRIVER_OK)

    # ----------------------------------------------------------- requests
    def submit(self, queue: int, bufs: Sequence[Buffer], indirect: bool = False, notify: bool = True) -> int:
        q = self.queues[queue]
        head = q.add_indirect(bufs) if indirect else q.add(bufs)
        if notify:
            self.notify(queue)
        return head

    def transact(self, queue: int, bufs: Sequence[Buffer], indirect: bool = False,
                 timeout: float = 10.0) -> Used:
        """Submit one chain, notify, wait for it in the used ring."""
        head = self.submit(queue, bufs, indirect)
        used = self.queues[queue].wait_used(1, timeout)
        if used[0].head != head:
            raise VirtioError(f"queue {queue}: used head {used[0].head}, expected {head}")
        return used[0]


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """True once ``condition()`` holds, False if ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
