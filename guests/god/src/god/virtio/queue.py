"""Split virtqueues (virtio 1.2 section 2.7), device side.

Everything in a ring is written by the guest, so everything is checked: ring addresses and
sizes when the queue is built, then each descriptor's address and length against guest
memory, the chain's length (which also catches loops), nesting of indirect tables and the
order of device-readable before device-writable buffers. A violation raises QueueError;
the transport turns that into DEVICE_NEEDS_RESET with the reason logged. Nothing here
allocates memory sized by a guest value before checking it against guest RAM.
"""

from __future__ import annotations

import struct
from typing import Protocol

from god.memory import GuestMemoryError

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768  # the split-ring limit (queue size is a 16-bit power of two)

_DESC = struct.Struct("<QIHH")  # addr, len, flags, next
_USED_ELEM = struct.Struct("<II")


class Memory(Protocol):
    """What a queue needs from guest memory: god's GuestMemory and the vhost-user backend's
    shared mapping both provide it, and both raise GuestMemoryError out of range."""

    def read(self, gpa: int, length: int) -> bytes: ...

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None: ...

    def view(self, gpa: int, length: int) -> memoryview: ...

    def contains(self, gpa: int, length: int = 1) -> bool: ...


class QueueError(Exception):
    """The guest broke the virtqueue protocol; the device must go to NEEDS_RESET."""


