"""Carry host Unix-socket connections into the SVM lane over one serial line.

god inside the lane (``god-svm``) serves its guest's vsock on a Unix socket in the lane's own
filesystem, which the host cannot reach. This link multiplexes host connections over a second
16550 of the lane's QEMU (``-chardev socket`` on the host, ``/dev/ttyS1`` in the lane):

    test client -> RUN/vsock.sock  (host end, a companion process of the machine)
                -> RUN/lane-link.sock -> QEMU isa-serial -> lane /dev/ttyS1
                -> lane end -> god's --vsock-uds socket  (the hybrid-vsock "CONNECT n" and all
                   bytes after it pass through unchanged)

Each host connection becomes a numbered stream; frames are ``op (u8), stream (u32), length
(u16)`` big-endian, then the payload. OPEN starts a stream (the lane end connects to god's
socket; if that fails it answers CLOSE), DATA carries bytes, EOF is a half-close
(shutdown(SHUT_WR)), CLOSE ends the stream on both sides. The host sends nothing before the
lane end's HELLO: until the lane end has put the tty in raw mode the tty would echo it, and
the host drops whatever precedes HELLO.

Standard library only, one file: the lane ships it as it is and runs
``python3 lane_link.py lane --tty /dev/ttyS1 --connect PATH``; the host runs
``python -m pytest_vmm.lane_link host --link PATH --listen PATH``.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import struct
import sys
from collections.abc import Callable

HEADER = struct.Struct(">BIH")
OPEN, DATA, EOF, CLOSE, HELLO = 1, 2, 3, 4, 5
MAGIC = b"pytest-vmm lane link 1"
CHUNK = 4096
HIGH_WATER = 1 << 20  # stop reading a source while this much waits to be written to its sink


def frame(op: int, stream: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(op, stream, len(payload)) + payload


class FrameReader:
    """Splits the link's byte stream into (op, stream, payload) frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self.buf += data
        frames = []
        while len(self.buf) >= HEADER.size:
            op, stream, length = HEADER.unpack_from(self.buf)
            if op not in (OPEN, DATA, EOF, CLOSE, HELLO):
                raise ValueError(f"lane link: unknown frame op {op} (stream {stream}): the link is out of step")
            if len(self.buf) < HEADER.size + length:
                break
            frames.append((op, stream, bytes(self.buf[HEADER.size:HEADER.size + length])))
            del self.buf[:HEADER.size + length]
        return frames


