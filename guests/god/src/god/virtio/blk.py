"""virtio-blk on a raw image file (virtio 1.2 section 5.2): read, write, flush, get-id.

Data moves between the image and guest RAM with preadv/pwritev on zero-copy views of the
guest buffers. Requests the guest gets wrong in a device-specific way (a sector past the
end, a length that is not whole sectors, a write to a read-only disk) complete with
VIRTIO_BLK_S_IOERR / UNSUPP; requests that break the virtqueue rules (no status byte, a
header that is not device-readable) put the device in NEEDS_RESET.
"""

from __future__ import annotations

import os
import selectors
import struct

from god.devices.diag import say
from god.memory import GuestMemoryError
from god.virtio.device import DEVICE_ID_BLOCK, ActiveQueues, VirtioDevice, Worker, drain_eventfd
from god.virtio.queue import Chain, Memory, QueueError

SECTOR = 512
T_IN, T_OUT, T_FLUSH, T_GET_ID = 0, 1, 4, 8
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
F_SEG_MAX, F_RO, F_BLK_SIZE, F_FLUSH = 1 << 2, 1 << 5, 1 << 6, 1 << 9
ID_BYTES = 20
QUEUE_SIZE = 256
_REQ = struct.Struct("<IIQ")


class BlockImageError(ValueError):
    """The image cannot be served (missing, unreadable, or not whole sectors)."""


class VirtioBlk(VirtioDevice):
    device_id = DEVICE_ID_BLOCK
    name = "virtio-blk"
    queue_sizes = (QUEUE_SIZE,)

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False, serial: str | None = None) -> None:
        self.path = os.fspath(path)
        self.read_only = read_only
        try:
            self.fd = os.open(self.path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as e:
            raise BlockImageError(f"disk {self.path}: {e.strerror}") from None
        self.size = os.fstat(self.fd).st_size
        if self.size % SECTOR:
            os.close(self.fd)
            raise BlockImageError(f"disk {self.path}: size {self.size} bytes is not a multiple "
                                  f"of {SECTOR}; pad or truncate the image to whole sectors")
        self.capacity = self.size // SECTOR
        ident = (serial or os.path.basename(self.path)).encode()[:ID_BYTES]
        self.ident = ident + bytes(ID_BYTES - len(ident))
        self._worker: Worker | None = None
        self._active: ActiveQueues | None = None
        self._broken = False

    def device_features(self) -> int:
        f = super().device_features() | F_FLUSH | F_SEG_MAX | F_BLK_SIZE
        return f | F_RO if self.read_only else f

    def config(self) -> bytes:
        # capacity, size_max, seg_max, geometry (c/h/s), blk_size
        return struct.pack("<QIIHBBI", self.capacity, 0, QUEUE_SIZE - 2, 0, 0, 0, SECTOR)

    def activate(self, active: ActiveQueues) -> None:
        self.reset()
        self._active = active
        self._broken = False
        kick = active.kicks[0]
        if active.queues[0] is None or kick is None:
            return
        w = Worker(f"god-{self.name}", self._step, active.fail)
        w.sel.register(kick, selectors.EVENT_READ)
        self._worker = w
        w.start()
        os.eventfd_write(kick, 1)  # requests queued before DRIVER_OK are served too

    def reset(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self._active = None

    def close(self) -> None:
        self.reset()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # --- worker thread ----------------------------------------------------------------------
    def _step(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        a = self._active
        if a is None or self._broken:
            for key, _ in events:
                drain_eventfd(key.fd)
            return
        for key, _ in events:
            drain_eventfd(key.fd)
        q = a.queues[0]
        assert q is not None
        done = 0
        try:
            while True:
                chain = q.pop()
                if chain is None:
                    break
                q.push(chain.head, self.handle(chain, a))
                done += 1
        except (QueueError, GuestMemoryError) as e:
            self._broken = True
            a.fail(str(e))
            return
        if done and q.wants_interrupt():
            a.interrupt(0)

    def handle(self, chain: Chain, a: ActiveQueues) -> int:
        """Serve one request; returns the bytes written into the chain (data + status)."""
        mem = a.mem
        if chain.readable_len < _REQ.size:
            raise QueueError(f"request header needs {_REQ.size} device-readable bytes, "
                             f"chain has {chain.readable_len}")
        if chain.writable_len < 1:
            raise QueueError("request has no device-writable status byte")
        typ, _, sector = _REQ.unpack(chain.read(mem, 0, _REQ.size))
        out_len = chain.readable_len - _REQ.size     # data the device reads (T_OUT)
        in_len = chain.writable_len - 1              # room the device writes (T_IN, GET_ID)
        try:
            status, written = self._serve(chain, mem, typ, sector, out_len, in_len)
        except OSError as e:
            say(f"virtio-blk: {self.path}: {e}")
            status, written = S_IOERR, 0
        chain.write(mem, bytes([status]), chain.writable_len - 1)
        return written + 1

    def _serve(self, chain: Chain, mem: Memory, typ: int, sector: int, out_len: int,
               in_len: int) -> tuple[int, int]:
        status, written = S_OK, 0
        if typ == T_IN:
            status = self._check(sector, in_len)
            if status == S_OK and in_len:
                views = chain.writable_views(mem, 0, in_len)
                got = os.preadv(self.fd, views, sector * SECTOR)
                if got != in_len:
                    status = S_IOERR
                written = got
        elif typ == T_OUT:
            status = S_IOERR if self.read_only else self._check(sector, out_len)
            if status == S_OK and out_len:
                views = chain.readable_views(mem, _REQ.size, out_len)
                if os.pwritev(self.fd, views, sector * SECTOR) != out_len:
                    status = S_IOERR
        elif typ == T_FLUSH:
            if not self.read_only:
                os.fsync(self.fd)
        elif typ == T_GET_ID:
            written = chain.write(mem, self.ident[:in_len])
        else:
            status = S_UNSUPP
        return status, written

    def _check(self, sector: int, length: int) -> int:
        if length % SECTOR:
            say(f"virtio-blk: request of {length} bytes is not whole sectors")
            return S_IOERR
        if sector * SECTOR + length > self.size:
            say(f"virtio-blk: sector {sector} + {length} bytes is past the end "
                f"({self.capacity} sectors)")
            return S_IOERR
        return S_OK
