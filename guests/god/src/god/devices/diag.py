"""What a device says when the guest programs it in a way god does not model or the part
reserves: never silence, never a crash.

- `unmodelled(key, text)`: a one-line `god: ...` warning on stderr, once per key, always
  (something the real part does that god does not).
- `reserved(key, text)`: a reserved value or register; the device does what the datasheet
  defines (or ignores it) and says so only with `--trace-unassigned`, once per key.

Devices get a Diag from the machine; tests use a Diag with `sink` set to a list's append.
`say(text)` is the plain `god: ...` line for what the virtio layer reports (a driver breaking
the protocol, a host socket failing); not the logging module, whose import costs ~3 ms of
god's start-up.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def say(text: str) -> None:
    _stderr(f"god: {text}")


class Diag:
    def __init__(self, trace: bool = False, sink: Callable[[str], None] = _stderr) -> None:
        self.trace = trace
        self.sink = sink
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _once(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def unmodelled(self, key: str, text: str) -> None:
        if self._once(key):
            self.sink(f"god: {text} (not modelled by god)")

    def reserved(self, key: str, text: str) -> None:
        if self.trace and self._once(key):
            self.sink(f"god: {text}")


QUIET = Diag(sink=lambda line: None)
