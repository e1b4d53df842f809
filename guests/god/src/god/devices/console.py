"""Host ends of the serial console: stdio, a Unix socket, or a file.

Spec strings (the --serial option): "stdio", "unix:PATH", "file:PATH", "none".
Output is written straight to the fd (no Python buffering), so a pexpect reader sees each
byte as the guest sends it.
"""

from __future__ import annotations

import errno
import os
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING

from god.devices.eventloop import EventLoop

if TYPE_CHECKING:
    import socket

Feed = Callable[[bytes], None]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


class Console:
    """Base: where guest output goes and where host input comes from."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def start(self, loop: EventLoop, feed: Feed) -> None:
        """Begin delivering host input to feed (called once the UART exists)."""

    def close(self) -> None:
        pass


class NullConsole(Console):
    def write(self, data: bytes) -> None:
        pass


class CallbackConsole(Console):
    """In-process use (tests, benchmarks): output goes to a callable."""

    def __init__(self, on_output: Callable[[bytes], None]) -> None:
        self.on_output = on_output

    def write(self, data: bytes) -> None:
        self.on_output(data)


class StdioConsole(Console):
    def __init__(self, in_fd: int = 0, out_fd: int = 1) -> None:
        self.in_fd, self.out_fd = in_fd, out_fd
        self._saved: list | None = None
        self._loop: EventLoop | None = None
        self._feed: Feed | None = None

    def write(self, data: bytes) -> None:
        try:
            _write_all(self.out_fd, data)
        except BrokenPipeError:
            pass  # the reader went away; the guest keeps running, as on real hardware

    def start(self, loop: EventLoop, feed: Feed) -> None:
        self._loop, self._feed = loop, feed
        if os.isatty(self.in_fd):
            self._raw_mode()
        loop.add_reader(self.in_fd, self._on_input)

    def _raw_mode(self) -> None:
        """Raw input so every key reaches the guest, but ISIG kept: Ctrl-C still stops god
        (QEMU's stdio chardev default, signal=on)."""
        self._saved = termios.tcgetattr(self.in_fd)
        a = termios.tcgetattr(self.in_fd)
        a[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
        a[1] &= ~termios.OPOST
        a[2] = (a[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
        a[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)
        a[6][termios.VMIN], a[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.in_fd, termios.TCSANOW, a)

    def _on_input(self) -> None:
        try:
            data = os.read(self.in_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF (or a hung-up pty): stop listening, keep the guest running
            assert self._loop is not None
            self._loop.remove_reader(self.in_fd)
            return
        assert self._feed is not None
        self._feed(data)

    def close(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(self.in_fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
            self._saved = None


class FileConsole(Console):
    """Output appended to a file (truncated at start); no input."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def write(self, data: bytes) -> None:
        _write_all(self.fd, data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class UnixSocketConsole(Console):
    """god listens on PATH and serves one client at a time (a new one replaces the old).
    Output produced while no client is connected is kept (last 64 KiB) and sent to the next
    client, so a client connecting after boot still sees the boot log."""

    BACKLOG = 64 * 1024

    def __init__(self, path: str) -> None:
        from god.unix_listener import listen_unix  # only this console needs sockets; keeps boot imports small

        self.path = path
        self.server = listen_unix(path, 1)
        self.server.setblocking(False)
        self.client: socket.socket | None = None
        self.backlog = bytearray()
        self._loop: EventLoop | None = None
        self._feed: Feed | None = None

    def write(self, data: bytes) -> None:
        c = self.client
        if c is not None:
            try:
                c.setblocking(True)  # guest output waits for a slow client, like stdout
                c.sendall(data)
                c.setblocking(False)
                return
            except OSError:
                self._drop_client()
        self.backlog += data
        del self.backlog[:-self.BACKLOG]

    def start(self, loop: EventLoop, feed: Feed) -> None:
        self._loop, self._feed = loop, feed
        loop.add_reader(self.server.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except BlockingIOError:
            return
        self._drop_client()
        conn.setblocking(False)
        if self.backlog:
            conn.setblocking(True)
            conn.sendall(bytes(self.backlog))
            conn.setblocking(False)
            self.backlog.clear()
        self.client = conn
        assert self._loop is not None
        self._loop.add_reader(conn.fileno(), self._on_input)

    def _on_input(self) -> None:
        c = self.client
        if c is None:
            return
        try:
            data = c.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            data = b"" if e.errno != errno.EAGAIN else None  # type: ignore[assignment]
            if data is None:
                return
        if not data:
            self._drop_client()
            return
        assert self._feed is not None
        self._feed(data)

    def _drop_client(self) -> None:
        c, self.client = self.client, None
        if c is not None:
            if self._loop is not None:
                self._loop.remove_reader(c.fileno())
            c.close()

    def close(self) -> None:
        self._drop_client()
        self.server.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def open_console(spec: str) -> Console:
    if spec == "stdio":
        return StdioConsole()
    if spec == "none":
        return NullConsole()
    if spec.startswith("unix:") and len(spec) > 5:
        return UnixSocketConsole(spec[5:])
    if spec.startswith("file:") and len(spec) > 5:
        return FileConsole(spec[5:])
    raise ValueError(f"bad --serial {spec!r}: use stdio, unix:PATH, file:PATH or none")
