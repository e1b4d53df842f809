"""The lane link (pytest_vmm/lane_link.py) end to end on the host: its host end as the machine
runs it (a companion process), its lane end on a pty standing in for the lane's /dev/ttyS1,
and this test standing in for QEMU (the chardev socket <-> the pty master) and for god (an
echo server on the vsock Unix socket)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vmm import lane_link


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert proc.poll() is None, f"lane link end exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def pump(a: socket.socket, master: int) -> None:
    """QEMU's part: chardev socket <-> serial line (the pty master), both ways."""
    def up() -> None:
        while data := a.recv(65536):
            os.write(master, data)

    def down() -> None:
        try:
            while data := os.read(master, 65536):
                a.sendall(data)
        except OSError:
            pass
    for fn in (up, down):
        threading.Thread(target=fn, daemon=True).start()


def echo_server(path: Path) -> socket.socket:
    """god's part: each connection echoes until the client half-closes, then closes."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return server


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Path]:
    """A running link; yields the host-side socket clients connect to."""
    link_sock, listen, god_sock = tmp_path / "lane-link.sock", tmp_path / "vsock.sock", tmp_path / "god.sock"
    host = subprocess.Popen([sys.executable, "-m", "pytest_vmm.lane_link", "host", "--link", str(link_sock),
                             "--listen", str(listen)])
    master, slave = os.openpty()
    lane = None
    server = echo_server(god_sock)
    try:
        wait_for(link_sock, host)
        qemu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        qemu.connect(str(link_sock))
        os.write(master, b"noise the tty had before the lane end\r\n")
        pump(qemu, master)
        lane = subprocess.Popen([sys.executable, lane_link.__file__, "lane", "--tty", os.ttyname(slave),
                                 "--connect", str(god_sock)])
        yield listen
    finally:
        for proc in (host, lane):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:  # reported below, never left running
                    proc.kill()
                    proc.wait()
                    pytest.fail(f"lane link end {proc.args[2:4]} ignored SIGTERM for 10 s")
        server.close()
        os.close(master)
        os.close(slave)
    assert not listen.exists() and not link_sock.exists(), "the host end left its sockets behind"


def exchange(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(30)
        c.connect(str(path))
        sender = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
        sender.start()
        got = bytearray()
        while chunk := c.recv(65536):
            got += chunk
        sender.join()
        return bytes(got)


def test_bytes_pass_both_ways_unchanged(link: Path) -> None:
    data = bytes(range(256)) * 8  # every byte value, tty control characters included
    assert exchange(link, data) == data


def test_streams_are_independent_and_flow_controlled(link: Path) -> None:
    """Several connections at once, each larger than the pty's buffer: each gets its own bytes
    back, in order, and each ends when its peer closes."""
    payloads = [os.urandom(300_000) for _ in range(4)]
    results: list[bytes | None] = [None] * len(payloads)

    def run(i: int) -> None:
        results[i] = exchange(link, payloads[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == payloads


def test_a_stream_to_no_listener_ends_at_once(tmp_path: Path, link: Path) -> None:
    (tmp_path / "god.sock").unlink()  # god's socket gone: the lane end cannot connect
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(30)
        c.connect(str(link))
        c.sendall(b"CONNECT 5000\n")
        assert c.recv(100) == b"", "the client is closed when the lane end cannot reach god"


def test_frames_out_of_step_are_an_error() -> None:
    reader = lane_link.FrameReader()
    assert reader.feed(lane_link.frame(lane_link.DATA, 7, b"abc")[:5]) == []
    assert reader.feed(lane_link.frame(lane_link.DATA, 7, b"abc")[5:]) == [(lane_link.DATA, 7, b"abc")]
    with pytest.raises(ValueError, match="out of step"):
        reader.feed(b"\x09" + bytes(6))
