"""virtio-vsock device model driven by a Python driver (no KVM): handshake, data both ways,
RST for closed ports, guest-initiated connections, shutdown, and credit back-pressure."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from god.devices.irq import RecordingIrq
from god.memory import GuestMemory
from god.virtio.mmio import VirtioMmio
from god.virtio.vsock import (
    HDR,
    HDR_SIZE,
    OP_CREDIT_UPDATE,
    OP_REQUEST,
    OP_RESPONSE,
    OP_RST,
    OP_RW,
    OP_SHUTDOWN,
    SHUT_SEND,
    VirtioVsock,
)
from pydriver import Alloc, Driver

from pytest_vmm import vsock as hv

CID = 7
BUF = 4096


class GuestStack:
    """The guest end of vsock, minimal: posts receive buffers, sends packets."""

    def __init__(self, tmp_path, guest_buf_alloc: int = 1 << 20) -> None:
        self.mem = GuestMemory([(0, 16 << 20)])
        self.alloc = Alloc(0x1000, 16 << 20)
        self.uds = str(tmp_path / "v.sock")
        self.dev = VirtioVsock(self.uds, CID)
        self.irq = RecordingIrq()
        self.mmio = VirtioMmio(self.dev, self.mem, self.irq)
        self.drv = Driver(self.mmio, self.mem, self.alloc)
        self.buf_alloc = guest_buf_alloc
        self.fwd: dict[int, int] = {}
        st = self.drv.init(sizes=[64, 64, 8])
        assert st & 4, st
        self.rx: dict[int, int] = {}
        for _ in range(32):
            self.post_rx()
        self.drv.notify(0)

    def post_rx(self) -> None:
        buf = self.alloc(BUF)
        head = self.drv.queues[0].add([(buf, BUF, True)])
        self.rx[head] = buf

    def recv_packets(self, count: int = 1, timeout: float = 5.0) -> list[tuple]:
        out = []
        for head, n in self.drv.wait_used(0, count, timeout):
            buf = self.rx.pop(head)
            h = HDR.unpack(self.mem.read(buf, HDR_SIZE))
            out.append((h, self.mem.read(buf + HDR_SIZE, h[4])))
            self.post_rx()
        self.drv.notify(0)
        return out

    def send(self, op: int, src_port: int, dst_port: int, data: bytes = b"", flags: int = 0,
             fwd: int = 0) -> None:
        buf = self.alloc(HDR_SIZE + len(data))
        self.mem.write(buf, HDR.pack(CID, 2, src_port, dst_port, len(data), 1, op, flags,
                                     self.buf_alloc, fwd) + data)
        self.drv.queues[1].add([(buf, HDR_SIZE, False)] + ([(buf + HDR_SIZE, len(data), False)]
                                                            if data else []))
        self.drv.notify(1)
        self.drv.wait_used(1, 1)

    def close(self) -> None:
        self.mmio.reset()
        self.mmio.close()
        self.mem.close()


@pytest.fixture
def g(tmp_path):
    st = GuestStack(tmp_path)
    yield st
    st.close()


def _accept_host(g: GuestStack, port: int) -> tuple[socket.socket, tuple]:
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("s", hv.connect(g.uds, port, 5,
                                                                         retry_until_ready=False)))
    t.start()
    (h, _), = g.recv_packets()
    assert h[6] == OP_REQUEST and h[0] == 2 and h[1] == CID and h[3] == port
    g.send(OP_RESPONSE, port, h[2])
    t.join(5)
    return box["s"], h


def test_config_space_holds_the_cid(g):
    assert g.mmio.read(0x100, 4) == CID and g.mmio.read(0x104, 4) == 0
    assert g.mmio.read(0x008, 4) == 19


def test_host_connect_and_data_both_ways(g):
    s, h = _accept_host(g, 52)
    host_port = h[2]
    s.sendall(b"ping")
    (rh, data), = g.recv_packets()
    assert rh[6] == OP_RW and data == b"ping"
    g.send(OP_RW, 52, host_port, b"pong!")
    assert hv.recv_exact(s, 5) == b"pong!"
    assert g.irq.raises >= 1
    s.close()
    (sh, _), = g.recv_packets()
    assert sh[6] == OP_SHUTDOWN and sh[7] & SHUT_SEND


def test_guest_refusal_closes_host_socket(g):
    t_err: dict = {}

    def run() -> None:
        try:
            hv.connect(g.uds, 99, 3, retry_until_ready=False)
        except hv.VsockError as e:
            t_err["e"] = e
    t = threading.Thread(target=run)
    t.start()
    (h, _), = g.recv_packets()
    g.send(OP_RST, 99, h[2])
    t.join(5)
    assert "refused" in str(t_err["e"])


def test_bad_handshake_is_dropped(g):
    s = socket.socket(socket.AF_UNIX)
    s.connect(g.uds)
    s.sendall(b"HELLO there\n")
    s.settimeout(3)
    assert s.recv(10) == b""


def test_guest_connect_to_listening_host_port(g, tmp_path):
    with hv.listen(g.uds, 1234) as lst:
        g.send(OP_REQUEST, 5000, 1234)
        (h, _), = g.recv_packets()
        assert h[6] == OP_RESPONSE and h[2] == 1234 and h[3] == 5000
        c = lst.accept(5)
        g.send(OP_RW, 5000, 1234, b"hello host")
        assert hv.recv_exact(c, 10) == b"hello host"
        c.sendall(b"hi guest")
        (d, data), = g.recv_packets()
        assert d[6] == OP_RW and data == b"hi guest"
        c.close()


def test_guest_connect_to_nobody_gets_rst(g):
    g.send(OP_REQUEST, 5001, 4321)
    (h, _), = g.recv_packets()
    assert h[6] == OP_RST and h[3] == 5001


def test_rw_on_unknown_connection_gets_rst(g):
    g.send(OP_RW, 77, 1 << 30, b"x")
    (h, _), = g.recv_packets()
    assert h[6] == OP_RST


def test_credit_limits_host_to_guest(tmp_path):
    """The guest advertises 1000 bytes: the device sends no more until fwd_cnt moves."""
    g = GuestStack(tmp_path, guest_buf_alloc=1000)
    try:
        s, h = _accept_host(g, 60)
        blob = bytes(range(256)) * 20          # 5120 bytes
        s.sendall(blob)
        got = b"".join(d for _, d in g.recv_packets(1))
        import time
        time.sleep(0.2)
        more = g.drv.queues[0].take_used()
        assert not more and len(got) <= 1000
        while len(got) < len(blob):
            g.send(OP_CREDIT_UPDATE, 60, h[2], fwd=len(got))
            got += b"".join(d for _, d in g.recv_packets(1))
        assert got == blob
    finally:
        g.close()


def test_guest_shutdown_send_half_closes_host(g):
    s, h = _accept_host(g, 61)
    g.send(OP_RW, 61, h[2], b"last words")
    g.send(OP_SHUTDOWN, 61, h[2], flags=SHUT_SEND)
    s.settimeout(3)
    assert hv.recv_exact(s, 10) == b"last words"
    assert s.recv(10) == b""           # EOF: the guest will send no more
    s.sendall(b"still ok")             # the other direction stays open
    (_, data), = g.recv_packets()
    assert data == b"still ok"
    s.close()


def test_malformed_tx_chain_needs_reset(g):
    """A transmit buffer marked device-writable breaks the virtqueue rules."""
    buf = g.alloc(HDR_SIZE)
    g.drv.queues[1].add([(buf, HDR_SIZE, True)])
    g.drv.notify(1)
    import time
    for _ in range(200):
        if g.mmio.status & 64:
            break
        time.sleep(0.01)
    assert g.mmio.status & 64 and "writable" in g.mmio.needs_reset_reason
    assert g.mmio.interrupt_status & 2


def test_cid_below_three_rejected(tmp_path):
    with pytest.raises(ValueError, match="3.."):
        VirtioVsock(str(tmp_path / "x.sock"), 2)


def test_header_layout_is_44_bytes():
    assert HDR_SIZE == 44 and struct.calcsize("<QQIIIHHIII") == 44


def _credit_from(g: GuestStack, timeout: float = 5.0) -> tuple[int, int]:
    """Latest (buf_alloc, fwd_cnt) the device advertised, from its packets to the guest."""
    pk = g.recv_packets(1, timeout)
    h = pk[-1][0]
    return h[8], h[9]


def test_back_pressure_guest_to_host_keeps_every_byte_in_order(g):
    """The host does not read; the guest sends within its credit only; once the host reads,
    credit updates let the rest through. 1 MiB arrives complete and in order."""
    s, h = _accept_host(g, 62)
    host_port = h[2]
    # The RESPONSE handshake gave the device's credit: buf_alloc, fwd_cnt 0.
    from god.virtio.vsock import BUF_ALLOC
    total = bytes(i * 7 % 251 for i in range(1 << 20))
    sent, peer_fwd, chunk = 0, 0, 3000
    got = bytearray()
    s.setblocking(False)
    while len(got) < len(total):
        while sent < len(total) and sent + chunk - peer_fwd <= BUF_ALLOC:
            g.send(OP_RW, 62, host_port, total[sent:sent + chunk])
            sent += min(chunk, len(total) - sent)
        try:
            got += s.recv(1 << 16)      # the host reads only when the guest is out of credit
        except BlockingIOError:
            pass
        if sent - peer_fwd + chunk > BUF_ALLOC and sent < len(total):
            g.send(7, 62, host_port)    # CREDIT_REQUEST: answered with CREDIT_UPDATE
            ups = [hh for hh, _ in g.recv_packets(1) if hh[6] == OP_CREDIT_UPDATE]
            assert ups
            peer_fwd = max(hh[9] for hh in ups)
    assert bytes(got) == total


def test_guest_rst_still_delivers_buffered_bytes(g):
    s, h = _accept_host(g, 63)
    blob = bytes(range(256)) * 40
    for i in range(0, len(blob), 2000):
        g.send(OP_RW, 63, h[2], blob[i:i + 2000])
    g.send(OP_RST, 63, h[2])
    s.settimeout(5)
    assert hv.recv_exact(s, len(blob)) == blob
    assert s.recv(1) == b""
