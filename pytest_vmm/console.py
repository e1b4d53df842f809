"""The guest's serial console: a pty drained continuously into a log, read with pexpect.

A background thread always drains the pty, so a guest that prints while no test is
reading never blocks on a full pty buffer. Tests and the agent read through a pexpect
``SpawnBase`` subclass whose reads come from that thread's buffer: the whole pexpect
expect API (regex/exact lists, timeouts, ``before``/``match``) works unchanged.
"""

from __future__ import annotations

import errno
import os
import re
import select
import threading
import time
from pathlib import Path
from typing import BinaryIO

from pexpect import EOF, TIMEOUT
from pexpect.spawnbase import SpawnBase

TAIL_LINES = 40
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ConsolePump:
    """Drains a pty master fd into a log file and an in-memory buffer."""

    def __init__(self, master_fd: int, log_path: Path) -> None:
        self.master_fd = master_fd
        self.log_path = log_path
        self._log: BinaryIO = log_path.open("wb")
        self._pending = bytearray()  # read by the pump, not yet consumed by pexpect
        self._cond = threading.Condition()
        self._eof = False
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"console:{log_path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.master_fd, self._stop_r], [], [])
            if self._stop_r in ready and self.master_fd not in ready:
                break
            try:
                chunk = os.read(self.master_fd, 65536)
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):  # every writer closed the slave side
                    chunk = b""
                else:
                    raise
            if not chunk:
                break
            self._log.write(chunk)
            self._log.flush()
            with self._cond:
                self._pending += chunk
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def read(self, size: int, timeout: float | None) -> bytes:
        """Up to ``size`` bytes; b"" at EOF; raises TIMEOUT when nothing came in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._pending and not self._eof:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TIMEOUT("Timeout exceeded.")
                self._cond.wait(remaining)
            data = bytes(self._pending[:size])
            del self._pending[:size]
            return data

    @property
    def at_eof(self) -> bool:
        with self._cond:
            return self._eof and not self._pending

    def close(self, timeout: float = 2.0) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self._log.close()


class Console(SpawnBase):
    """pexpect-compatible console (bytes mode) over a ConsolePump."""

    def __init__(self, pump: ConsolePump, write_fd: int, timeout: float = 30.0) -> None:
        super().__init__(timeout=timeout, maxread=65536, searchwindowsize=None, logfile=None, encoding=None)
        self.pump = pump
        self.child_fd = write_fd
        self.closed = False

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> bytes:
        if timeout == -1:
            timeout = self.timeout
        data = self.pump.read(size, timeout)
        if not data:
            self.flag_eof = True
            raise EOF("End of console (the hypervisor closed it)")
        self._log(data, "read")
        return data

    def send(self, s: bytes | str) -> int:
        data = s.encode() if isinstance(s, str) else s
        self._log(data, "send")
        written = 0
        while written < len(data):
            written += os.write(self.child_fd, data[written:])
        return written

    def sendline(self, s: bytes | str = b"") -> int:
        data = s.encode() if isinstance(s, str) else s
        return self.send(data + b"\n")

    def isalive(self) -> bool:
        return not self.pump.at_eof


def printable(data: bytes) -> str:
    """Guest bytes as text a terminal, a JUnit file and a human can all hold."""
    text = data.decode("utf-8", errors="backslashreplace").replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = 256 * 1024) -> str:
    """The last ``lines`` lines of a console log, made printable."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(printable(data).splitlines()[-lines:])
