"""virtio-vsock conformance (virtio 1.2 section 5.10) from the guest side of the device, by
the host's virtio driver through the agent; the host end is the Firecracker-style hybrid
socket the stack declares (a guest connection to CID 2 port P reaches a Unix socket listening
at ``<uds>_P``). On god this is god's device; QEMU has no vsock device of its own here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vmm import Machine
from pytest_vmm.virtio.layout import (
    F_VERSION_1,
    VSOCK_EVENT,
    VSOCK_HOST_CID,
    VSOCK_RX,
    VSOCK_SHUTDOWN_RCV,
    VSOCK_SHUTDOWN_SEND,
    VSOCK_TX,
    VSOCK_TYPE_STREAM,
    DeviceId,
    VsockOp,
    bit,
)
from pytest_vmm.virtio.slots import device, find_slots
from pytest_vmm.virtio.vsock import VsockDriver

pytestmark = pytest.mark.vmm_requires("dma", "vsock")

GUEST_PORT = 7000
HOST_PORT = 9100
CLOSED_PORT = 9199
GUEST_BUF_ALLOC = 65536


@pytest.fixture
def vsock(machine: Machine) -> Iterator[VsockDriver]:
    slots = find_slots(machine.agent)
    found = [(i, s) for i, s in enumerate(slots) if s.device_id == DeviceId.VSOCK]
    if not found:
        pytest.fail(f"{machine.target_id} declares vsock but no virtio-vsock device was found (slots: {slots})")
    index, slot = found[0]
    dev = device(machine.agent, slot, index, len(slots))
    dev.initialize(bit(F_VERSION_1), queues=(VSOCK_RX, VSOCK_TX, VSOCK_EVENT))
    yield VsockDriver(dev)
    dev.set_status(0)


@pytest.fixture
def listener(machine: Machine) -> Iterator[socket.socket]:
    assert machine.spec.vsock is not None
    path = Path(machine.run_dir) / f"{machine.spec.vsock.socket_name}_{HOST_PORT}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(10)
    yield server
    server.close()
    path.unlink(missing_ok=True)


def connect(vsock: VsockDriver, port: int, guest_port: int = GUEST_PORT) -> None:
    vsock.send(VsockOp.REQUEST, guest_port, port, buf_alloc=GUEST_BUF_ALLOC)


def test_config_guest_cid(machine: Machine, vsock: VsockDriver) -> None:
    """5.10.4: guest_cid is the CID the device gives this guest (the stack asks for 3)."""
    assert machine.spec.vsock is not None
    assert vsock.guest_cid == machine.spec.vsock.guest_cid


def test_request_to_listening_port_gets_response(vsock: VsockDriver, listener: socket.socket) -> None:
    """5.10.6.5 (stream sockets): a REQUEST to a port someone listens on is answered with RESPONSE, from the
    host CID and port to ours, stream type, with the host's credit (buf_alloc)."""
    connect(vsock, HOST_PORT)
    reply = vsock.receive()
    conn, _ = listener.accept()
    conn.close()
    assert reply.op == VsockOp.RESPONSE, f"REQUEST to a listening port: expected RESPONSE (2), received op {reply.op}"
    assert (reply.src_cid, reply.src_port) == (VSOCK_HOST_CID, HOST_PORT)
    assert (reply.dst_cid, reply.dst_port) == (vsock.guest_cid, GUEST_PORT)
    assert reply.type == VSOCK_TYPE_STREAM
    assert reply.buf_alloc > 0, "RESPONSE advertises no receive buffer (buf_alloc 0)"


def test_request_to_closed_port_gets_rst(vsock: VsockDriver) -> None:
    """5.10.6.5: a REQUEST to a port nobody listens on is refused with RST."""
    connect(vsock, CLOSED_PORT, guest_port=GUEST_PORT + 1)
    reply = vsock.receive()
    assert reply.op == VsockOp.RST, f"REQUEST to a closed port: expected RST (3), received op {reply.op}"
    assert (reply.src_port, reply.dst_port) == (CLOSED_PORT, GUEST_PORT + 1)


def test_rw_both_ways_within_credit(vsock: VsockDriver, listener: socket.socket) -> None:
    """5.10.6.3 (buffer space management) / 5.10.6.4: RW carries stream bytes; the guest sends within the credit the
    host advertised (buf_alloc - bytes in flight) and the host's bytes come back as RW
    packets whose payload length is the header's len."""
    connect(vsock, HOST_PORT)
    response = vsock.receive(op=VsockOp.RESPONSE)
    conn, _ = listener.accept()
    conn.settimeout(10)
    try:
        data = bytes(range(256)) * 4
        assert len(data) <= response.buf_alloc, "the host's credit is smaller than the test's message"
        vsock.send(VsockOp.RW, GUEST_PORT, HOST_PORT, payload=data, buf_alloc=GUEST_BUF_ALLOC)
        got = b""
        while len(got) < len(data):
            chunk = conn.recv(4096)
            assert chunk, "the host socket closed before the guest's RW payload arrived"
            got += chunk
        assert got == data, "RW payload arrived changed at the host socket"
        conn.sendall(b"pong from the host")
        back = vsock.receive(op=VsockOp.RW)
        assert back.payload == b"pong from the host" and back.length == len(back.payload)
        assert back.dst_port == GUEST_PORT and back.src_port == HOST_PORT
    finally:
        conn.close()


def test_credit_request_gets_credit_update(vsock: VsockDriver, listener: socket.socket) -> None:
    """5.10.6.3: a peer receiving CREDIT_REQUEST answers with CREDIT_UPDATE carrying its
    current buf_alloc and fwd_cnt."""
    connect(vsock, HOST_PORT)
    vsock.receive(op=VsockOp.RESPONSE)
    conn, _ = listener.accept()
    try:
        vsock.send(VsockOp.CREDIT_REQUEST, GUEST_PORT, HOST_PORT, buf_alloc=GUEST_BUF_ALLOC)
        update = vsock.receive(op=VsockOp.CREDIT_UPDATE)
        assert update.buf_alloc > 0 and (update.src_port, update.dst_port) == (HOST_PORT, GUEST_PORT)
    finally:
        conn.close()


def test_shutdown_both_directions_closes(vsock: VsockDriver, listener: socket.socket) -> None:
    """5.10.6.5: SHUTDOWN with RCV|SEND (5.10.6: flags bits 0 and 1) means the guest neither receives nor sends more; the
    host side sees end of stream and the peer completes the close with RST."""
    connect(vsock, HOST_PORT)
    vsock.receive(op=VsockOp.RESPONSE)
    conn, _ = listener.accept()
    conn.settimeout(10)
    try:
        vsock.send(VsockOp.SHUTDOWN, GUEST_PORT, HOST_PORT, flags=VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)
        deadline = time.monotonic() + 10
        eof = False
        while time.monotonic() < deadline and not eof:
            try:
                eof = conn.recv(4096) == b""
            except OSError:
                eof = True
        assert eof, "host socket did not see end of stream after SHUTDOWN(RCV|SEND)"
        rst = vsock.receive(op=VsockOp.RST)
        assert (rst.src_port, rst.dst_port) == (HOST_PORT, GUEST_PORT)
    finally:
        conn.close()