class Chain:
    """One available descriptor chain, flattened into guest-physical segments."""
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    def __init__(self, head: int) -> None:
        self.head = head
        self.readable: list[tuple[int, int]] = []   # (gpa, len) the device reads
        self.writable: list[tuple[int, int]] = []   # (gpa, len) the device writes

    @property
    def readable_len(self) -> int:
        return sum(n for _, n in self.readable)

    @property
    def writable_len(self) -> int:
        return sum(n for _, n in self.writable)

    def read(self, mem: Memory, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes [offset, offset+length) of the readable part as one stream."""
        total = self.readable_len
        end = total if length is None else min(total, offset + length)
        out = bytearray()
        pos = 0
        for gpa, n in self.readable:
            lo, hi = max(offset, pos), min(end, pos + n)
            if lo < hi:
                out += mem.view(gpa + lo - pos, hi - lo)
            pos += n
            if pos >= end:
                break
        return bytes(out)

    def write(self, mem: Memory, data: bytes | bytearray | memoryview, offset: int = 0) -> int:
        """Scatter data into the writable part starting at offset; returns bytes written
        (less than len(data) when the buffers are too small)."""
        src = memoryview(data)
        done = 0
        pos = 0
        for gpa, n in self.writable:
            if done >= len(src):
                break
            lo = max(offset + done, pos)
            if lo < pos + n:
                k = min(pos + n - lo, len(src) - done)
                mem.view(gpa + lo - pos, k)[:] = src[done:done + k]
                done += k
            pos += n
        return done

    def writable_views(self, mem: Memory, offset: int, length: int) -> list[memoryview]:
        """Zero-copy windows for [offset, offset+length) of the writable part (for readv)."""
        return _views(self.writable, mem, offset, length)

    def readable_views(self, mem: Memory, offset: int, length: int) -> list[memoryview]:
        """Zero-copy windows for [offset, offset+length) of the readable part."""
        return _views(self.readable, mem, offset, length)

class Virtqueue:
    """The device's view of one split virtqueue.

    desc/avail/used are guest-physical addresses. used_idx is where the device's used index
    starts (0 after a reset; vhost-user resumes from the ring's current value)."""

    def __init__(self, mem: Memory, size: int, desc: int, avail: int, used: int,
                 last_avail: int = 0, used_idx: int = 0, indirect: bool = True) -> None:
        if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
            raise QueueError(f"queue size {size} is not a power of two in 1..{MAX_QUEUE_SIZE}")
        for name, addr, align, length in (("descriptor table", desc, 16, 16 * size),
                                          ("available ring", avail, 2, 6 + 2 * size),
                                          ("used ring", used, 4, 6 + 8 * size)):
            if addr % align:
                raise QueueError(f"{name} at {addr:#x} is not {align}-byte aligned")
            if not mem.contains(addr, length):
                raise QueueError(f"{name} {addr:#x}+{length:#x} is outside guest memory")
        self.mem = mem
        self.size = size
        self.desc, self.avail, self.used = desc, avail, used
        self.last_avail = last_avail & 0xFFFF
        self.used_idx = used_idx & 0xFFFF
        self.indirect = indirect
        # Views stay valid as long as guest memory is mapped; they save a lookup per access.
        self._desc_view = mem.view(desc, 16 * size)
        self._avail_view = mem.view(avail, 4 + 2 * size)
        self._used_view = mem.view(used, 4 + 8 * size)
        # The indices and flags the driver changes under us must be read and written as
        # single 16-bit accesses: struct's little-endian codecs go byte by byte, and a torn
        # index (0x01ff -> 0x0200 read as 0x02ff) makes either side see buffers that are
        # not there. A memoryview cast to "H" accesses each element with one 16-bit move.
        self._avail16 = self._avail_view.cast("H")   # [0] flags, [1] idx, [2 + i] ring
        self._used16 = self._used_view.cast("H")     # [0] flags, [1] idx

    # --- available side -------------------------------------------------------------------
    def avail_idx(self) -> int:
        return self._avail16[1]

    def pending(self) -> int:
        """How many chains the driver has made available that we have not popped."""
        n = (self.avail_idx() - self.last_avail) & 0xFFFF
        if n > self.size:
            raise QueueError(f"available index moved by {n}, more than the queue size {self.size} "
                             f"(avail.idx {self.avail_idx()}, last seen {self.last_avail}, "
                             f"used.idx {self.used_idx})")
        return n

    def pop(self) -> Chain | None:
        """The next available chain, or None. Raises QueueError for a malformed one."""
        if self.pending() == 0:
            return None
        slot = self.last_avail % self.size
        head = self._avail16[2 + slot]
        chain = self._walk(head)
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        return chain

    def unpop(self) -> None:
        """Give back the chain just popped (e.g. a receive buffer we had no data for)."""
        self.last_avail = (self.last_avail - 1) & 0xFFFF

    def _walk(self, head: int) -> Chain:
        if head >= self.size:
            raise QueueError(f"available ring names descriptor {head}, queue size is {self.size}")
        chain = Chain(head)
        table, table_len = self._desc_view, self.size
        index, seen, in_indirect = head, 0, False
        mem = self.mem
        while True:
            if index >= table_len:
                raise QueueError(f"descriptor chain from {head} links to {index}, "
                                 f"table has {table_len}")
            seen += 1
            if seen > table_len:
                raise QueueError(f"descriptor chain from {head} is longer than its table "
                                 f"({table_len}): a loop")
            addr, length, flags, nxt = _DESC.unpack_from(table, 16 * index)
            if flags & VRING_DESC_F_INDIRECT:
                if not self.indirect:
                    raise QueueError("indirect descriptor used but VIRTIO_F_INDIRECT_DESC "
                                     "was not negotiated")
                if in_indirect:
                    raise QueueError("indirect descriptor inside an indirect table")
                if flags & VRING_DESC_F_NEXT:
                    raise QueueError("indirect descriptor with NEXT set")
                if length == 0 or length % 16:
                    raise QueueError(f"indirect table length {length} is not a non-zero "
                                     "multiple of 16")
                if length // 16 > MAX_QUEUE_SIZE:
                    raise QueueError(f"indirect table of {length // 16} entries is too long")
                try:
                    table = mem.view(addr, length)
                except GuestMemoryError as e:
                    raise QueueError(f"indirect table: {e}") from None
                table_len, index, seen, in_indirect = length // 16, 0, 0, True
                continue
            if length and not mem.contains(addr, length):
                raise QueueError(f"descriptor {index} buffer {addr:#x}+{length:#x} is outside "
                                 "guest memory")
            if flags & VRING_DESC_F_WRITE:
                chain.writable.append((addr, length))
            else:
                if chain.writable:
                    raise QueueError(f"descriptor {index}: device-readable buffer after a "
                                     "device-writable one")
                chain.readable.append((addr, length))
            if not flags & VRING_DESC_F_NEXT:
                return chain
            index = nxt

    # --- used side ------------------------------------------------------------------------
    def push(self, head: int, written: int) -> None:
        """Return a chain to the driver with the number of bytes written into it."""
        slot = self.used_idx % self.size
        _USED_ELEM.pack_into(self._used_view, 4 + 8 * slot, head, written)
        # x86 stores are not reordered with other stores, so the element is visible before
        # the index that publishes it (one 16-bit store, never torn).
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self._used16[1] = self.used_idx

    def set_notify(self, enabled: bool) -> None:
        """VRING_USED_F_NO_NOTIFY: tell the driver whether we need its notifications. A
        device that polls anyway (e.g. while it has buffers) saves the guest an exit."""
        self._used16[0] = 0 if enabled else VRING_USED_F_NO_NOTIFY

    def wants_interrupt(self) -> bool:
        return not self._avail16[0] & VRING_AVAIL_F_NO_INTERRUPT


def _views(segments: list[tuple[int, int]], mem: Memory, offset: int, length: int) -> list[memoryview]:
    """Windows onto guest RAM covering bytes [offset, offset+length) of a list of segments."""
    out: list[memoryview] = []
    pos = 0
    end = offset + length
    for gpa, n in segments:
        lo, hi = max(offset, pos), min(end, pos + n)
        if lo < hi:
            out.append(mem.view(gpa + lo - pos, hi - lo))
        pos += n
        if pos >= end:
            break
    return out
