"""virtio-mmio transport, version 2 ("modern") registers (virtio 1.2 section 4.2.2).

One VirtioMmio per device, registered on god's MMIO bus at a 0x200-byte slot. The vCPU
thread that takes the exit only touches registers; all queue work happens on the device's
worker thread, woken by an eventfd per queue. With KVM, each eventfd is also an ioeventfd
on QueueNotify (datamatch = queue index), so a notification costs no exit to Python.

The interrupt line is level-triggered: it is up while InterruptStatus is non-zero and drops
when the driver acknowledges every bit, which is how Linux's virtio_mmio and QEMU expect it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from god.devices.diag import say
from god.devices.irq import IrqLine
from god.memory import GuestMemoryError
from god.virtio.device import VIRTIO_F_VERSION_1, ActiveQueues, VirtioDevice
from god.virtio.queue import Memory, QueueError, Virtqueue

MMIO_SLOT_SIZE = 0x200
MAGIC = 0x74726976          # "virt"
VERSION = 2
VENDOR_ID = 0x00646F67      # "god\0"

# Status bits (2.1)
ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK = 1, 2, 4, 8
DEVICE_NEEDS_RESET, FAILED = 64, 128
# InterruptStatus bits
INT_VRING, INT_CONFIG = 1, 2

R_MAGIC, R_VERSION, R_DEVICE_ID, R_VENDOR_ID = 0x000, 0x004, 0x008, 0x00C
R_DEVICE_FEATURES, R_DEVICE_FEATURES_SEL = 0x010, 0x014
R_DRIVER_FEATURES, R_DRIVER_FEATURES_SEL = 0x020, 0x024
R_QUEUE_SEL, R_QUEUE_NUM_MAX, R_QUEUE_NUM, R_QUEUE_READY = 0x030, 0x034, 0x038, 0x044
R_QUEUE_NOTIFY = 0x050
R_INTERRUPT_STATUS, R_INTERRUPT_ACK = 0x060, 0x064
R_STATUS = 0x070
R_QUEUE_DESC_LOW, R_QUEUE_DESC_HIGH = 0x080, 0x084
R_QUEUE_DRIVER_LOW, R_QUEUE_DRIVER_HIGH = 0x090, 0x094
R_QUEUE_DEVICE_LOW, R_QUEUE_DEVICE_HIGH = 0x0A0, 0x0A4
R_SHM_SEL, R_SHM_LEN_LOW, R_SHM_LEN_HIGH = 0x0AC, 0x0B0, 0x0B4
R_QUEUE_RESET = 0x0C0
R_CONFIG_GENERATION = 0x0FC
R_CONFIG = 0x100


class _QueueRegs:
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    def __init__(self) -> None:
        self.num = 0
        self.ready = False
        self.desc = 0
        self.driver = 0
        self.device = 0


def _set_half(value: int, half: int, high: bool) -> int:
    if high:
        return (value & 0xFFFFFFFF) | (half << 32)
    return (value & ~0xFFFFFFFF) | half


class VirtioPlaceholder:
    """An empty virtio-mmio transport: a fixed slot of a platform's map with no device behind it.

    virtio 1.2 section 4.2.2, DeviceID: "0x0 ... indicates a system memory map with placeholder
    devices at static, well known addresses"; the driver ignores it (4.2.2.2). QEMU's virt
    machine keeps all 32 of its transports so, answering MagicValue, Version and VendorID, every
    other register 0, writes ignored; god's arm64 layout follows it so the same guest probes
    the same window on both.
    """

    def read(self, offset: int, size: int) -> int:
        if size != 4:
            return 0
        return {R_MAGIC: MAGIC, R_VERSION: VERSION, R_VENDOR_ID: VENDOR_ID}.get(offset, 0)

    def write(self, offset: int, size: int, value: int) -> None:
        """No device: nothing to configure (QEMU's virtio_mmio_write without a backend)."""


class VirtioMmio:
    """The register file of one virtio-mmio device. Bus contract: read/write(offset, size)."""

    def __init__(self, device: VirtioDevice, mem: Memory, irq: IrqLine,
                 register_ioeventfd: Callable[[int, int], bool] | None = None) -> None:
        """register_ioeventfd(fd, queue_index) -> True if KVM now signals fd on notify."""
        self.device = device
        self.mem = mem
        self.irq = irq
        self._lock = threading.Lock()        # InterruptStatus is shared with the worker
        self.interrupt_status = 0
        self.config_generation = 0
        n = len(device.queue_sizes)
        self.kicks = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(n)]
        self.kernel_notify = [bool(register_ioeventfd and register_ioeventfd(fd, i))
                              for i, fd in enumerate(self.kicks)]
        self.needs_reset_reason = ""
        self._reset_state()

    def _reset_state(self) -> None:
        self.status = 0
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.driver_features = 0
        self.queue_sel = 0
        self.queues = [_QueueRegs() for _ in self.device.queue_sizes]
        self.active = False

    # --- bus interface (vCPU threads) ------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset >= R_CONFIG:
            cfg = self.device.config()
            off = offset - R_CONFIG
            if off + size > len(cfg):
                return 0
            return int.from_bytes(cfg[off:off + size], "little")
        if size != 4:
            say(f"virtio-mmio {self.device.name}: {size}-byte read of register {offset:#x} ignored")
            return 0
        q = self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None
        if offset == R_MAGIC:
            return MAGIC
        if offset == R_VERSION:
            return VERSION
        if offset == R_DEVICE_ID:
            return self.device.device_id
        if offset == R_VENDOR_ID:
            return VENDOR_ID
        if offset == R_DEVICE_FEATURES:
            if self.device_features_sel > 1:
                return 0
            return (self.device.device_features() >> (32 * self.device_features_sel)) & 0xFFFFFFFF
        if offset == R_QUEUE_NUM_MAX:
            return self.device.queue_sizes[self.queue_sel] if q else 0
        if offset == R_QUEUE_READY:
            return int(q.ready) if q else 0
        if offset == R_INTERRUPT_STATUS:
            return self.interrupt_status
        if offset == R_STATUS:
            return self.status
        if offset in (R_SHM_LEN_LOW, R_SHM_LEN_HIGH):
            return 0xFFFFFFFF  # no shared memory regions
        if offset == R_CONFIG_GENERATION:
            return self.config_generation
        if q is not None:
            regs = {R_QUEUE_NUM: q.num, R_QUEUE_DESC_LOW: q.desc, R_QUEUE_DESC_HIGH: q.desc >> 32,
                    R_QUEUE_DRIVER_LOW: q.driver, R_QUEUE_DRIVER_HIGH: q.driver >> 32,
                    R_QUEUE_DEVICE_LOW: q.device, R_QUEUE_DEVICE_HIGH: q.device >> 32}
            if offset in regs:
                return regs[offset] & 0xFFFFFFFF
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == R_QUEUE_NOTIFY and size == 4:
            # Only reached without ioeventfd (tests, or KVM refused it): same effect.
            if value < len(self.kicks) and self.active:
                os.eventfd_write(self.kicks[value], 1)
            return
        if offset >= R_CONFIG:
            if self.status & DRIVER:
                self.device.write_config(offset - R_CONFIG,
                                         (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))
            return
        if size != 4:
            say(f"virtio-mmio {self.device.name}: {size}-byte write of register {offset:#x} ignored")
            return
        q = self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None
        if offset == R_DEVICE_FEATURES_SEL:
            self.device_features_sel = value
        elif offset == R_DRIVER_FEATURES_SEL:
            self.driver_features_sel = value
        elif offset == R_DRIVER_FEATURES:
            # Features may only change before FEATURES_OK (3.1.1).
            if self.driver_features_sel <= 1 and not self.status & FEATURES_OK:
                shift = 32 * self.driver_features_sel
                self.driver_features = ((self.driver_features & ~(0xFFFFFFFF << shift))
                                        | (value << shift))
        elif offset == R_QUEUE_SEL:
            self.queue_sel = value
        elif offset == R_INTERRUPT_ACK:
            with self._lock:
                self.interrupt_status &= ~value
                if not self.interrupt_status:
                    self.irq.set_level(False)
        elif offset == R_STATUS:
            self._write_status(value)
        elif q is not None and not q.ready or offset == R_QUEUE_READY:
            self._write_queue_reg(q, offset, value)
        elif q is not None:
            say(f"virtio-mmio {self.device.name}: queue {self.queue_sel} register {offset:#x} "
                "written while ready; ignored")

    def _write_queue_reg(self, q: _QueueRegs | None, offset: int, value: int) -> None:
        if q is None:
            return
        if offset == R_QUEUE_NUM:
            q.num = value
        elif offset == R_QUEUE_READY:
            q.ready = bool(value & 1)
        elif offset in (R_QUEUE_DESC_LOW, R_QUEUE_DESC_HIGH):
            q.desc = _set_half(q.desc, value, offset == R_QUEUE_DESC_HIGH)
        elif offset in (R_QUEUE_DRIVER_LOW, R_QUEUE_DRIVER_HIGH):
            q.driver = _set_half(q.driver, value, offset == R_QUEUE_DRIVER_HIGH)
        elif offset in (R_QUEUE_DEVICE_LOW, R_QUEUE_DEVICE_HIGH):
            q.device = _set_half(q.device, value, offset == R_QUEUE_DEVICE_HIGH)

    def _write_status(self, value: int) -> None:
        if value == 0:
            self.reset()
            return
        old = self.status
        new = value & 0xFF
        if new & FEATURES_OK and not old & FEATURES_OK:
            offered = self.device.device_features()
            extra = self.driver_features & ~offered
            if extra or not self.driver_features & VIRTIO_F_VERSION_1:
                why = (f"driver accepted unoffered features {extra:#x}" if extra
                       else "driver did not accept VIRTIO_F_VERSION_1 (legacy is not offered)")
                say(f"virtio-mmio {self.device.name}: refusing FEATURES_OK: {why}")
                new &= ~FEATURES_OK  # the driver sees it clear and gives up (3.1.1)
        # Keep NEEDS_RESET sticky until a reset.
        self.status = new | (old & DEVICE_NEEDS_RESET)
        if new & DRIVER_OK and not old & DRIVER_OK and new & FEATURES_OK:
            self._activate()

    def _activate(self) -> None:
        queues: list[Virtqueue | None] = []
        indirect = bool(self.driver_features & (1 << 28))
        try:
            for i, q in enumerate(self.queues):
                if not q.ready:
                    queues.append(None)
                    continue
                if q.num > self.device.queue_sizes[i]:
                    raise QueueError(f"queue {i} size {q.num} exceeds QueueNumMax "
                                     f"{self.device.queue_sizes[i]}")
                queues.append(Virtqueue(self.mem, q.num, q.desc, q.driver, q.device,
                                        indirect=indirect))
        except (QueueError, GuestMemoryError) as e:
            self.set_needs_reset(str(e))
            return
        self.active = True
        self.device.activate(ActiveQueues(self.mem, queues, list(self.kicks), self.interrupt,
                                          self.set_needs_reset, self.driver_features))

    def reset(self) -> None:
        """Driver wrote 0 to Status: stop the device and return to the initial state."""
        self.device.reset()
        self._reset_state()
        self.needs_reset_reason = ""
        for fd in self.kicks:
            try:
                os.eventfd_read(fd)
            except (BlockingIOError, OSError):
                pass
        with self._lock:
            self.interrupt_status = 0
            self.irq.set_level(False)

    # --- device side (worker threads) --------------------------------------------------------
    def interrupt(self, queue_index: int = 0) -> None:
        with self._lock:
            self.interrupt_status |= INT_VRING
            self.irq.set_level(True)

    def set_needs_reset(self, reason: str) -> None:
        """The guest broke the protocol: log why, stop using the queues, tell the driver."""
        say(f"virtio-mmio {self.device.name}: DEVICE_NEEDS_RESET: {reason}")
        self.needs_reset_reason = reason
        self.active = False
        self.status |= DEVICE_NEEDS_RESET
        with self._lock:
            self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
            self.interrupt_status |= INT_CONFIG
            self.irq.set_level(True)

    def close(self) -> None:
        self.device.close()
        for fd in self.kicks:
            try:
                os.close(fd)
            except OSError:
                pass
        self.kicks = []
