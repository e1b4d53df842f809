"""A pexpect-like console whose 'guest' is a Python function: fast, deterministic tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pexpect

Guest = Callable[[bytes], bytes]


class FakeConsole:
    """Bytes-mode stand-in for pexpect.spawn: ``guest(sent)`` returns what the guest prints."""

    def __init__(self, guest: Guest, initial: bytes = b"") -> None:
        self.guest = guest
        self.buffer = bytearray(initial)
        self.sent: list[bytes] = []
        self.closed = False
        self.match: Any = None
        self.before: bytes = b""
        self.after: Any = b""

    def send(self, data: bytes | str) -> int:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self.sent.append(raw)
        self.buffer += self.guest(raw)
        return len(raw)

    def expect(self, patterns: Any, timeout: float | None = None) -> int:
        if not isinstance(patterns, list):
            patterns = [patterns]
        best: tuple[int, int, re.Match[bytes]] | None = None
        for idx, pat in enumerate(patterns):
            if pat is pexpect.EOF or pat is pexpect.TIMEOUT:
                continue
            rx = pat if isinstance(pat, re.Pattern) else re.compile(pat)
            m = rx.search(bytes(self.buffer))
            if m and (best is None or m.start() < best[1]):
                best = (idx, m.start(), m)
        if best is not None:
            idx, _, m = best
            self.before = bytes(self.buffer[: m.start()])
            self.after = m.group(0)
            self.match = m
            del self.buffer[: m.end()]
            return idx
        self.before = bytes(self.buffer)
        self.buffer.clear()
        wanted = pexpect.EOF if self.closed else pexpect.TIMEOUT
        if wanted in patterns:
            self.match = wanted
            return patterns.index(wanted)
        raise wanted("fake console")