class Pipe:
    """A non-blocking fd with an outgoing buffer, registered with the relay's selector."""

    def __init__(self, relay: Relay, fd: int, on_data: Callable[[bytes], None], on_eof: Callable[[], None],
                 close: Callable[[], None]) -> None:
        self.relay, self.fd, self.on_data, self.on_eof, self._close = relay, fd, on_data, on_eof, close
        self.out = bytearray()
        self.reading = True
        self.shut_after_flush = False
        self.close_after_flush = False
        self.closed = False
        os.set_blocking(fd, False)
        relay.sel.register(fd, selectors.EVENT_READ, self)

    def events(self) -> int:
        return (selectors.EVENT_READ if self.reading else 0) | (selectors.EVENT_WRITE if self.out else 0)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.out += data
        self.relay.wake(self)

    def ready(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and self.out:
            try:
                n = os.write(self.fd, self.out)
                del self.out[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
            if not self.out and self.shut_after_flush:
                self.shutdown_write()
            if not self.out and self.close_after_flush:
                self.close()
                return
        if mask & selectors.EVENT_READ and self.reading:
            try:
                data = os.read(self.fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                self.on_data(data)
            else:
                self.reading = False
                self.on_eof()
        if not self.closed:
            self.relay.wake(self)

    def shutdown_write(self) -> None:
        if self.out:
            self.shut_after_flush = True
            return
        # Closed here, never left to a finalizer: Python code run from one (a signal handler)
        # has its exceptions swallowed.
        try:
            with socket.socket(fileno=os.dup(self.fd)) as sock:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def finish(self) -> None:
        """Close once everything queued for this fd has been written."""
        self.reading = False
        if self.out:
            self.close_after_flush = True
            self.relay.wake(self)
        else:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.forget(self)
        self._close()


class Relay:
    """One selector loop: the link (a tty or a socket) and the streams' sockets."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.idle: set[Pipe] = set()

    def wake(self, pipe: Pipe) -> None:
        ev = pipe.events()
        registered = pipe not in self.idle
        if ev and registered:
            self.sel.modify(pipe.fd, ev, pipe)
        elif ev:
            self.idle.discard(pipe)
            self.sel.register(pipe.fd, ev, pipe)
        elif registered:
            self.sel.unregister(pipe.fd)
            self.idle.add(pipe)

    def forget(self, pipe: Pipe) -> None:
        if pipe in self.idle:
            self.idle.discard(pipe)
        else:
            try:
                self.sel.unregister(pipe.fd)
            except (KeyError, ValueError):
                pass

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        while not until():
            for key, mask in self.sel.select(timeout=1.0):
                handler = key.data
                if isinstance(handler, Pipe):
                    if not handler.closed:
                        handler.ready(mask)
                else:
                    handler()


class Mux:
    """The streams of one link end and the frames between them."""

    def __init__(self, relay: Relay, send: Callable[[bytes], None]) -> None:
        self.relay = relay
        self.send = send
        self.streams: dict[int, Pipe] = {}

    def attach(self, stream: int, sock: socket.socket) -> None:
        def on_data(data: bytes) -> None:
            for i in range(0, len(data), CHUNK):
                self.send(frame(DATA, stream, data[i:i + CHUNK]))

        def close() -> None:
            sock.close()
            if self.streams.pop(stream, None) is not None:  # gone on this side (a write failed)
                self.send(frame(CLOSE, stream))

        self.streams[stream] = Pipe(self.relay, sock.fileno(), on_data, lambda: self.send(frame(EOF, stream)), close)

    def end(self, stream: int, tell_peer: bool) -> None:
        pipe = self.streams.pop(stream, None)
        if pipe is not None:
            pipe.finish()  # bytes the peer sent before its EOF/CLOSE are still delivered
        if tell_peer:
            self.send(frame(CLOSE, stream))

    def received(self, op: int, stream: int, payload: bytes) -> None:
        pipe = self.streams.get(stream)
        if op == DATA and pipe is not None:
            pipe.write(payload)
        elif op == EOF and pipe is not None:
            pipe.shutdown_write()
            if not pipe.reading:
                self.end(stream, tell_peer=True)
        elif op == CLOSE and pipe is not None:
            self.end(stream, tell_peer=False)


def raw_tty(fd: int) -> None:
    """Raw mode, as tty.setraw does, plus no flow control (the termios module only: the
    lane's Python has no ``tty``)."""
    import termios

    a = termios.tcgetattr(fd)
    a[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON
              | termios.IXOFF | termios.INLCR | termios.IGNCR | termios.PARMRK)
    a[1] &= ~termios.OPOST
    a[2] = (a[2] & ~(termios.CSIZE | termios.PARENB | termios.CRTSCTS)) | termios.CS8 | termios.CLOCAL
    a[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN | termios.ISIG)
    a[6][termios.VMIN], a[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, a)
    termios.tcflush(fd, termios.TCIOFLUSH)


def link_gone() -> None:
    """The link ended (QEMU or the lane went away): so does this end."""
    raise SystemExit(0)


def staging_name(path: str) -> str:
    return f"{path}.{os.getpid()}.tmp"


def listen_unix(path: str, backlog: int) -> socket.socket:
    """A listening socket whose path appears only once it accepts (bind a temporary name, then
    rename: a client waiting for the path is never refused)."""
    staging = staging_name(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(staging)
    server.listen(backlog)
    os.rename(staging, path)
    return server


def run_lane_end(tty_path: str, connect: str) -> None:
    """In the lane: OPEN connects a stream to ``connect`` (god's vsock socket)."""
    relay = Relay()
    fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY)
    raw_tty(fd)
    reader = FrameReader()
    link: Pipe
    mux = Mux(relay, lambda data: link.write(data))

    def on_frames(data: bytes) -> None:
        for op, stream, payload in reader.feed(data):
            if op == OPEN:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(connect)
                except OSError as exc:
                    sock.close()
                    print(f"lane link: stream {stream}: cannot connect to {connect}: {exc.strerror}",
                          file=sys.stderr, flush=True)
                    mux.send(frame(CLOSE, stream))
                    continue
                mux.attach(stream, sock)
            else:
                mux.received(op, stream, payload)

    link = Pipe(relay, fd, on_frames, link_gone, link_gone)
    link.write(frame(HELLO, 0, MAGIC))
    relay.run()


def run_host_end(link_path: str, listen: str) -> None:
    """On the host: QEMU's chardev connects to ``link_path``; clients connect to ``listen``."""
    def stop(*_: object) -> None:
        """The machine's stop (SIGTERM): remove this end's socket paths and exit here. Not by
        raising SystemExit, which a finalizer the signal lands in would swallow."""
        for path in (link_path, listen):
            for name in (path, staging_name(path)):
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    clients = listen_unix(listen, 64)
    try:
        link_server = listen_unix(link_path, 1)  # the machine's ready path: QEMU may start now
        try:
            conn, _ = link_server.accept()
        finally:
            link_server.close()
            os.unlink(link_path)
        serve_host_end(conn, clients)
    finally:
        clients.close()
        os.unlink(listen)


def serve_host_end(conn: socket.socket, clients: socket.socket) -> None:
    relay = Relay()
    reader = FrameReader()
    greeting = bytearray()
    greeted = False
    pending: list[bytes] = []  # frames for the lane end before its HELLO
    next_stream = 1

    def send(data: bytes) -> None:
        if greeted:
            link.write(data)
        else:
            pending.append(data)

    mux = Mux(relay, send)

    def on_link_data(data: bytes) -> None:
        nonlocal greeted
        if not greeted:
            greeting.extend(data)
            at = greeting.find(MAGIC)
            if at < 0:
                del greeting[:-len(MAGIC)]  # the tty's echo or noise before the lane end began
                return
            data = bytes(greeting[at + len(MAGIC):])
            greeted = True
            for data_out in pending:
                link.write(data_out)
            pending.clear()
        for op, stream, payload in reader.feed(data):
            mux.received(op, stream, payload)

    def accept() -> None:
        nonlocal next_stream
        try:
            sock, _ = clients.accept()
        except BlockingIOError:
            return
        stream, next_stream = next_stream, next_stream + 1
        send(frame(OPEN, stream))
        mux.attach(stream, sock)

    link = Pipe(relay, conn.fileno(), on_link_data, link_gone, link_gone)
    clients.setblocking(False)
    relay.sel.register(clients.fileno(), selectors.EVENT_READ, accept)
    relay.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="end", required=True)
    lane = sub.add_parser("lane", help="the lane end: a tty to god's Unix socket")
    lane.add_argument("--tty", required=True)
    lane.add_argument("--connect", required=True)
    host = sub.add_parser("host", help="the host end: clients' Unix socket to QEMU's chardev")
    host.add_argument("--link", required=True)
    host.add_argument("--listen", required=True)
    args = parser.parse_args(argv)
    if args.end == "lane":
        run_lane_end(args.tty, args.connect)
    else:
        run_host_end(args.link, args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
