"""The vhost-user back-end driven by a front-end written in Python (no QEMU): feature and
config negotiation, a memfd memory table passed with SCM_RIGHTS, rings given as front-end
virtual addresses, kick/call eventfds, GET_VRING_BASE, and malformed messages."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading

import pytest
from god.vhost_user import backend as B
from god.vhost_user.backend import VhostUserBackend
from god.vhost_user.memory import SharedMemory
from god.virtio.vsock import HDR, HDR_SIZE, OP_REQUEST, VirtioVsock
from pydriver import Alloc, DriverQueue

from pytest_vmm import vsock as hv

MEM = 4 << 20
VA_BASE = 0x7F00_0000_0000   # where our pretend QEMU has guest RAM mapped


class FrontEnd:
    def __init__(self, tmp_path) -> None:
        self.uds = str(tmp_path / "v.sock")
        self.device = VirtioVsock(self.uds, 9)
        self.backend = VhostUserBackend(self.device, nrings=2)
        self.sock, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, args=(peer,), daemon=True)
        self.thread.start()
        self.memfd = os.memfd_create("guest-ram")
        os.ftruncate(self.memfd, MEM)
        self.mem = SharedMemory()
        self.mem.add(os.dup(self.memfd), 0, MEM, VA_BASE, 0)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.backend.serve(conn)
            except BaseException as e:  # noqa: BLE001 - reported to the test
                self.error.append(e)

    def send(self, req: int, payload: bytes = b"", fds: list[int] | None = None,
             reply: bool = False) -> bytes | None:
        msg = struct.pack("<III", req, 1, len(payload)) + payload
        if fds:
            socket.send_fds(self.sock, [msg], fds)
        else:
            self.sock.sendall(msg)
        if not reply:
            return None
        hdr = hv.recv_exact(self.sock, 12)
        r, flags, size = struct.unpack("<III", hdr)
        assert r == req and flags & B.FLAG_REPLY
        return hv.recv_exact(self.sock, size)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)
        self.device.close()
        self.mem.close()
        os.close(self.memfd)


@pytest.fixture
def fe(tmp_path):
    f = FrontEnd(tmp_path)
    yield f
    f.close()


def _start(fe: FrontEnd) -> tuple[list[DriverQueue], list[int], list[int]]:
    feats = struct.unpack("<Q", fe.send(B.GET_FEATURES, reply=True))[0]
    assert feats & (1 << 32) and feats & B.F_PROTOCOL_FEATURES
    fe.send(B.SET_FEATURES, struct.pack("<Q", (1 << 32) | B.F_PROTOCOL_FEATURES))
    pf = struct.unpack("<Q", fe.send(B.GET_PROTOCOL_FEATURES, reply=True))[0]
    assert pf & B.PROTOCOL_F_CONFIG
    fe.send(B.SET_PROTOCOL_FEATURES, struct.pack("<Q", B.PROTOCOL_F_CONFIG))
    cfg = fe.send(B.GET_CONFIG, struct.pack("<III", 0, 8, 0) + bytes(8), reply=True)
    assert struct.unpack_from("<Q", cfg, 12)[0] == 9          # the guest CID
    fe.send(B.SET_OWNER)
    fe.send(B.SET_MEM_TABLE, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", 0, MEM, VA_BASE, 0),
            fds=[fe.memfd])
    alloc = Alloc(0x1000, MEM)
    queues, kicks, calls = [], [], []
    for i in range(2):
        q = DriverQueue(fe.mem, alloc, 16)
        kick = os.eventfd(0, os.EFD_NONBLOCK)
        call = os.eventfd(0, os.EFD_NONBLOCK)
        fe.send(B.SET_VRING_NUM, struct.pack("<II", i, 16))
        fe.send(B.SET_VRING_ADDR, struct.pack("<IIQQQQ", i, 0, VA_BASE + q.desc, VA_BASE + q.used,
                                              VA_BASE + q.avail, 0))
        fe.send(B.SET_VRING_BASE, struct.pack("<II", i, 0))
        fe.send(B.SET_VRING_KICK, struct.pack("<Q", i), fds=[kick])
        fe.send(B.SET_VRING_CALL, struct.pack("<Q", i), fds=[call])
        queues.append(q)
        kicks.append(kick)
        calls.append(call)
    return queues, kicks, calls


def test_backend_serves_the_vsock_device(fe):
    queues, kicks, calls = _start(fe)
    rx = queues[0]
    bufs = []
    for _ in range(4):
        b = Alloc(0x200000 + len(bufs) * 0x1000, MEM)(4096)
        bufs.append(b)
        rx.add([(b, 4096, True)])
    # With protocol features, rings start disabled until SET_VRING_ENABLE.
    assert not fe.backend.running
    for i in range(2):
        fe.send(B.SET_VRING_ENABLE, struct.pack("<II", i, 1))
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault(
        "err", pytest.raises(hv.VsockError, hv.connect, fe.uds, 77, 3, False)))
    t.start()
    r, _, _ = select.select([calls[0]], [], [], 5)    # the device interrupted via call fd
    assert r, "no call eventfd signal"
    (head, n), = rx.take_used()
    h = HDR.unpack(fe.mem.read(bufs[0], HDR_SIZE))
    assert h[6] == OP_REQUEST and h[1] == 9 and h[3] == 77 and n == HDR_SIZE
    state = fe.send(B.GET_VRING_BASE, struct.pack("<II", 0, 0), reply=True)
    assert struct.unpack("<II", state) == (0, 1)     # one receive buffer consumed
    assert not fe.backend.running                    # GET_VRING_BASE stops the device
    t.join(5)                                        # stopping closed the host connection
    assert "err" in box and "refused" in str(box["err"].value)
    for fd in kicks + calls:
        os.close(fd)


def test_bad_memory_table_drops_the_front_end(fe):
    fe.send(B.SET_MEM_TABLE, struct.pack("<II", 2, 0) + bytes(64), fds=[fe.memfd])
    fe.thread.join(5)
    assert fe.error and isinstance(fe.error[0], B.ProtocolError)


def test_kick_without_fd_is_refused(fe):
    fe.send(B.SET_VRING_KICK, struct.pack("<Q", 0 | B.VRING_NOFD))
    fe.thread.join(5)
    assert fe.error and "polling" in str(fe.error[0])


def test_oversized_message_is_refused(fe):
    fe.sock.sendall(struct.pack("<III", B.SET_FEATURES, 1, 1 << 20))
    fe.thread.join(5)
    assert fe.error and "payload" in str(fe.error[0])


@pytest.mark.parametrize("connected", [False, True])
def test_sigterm_ends_the_backend_and_removes_its_sockets(tmp_path, connected) -> None:
    """SIGTERM is the machine's stop for the back-end process (pytest_vmm/machine.py): it exits 0
    at once and leaves neither socket path behind, idle or with a front-end connected."""
    import signal
    import subprocess
    import sys
    import time

    import god

    sock, uds = tmp_path / "vu.sock", tmp_path / "vsock.sock"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(god.__file__))}
    proc = subprocess.Popen([sys.executable, "-m", "god.vhost_user", "--socket", str(sock),
                             "--vsock-uds", str(uds)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (sock.exists() and uds.exists()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the back-end never created its sockets"
            time.sleep(0.02)
        front = None
        if connected:
            front = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            front.connect(str(sock))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not sock.exists() and not uds.exists()
        if front is not None:
            front.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
