"""What a virtio device model implements, independent of the transport that serves it.

Two transports serve the same device objects: god's virtio-mmio (virtio/mmio.py) and the
vhost-user backend for QEMU (vhost_user/). A transport negotiates features, builds the
Virtqueues and hands the device an ActiveQueues: memory, queues, one eventfd per queue that
becomes readable when the driver notifies it, a callback to interrupt the driver, and a
callback to declare the device broken (DEVICE_NEEDS_RESET). Each device runs its own worker
thread, so a vCPU thread never does device work: a notification is one eventfd write (or
no exit to userspace at all, with KVM ioeventfd).
"""

from __future__ import annotations

import os
import selectors
import threading
from collections.abc import Callable

from god.devices.diag import say
from god.virtio.queue import Memory, Virtqueue

VIRTIO_F_INDIRECT_DESC = 1 << 28
VIRTIO_F_VERSION_1 = 1 << 32

DEVICE_ID_BLOCK = 2
DEVICE_ID_VSOCK = 19


class ActiveQueues:
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    def __init__(self, mem: Memory, queues: list[Virtqueue | None], kicks: list[int | None],
                 interrupt: Callable[[int], None], fail: Callable[[str], None],
                 features: int = 0) -> None:
        self.mem = mem
        self.queues = queues          # None: the transport keeps that queue (vhost-user)
        self.kicks = kicks            # eventfd per queue, readable after a notification
        self.interrupt = interrupt    # interrupt(queue index): used buffers are ready
        self.fail = fail              # the guest broke the protocol: NEEDS_RESET
        self.features = features      # what the driver accepted


class VirtioDevice:
    """Base class: subclasses set device_id/queue_sizes and implement the hooks."""

    device_id = 0
    name = "virtio"
    queue_sizes: tuple[int, ...] = ()

    def device_features(self) -> int:
        return VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC

    def config(self) -> bytes:
        """The device-specific configuration space as the driver reads it."""
        return b""

    def write_config(self, offset: int, data: bytes) -> None:
        """Drivers may write some config fields; by default they are read-only."""

    def activate(self, active: ActiveQueues) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Stop all work and forget the queues (driver reset or transport teardown)."""

    def close(self) -> None:
        self.reset()


class Worker:
    """A thread waiting on eventfds and sockets with a selector; stop() wakes it."""

    def __init__(self, name: str, step: Callable[[list[tuple[selectors.SelectorKey, int]]], None],
                 on_error: Callable[[str], None],
                 timeout: Callable[[], float | None] = lambda: None) -> None:
        self.sel = selectors.DefaultSelector()
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.sel.register(self._stop_fd, selectors.EVENT_READ, None)
        self._step = step
        self._on_error = on_error
        self._timeout = timeout
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self._stopping:
            events = self.sel.select(self._timeout())
            if self._stopping:
                break
            try:
                self._step([(k, m) for k, m in events if k.fd != self._stop_fd])
            except Exception as e:  # noqa: BLE001 -- a device bug must not kill the thread silently
                import traceback  # only on this path: a device bug
                say(f"{self.thread.name}: device error\n{traceback.format_exc().rstrip()}")
                self._on_error(f"internal device error: {type(e).__name__}: {e}")
                self._stopping = True

    def stop(self) -> None:
        self._stopping = True
        try:
            os.eventfd_write(self._stop_fd, 1)
        except OSError:
            pass
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        self.sel.close()
        os.close(self._stop_fd)


def drain_eventfd(fd: int) -> None:
    try:
        os.eventfd_read(fd)
    except (BlockingIOError, OSError):
        pass
