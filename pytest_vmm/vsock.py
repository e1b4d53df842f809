"""Host side of a guest's vsock device.

Two ways to reach a guest:
  * the hybrid Unix socket (Firecracker's protocol, served by god and by our vhost-user
    backend for QEMU): connect to the socket, send ``CONNECT <port>\\n``, read
    ``OK <hostport>\\n``, then the socket is the stream. Guest-initiated connections to host
    port P arrive on a Unix socket the host listens on at ``<path>_<P>``.
  * AF_VSOCK, where the host kernel has vhost-vsock (``/dev/vhost-vsock``): plain
    ``connect((cid, port))``.

``connect`` picks by its first argument: a path means hybrid, an int means AF_VSOCK.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Self

HANDSHAKE_LINE_MAX = 64


class VsockError(ConnectionError):
    """The guest refused the connection, or the device is not there (yet)."""


def af_vsock_available() -> bool:
    return hasattr(socket, "AF_VSOCK") and os.path.exists("/dev/vhost-vsock")


def connect(target: str | os.PathLike[str] | int, port: int, timeout: float = 10.0,
            retry_until_ready: bool = True) -> socket.socket:
    """A connected stream socket to guest ``port``.

    ``target`` is the hybrid socket path, or a guest CID for AF_VSOCK. The handshake is
    retried (until ``timeout``) while the device's socket does not exist yet or the guest
    has no listener yet (it answers by closing), unless ``retry_until_ready`` is False.
    The returned socket is blocking, with no timeout.
    """
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        try:
            if isinstance(target, int):
                return _connect_vsock(target, port, deadline)
            return _connect_hybrid(Path(target), port, deadline)
        except (VsockError, OSError) as e:
            last = str(e)
            if not retry_until_ready or time.monotonic() >= deadline:
                raise VsockError(f"vsock port {port} via {target}: {last}") from None
            time.sleep(0.05)


def _connect_vsock(cid: int, port: int, deadline: float) -> socket.socket:
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.connect((cid, port))
        s.settimeout(None)
        return s
    except BaseException:
        s.close()
        raise


def _connect_hybrid(path: Path, port: int, deadline: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.connect(str(path))
        s.sendall(f"CONNECT {port}\n".encode())
        line = b""
        # Read byte by byte: anything after the newline is already guest data.
        while not line.endswith(b"\n"):
            b = s.recv(1)
            if not b:
                raise VsockError(f"guest refused port {port} (connection closed)")
            line += b
            if len(line) > HANDSHAKE_LINE_MAX:
                raise VsockError(f"bad handshake reply {line[:40]!r}")
        parts = line.split()
        if len(parts) != 2 or parts[0] != b"OK":
            raise VsockError(f"bad handshake reply {line.strip()[:40]!r}")
        s.settimeout(None)
        return s
    except BaseException:
        s.close()
        raise


class Listener:
    """Accepts guest-initiated connections to host port ``port``: a Unix socket at
    ``<uds_path>_<port>`` (hybrid) — removed again by close()."""

    def __init__(self, uds_path: str | os.PathLike[str], port: int, backlog: int = 16) -> None:
        self.path = Path(f"{os.fspath(uds_path)}_{port}")
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(backlog)

    def accept(self, timeout: float | None = 10.0) -> socket.socket:
        self.sock.settimeout(timeout)
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            raise VsockError(f"no guest connection on {self.path} within {timeout}s") from None
        conn.settimeout(None)
        return conn

    def close(self) -> None:
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def listen(uds_path: str | os.PathLike[str], port: int, backlog: int = 16) -> Listener:
    """Listen for guest-initiated connections to host ``port`` (create before the guest
    connects: nobody listening means the guest gets RST)."""
    return Listener(uds_path, port, backlog)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly n bytes (a stream may split them); raises EOFError if the peer stops early."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)
