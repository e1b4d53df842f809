"""What every god machine shares, whatever its architecture: starting the vCPU threads,
waiting (no polling) until the guest stops, a vCPU crashes or request_stop() is called, and
stopping every vCPU with the first reason recorded.

A subclass (god.machine.Machine for x86_64, god.arch.aarch64.machine.Machine) sets, before
run(): runners (VcpuRunner per vCPU), loop (EventLoop), console, uart (whose feed() takes
console input), irqchip (start()/stop()), and calls MachineBase.__init__ first.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from typing import Protocol, Self

from god.devices.console import Console
from god.devices.eventloop import EventLoop
from god.vcpu.runner import STATUS_OK, VcpuRunner, VmExit


class _Feedable(Protocol):
    def feed(self, data: bytes) -> None: ...


class _Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...

KICK_SIGNAL = signal.SIGUSR1


def _noop(signum: int, frame: object) -> None:
    pass


class MachineBase:
    runners: list[VcpuRunner]
    loop: EventLoop
    console: Console
    uart: _Feedable
    irqchip: _Startable

    def __init__(self) -> None:
        self.result: VmExit | None = None
        self._result_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._kick_ok = False
        self.runners = []

    def stats(self) -> dict[str, int]:
        """Device counters for `god run --stats` (those god's interrupt controller keeps)."""
        return self.irqchip.stats()

    def request_stop(self, result: VmExit) -> None:
        """Record why we stop (the first reason wins) and interrupt every vCPU. Any thread;
        also safe from a signal handler (only flag writes, os.write and pthread_kill)."""
        with self._result_lock:
            if self.result is None:
                self.result = result
        self._kick_all()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _kick_all(self) -> None:
        for r in self.runners:
            r.request_stop()
            self._kick_one(r)

    def _kick_one(self, r: VcpuRunner) -> None:
        """Make r's KVM_RUN return (EINTR) if it is inside it; any thread but r's own."""
        t = r.thread
        if self._kick_ok and t is not None and t.ident is not None \
                and t.ident != threading.get_ident() and t.is_alive():
            try:
                signal.pthread_kill(t.ident, KICK_SIGNAL)
            except (ProcessLookupError, OSError):
                pass

    def run(self) -> VmExit:
        """Run until the guest stops; returns why. Blocks the calling thread in select()."""
        old = None
        if threading.current_thread() is threading.main_thread():
            # A handler (not SIG_DFL) so pthread_kill interrupts KVM_RUN with EINTR instead
            # of killing the process.
            old = signal.signal(KICK_SIGNAL, _noop)
            self._kick_ok = True
        try:
            self.loop.start()
            self.irqchip.start()
            self.console.start(self.loop, self.uart.feed)
            for r in self.runners:
                r.start()
            while self.result is None:
                alive = [r for r in self.runners if r.thread and r.thread.is_alive()]
                if not alive:
                    break
                try:
                    select.select([self._wake_r], [], [], None if self._kick_ok else 0.5)
                except InterruptedError:
                    pass
            if self.result is None:
                self.result = VmExit(STATUS_OK, "all vCPUs stopped", "stopped")
            self._kick_all()
            for _ in range(50):
                alive = [r for r in self.runners if r.thread and r.thread.is_alive()]
                if not alive:
                    break
                alive[0].thread.join(0.1)  # type: ignore[union-attr,unused-ignore]
                self._kick_all()
            return self.result
        finally:
            self.irqchip.stop()
            self.loop.stop()
            self.console.close()
            if old is not None:
                signal.signal(KICK_SIGNAL, old)
            self._kick_ok = False

    @property
    def exits(self) -> int:
        return sum(r.exits for r in self.runners)

    def close(self) -> None:  # pragma: no cover - every machine has its own
        raise NotImplementedError

    def _close_wake_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
