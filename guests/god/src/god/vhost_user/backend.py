"""A vhost-user back-end (QEMU docs/interop/vhost-user.rst) that serves god's device models.

QEMU (the front-end) connects to our Unix socket and drives a message protocol: features,
the guest memory table (file descriptors passed with SCM_RIGHTS, mapped shared here), and
per ring its size, addresses, base index and two eventfds (kick: guest notified the ring;
call: we interrupt the guest). When every ring the device uses is started (kick fd
received) and enabled, the same ActiveQueues a virtio-mmio transport would build is handed
to the device model, which then runs exactly as it does inside god.

For vhost-user-vsock, QEMU keeps the event queue (ring 2) and gives us rings 0 (rx) and
1 (tx); the guest CID reaches QEMU through GET_CONFIG.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from god.memory import GuestMemoryError
from god.unix_listener import listen_unix
from god.vhost_user.memory import SharedMemory
from god.virtio.device import ActiveQueues, VirtioDevice
from god.virtio.queue import QueueError, Virtqueue

log = logging.getLogger("god.vhost_user")

HDR = struct.Struct("<III")          # request, flags, size
VERSION = 0x1
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3
MAX_PAYLOAD = 4096
MAX_FDS = 8

GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_LOG_BASE, SET_LOG_FD, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 6, 7, 8, 9, 10
GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 11, 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
GET_CONFIG, SET_CONFIG = 24, 25
NAMES = {v: k for k, v in list(globals().items()) if k.isupper() and isinstance(v, int)
         and 1 <= v <= 25 and k not in ("VERSION",)}

F_PROTOCOL_FEATURES = 1 << 30
PROTOCOL_F_MQ = 1 << 0
PROTOCOL_F_REPLY_ACK = 1 << 3
PROTOCOL_F_CONFIG = 1 << 9
OUR_PROTOCOL_FEATURES = PROTOCOL_F_MQ | PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIG
VRING_NOFD = 1 << 8
VRING_IDX_MASK = 0xFF

_U64 = struct.Struct("<Q")
_STATE = struct.Struct("<II")
_ADDR = struct.Struct("<IIQQQQ")
_REGION = struct.Struct("<QQQQ")
_CONFIG_HDR = struct.Struct("<III")


@dataclass
class Ring:
    num: int = 0
    desc: int = 0          # front-end virtual addresses
    used: int = 0
    avail: int = 0
    base: int = 0
    kick: int | None = None
    call: int | None = None
    err: int | None = None
    started: bool = False
    enabled: bool = False
    queue: Virtqueue | None = None


class ProtocolError(Exception):
    """The front-end sent something we cannot honour; the connection is dropped."""


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class VhostUserBackend:
    """Serves one device to one front-end connection at a time."""

    def __init__(self, device: VirtioDevice, nrings: int) -> None:
        self.device = device
        self.nrings = nrings
        self.mem = SharedMemory()
        self.rings = [Ring() for _ in range(nrings)]
        self.features = 0
        self.protocol_features = 0
        self.running = False

    # --- connection -----------------------------------------------------------------------
    def serve(self, conn: socket.socket) -> None:
        """Handle messages until the front-end disconnects."""
        try:
            while True:
                msg = self._recv(conn)
                if msg is None:
                    return
                req, flags, payload, fds = msg
                try:
                    reply = self.handle(req, payload, fds)
                except (ProtocolError, GuestMemoryError, QueueError, struct.error) as e:
                    log.error("vhost-user: %s: %s", NAMES.get(req, req), e)
                    for fd in fds:
                        _close(fd)
                    raise
                if reply is None and flags & FLAG_NEED_REPLY and \
                        self.protocol_features & PROTOCOL_F_REPLY_ACK:
                    reply = _U64.pack(0)
                if reply is not None:
                    conn.sendall(HDR.pack(req, VERSION | FLAG_REPLY, len(reply)) + reply)
        finally:
            self.stop()
            self._reset_rings()

    @staticmethod
    def _recv(conn: socket.socket) -> tuple[int, int, bytes, list[int]] | None:
        try:
            data, fds, _, _ = socket.recv_fds(conn, HDR.size, MAX_FDS)
        except ConnectionResetError:
            return None
        if not data:
            return None
        while len(data) < HDR.size:
            more = conn.recv(HDR.size - len(data))
            if not more:
                return None
            data += more
        req, flags, size = HDR.unpack(data)
        if size > MAX_PAYLOAD:
            for fd in fds:
                _close(fd)
            raise ProtocolError(f"message {req} claims {size} payload bytes")
        payload = b""
        while len(payload) < size:
            more = conn.recv(size - len(payload))
            if not more:
                return None
            payload += more
        return req, flags, payload, list(fds)

    # --- messages -------------------------------------------------------------------------
    def handle(self, req: int, p: bytes, fds: list[int]) -> bytes | None:
        if req == GET_FEATURES:
            return _U64.pack(self.device.device_features() | F_PROTOCOL_FEATURES)
        if req == SET_FEATURES:
            self.features = _U64.unpack_from(p)[0]
            return None
        if req == GET_PROTOCOL_FEATURES:
            return _U64.pack(OUR_PROTOCOL_FEATURES)
        if req == SET_PROTOCOL_FEATURES:
            self.protocol_features = _U64.unpack_from(p)[0] & OUR_PROTOCOL_FEATURES
            return None
        if req == GET_QUEUE_NUM:
            return _U64.pack(self.nrings)
        if req in (SET_OWNER, RESET_OWNER):
            if req == RESET_OWNER:
                self.stop()
                self._reset_rings()
            return None
        if req == SET_MEM_TABLE:
            self._set_mem_table(p, fds)
            return None
        if req == GET_CONFIG:
            off, size, flags = _CONFIG_HDR.unpack_from(p)
            cfg = self.device.config()[off:off + size]
            return _CONFIG_HDR.pack(off, size, flags) + cfg + bytes(size - len(cfg))
        if req == SET_CONFIG:
            off, size, _ = _CONFIG_HDR.unpack_from(p)
            self.device.write_config(off, p[_CONFIG_HDR.size:_CONFIG_HDR.size + size])
            return None
        if req in (SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE, GET_VRING_BASE):
            index, num = _STATE.unpack_from(p)
            ring = self._ring(index)
            if req == SET_VRING_NUM:
                ring.num = num
            elif req == SET_VRING_BASE:
                ring.base = num
            elif req == SET_VRING_ENABLE:
                ring.enabled = bool(num)
                self._maybe_start()
            else:  # GET_VRING_BASE: stop the ring and say where the device got to
                self.stop()
                base = ring.queue.last_avail if ring.queue is not None else ring.base
                ring.started, ring.queue, ring.base = False, None, base
                _close(ring.kick)
                ring.kick = None
                return _STATE.pack(index, base)
            return None
        if req == SET_VRING_ADDR:
            index, _flags, desc, used, avail, _log = _ADDR.unpack_from(p)
            ring = self._ring(index)
            ring.desc, ring.used, ring.avail = desc, used, avail
            return None
        if req in (SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR):
            (u,) = _U64.unpack_from(p)
            ring = self._ring(u & VRING_IDX_MASK)
            fd = None if u & VRING_NOFD or not fds else fds[0]
            for extra in fds[1:]:
                _close(extra)
            if req == SET_VRING_KICK:
                if fd is None:
                    raise ProtocolError("polling rings (no kick fd) are not supported")
                _close(ring.kick)
                ring.kick, ring.started = fd, True
                if not self.protocol_features and not self.features & F_PROTOCOL_FEATURES:
                    ring.enabled = True  # without protocol features, a started ring is live
                self._maybe_start()
            elif req == SET_VRING_CALL:
                _close(ring.call)
                ring.call = fd
            else:
                _close(ring.err)
                ring.err = fd
            return None
        if req in (SET_LOG_BASE, SET_LOG_FD):
            for fd in fds:
                _close(fd)
            raise ProtocolError("dirty logging (migration) is not supported")
        for fd in fds:
            _close(fd)
        log.warning("vhost-user: ignoring request %d", req)
        return None

    def _ring(self, index: int) -> Ring:
        if index >= self.nrings:
            raise ProtocolError(f"ring {index}: this device has {self.nrings}")
        return self.rings[index]

    def _set_mem_table(self, p: bytes, fds: list[int]) -> None:
        nregions = struct.unpack_from("<I", p)[0]
        if nregions != len(fds) or nregions > MAX_FDS:
            for fd in fds:
                _close(fd)
            raise ProtocolError(f"memory table: {nregions} regions, {len(fds)} fds")
        self.stop()
        new = SharedMemory()
        for i, fd in enumerate(fds):
            gpa, size, user, off = _REGION.unpack_from(p, 8 + i * _REGION.size)
            new.add(fd, gpa, size, user, off)
        self.mem = new
        log.info("vhost-user: memory table: %s", ", ".join(
            f"{r.gpa:#x}+{r.size >> 20}MiB" for r in new.regions))

    # --- starting and stopping the device --------------------------------------------------
    def _maybe_start(self) -> None:
        if self.running or not all(r.started and r.enabled for r in self.rings):
            return
        queues: list[Virtqueue | None] = []
        indirect = bool(self.features & (1 << 28))
        for r in self.rings:
            desc = self.mem.va_to_gpa(r.desc, 16 * r.num)
            avail = self.mem.va_to_gpa(r.avail, 6 + 2 * r.num)
            used = self.mem.va_to_gpa(r.used, 6 + 8 * r.num)
            used_idx = self.mem.read_int(used + 2, 2)
            r.queue = Virtqueue(self.mem, r.num, desc, avail, used, last_avail=r.base,
                                used_idx=used_idx, indirect=indirect)
            queues.append(r.queue)
        n = len(self.device.queue_sizes)
        queues += [None] * (n - len(queues))
        kicks: list[int | None] = [r.kick for r in self.rings] + [None] * (n - len(self.rings))
        self.running = True
        self.device.activate(ActiveQueues(self.mem, queues, kicks, self._interrupt,
                                          self._fail, self.features))
        log.info("vhost-user: %s started (%s)", self.device.name,
                 ", ".join(f"ring {i}: {r.num}" for i, r in enumerate(self.rings)))

    def _interrupt(self, index: int) -> None:
        if index < self.nrings and self.rings[index].call is not None:
            try:
                os.eventfd_write(self.rings[index].call, 1)  # type: ignore[arg-type]
            except OSError:
                pass

    def _fail(self, reason: str) -> None:
        """The guest broke the ring protocol: stop serving it and tell QEMU (vring err)."""
        log.error("vhost-user: %s: device needs reset: %s", self.device.name, reason)
        for r in self.rings:
            if r.err is not None:
                try:
                    os.eventfd_write(r.err, 1)
                except OSError:
                    pass

    def stop(self) -> None:
        if self.running:
            self.device.reset()
            self.running = False

    def _reset_rings(self) -> None:
        for r in self.rings:
            for fd in (r.kick, r.call, r.err):
                _close(fd)
        self.rings = [Ring() for _ in range(self.nrings)]
        self.features = self.protocol_features = 0


def serve_forever(path: str, make_backend: Callable[[], VhostUserBackend],
                  once: bool = False) -> None:
    """Listen on path and serve front-ends one after another (QEMU may reconnect)."""
    lst = listen_unix(path, 1)  # appears only when ready: Companion.ready_path
    backend = make_backend()
    try:
        while True:
            conn, _ = lst.accept()
            log.info("vhost-user: front-end connected")
            with conn:
                try:
                    backend.serve(conn)
                except (ProtocolError, GuestMemoryError, QueueError, struct.error, OSError) as e:
                    log.error("vhost-user: dropping front-end: %s", e)
            log.info("vhost-user: front-end disconnected")
            if once:
                return
    finally:
        lst.close()
        backend.device.close()
        try:
            os.unlink(path)
        except OSError:
            pass
