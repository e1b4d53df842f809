"""One host thread that waits on file descriptors and timers (poll), never spinning.

Devices use it for host input (the console's stdin or socket) and for timed events (the
16550's character-timeout interrupt). Other threads hand it work with call_soon(), which
writes one byte to a wakeup pipe. It is deliberately tiny (asyncio would add ~50 ms of
import time to every boot).
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import threading
import time
from collections.abc import Callable


class Timer:
    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """What devices need from a loop: run fn after a delay. Tests implement it by hand."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:  # pragma: no cover
        raise NotImplementedError


class EventLoop(Scheduler):
    def __init__(self) -> None:
        self._poll = select.poll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._soon: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, select.POLLIN)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- callable from any thread -------------------------------------------------------
    def call_soon(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._soon.append(fn)
        self._wake()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        t = Timer(time.monotonic() + delay, fn)
        with self._lock:
            heapq.heappush(self._timers, (t.when, next(self._seq), t))
        self._wake()
        return t

    def add_reader(self, fd: int, fn: Callable[[], None]) -> None:
        self.call_soon(lambda: self._add(fd, fn))

    def remove_reader(self, fd: int) -> None:
        self.call_soon(lambda: self._remove(fd))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="god-io", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # --- loop thread ----------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a full pipe already guarantees a wakeup; a closed one means stopped

    def _add(self, fd: int, fn: Callable[[], None]) -> None:
        self._readers[fd] = fn
        self._poll.register(fd, select.POLLIN)

    def _remove(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:
                soon, self._soon = self._soon, []
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic()) * 1000
            for fn in soon:
                fn()
            if soon:
                continue  # a callback may have added timers or readers
            events = self._poll.poll(timeout)
            for fd, ev in events:
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
                    continue
                fn = self._readers.get(fd)
                if fn is not None:
                    fn()
            now = time.monotonic()
            due: list[Timer] = []
            with self._lock:
                while self._timers and self._timers[0][0] <= now:
                    due.append(heapq.heappop(self._timers)[2])
            for t in due:
                if not t.cancelled:
                    t.fn()
