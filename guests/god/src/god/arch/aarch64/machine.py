"""The arm64 machine: QEMU virt's layout (layout.py) with god's devices.

  RAM at 0x40000000, the in-kernel vGICv3 (GICD 0x08000000, GICR 0x080A0000), the
  architected timer (in KVM), a PL011 at 0x09000000 on SPI 1 (god.devices.pl011),
  a PL031 RTC at 0x09010000 on SPI 2 (god.devices.pl031, the host's clock),
  virtio-mmio transport n at 0x0a000000 + 0x200 n on SPI 16 + n, PSCI in KVM. Slots without
  a device are placeholder transports (DeviceID 0), all 32 in the device tree, as on QEMU virt.

An access to an address where nothing is mapped stops the machine with a `god:` line
(STATUS_GUEST_CRASH): on arm64 god knows the whole map, so such an access is a guest bug.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from god.arch.aarch64 import boot as B
from god.arch.aarch64 import devicetree as DT
from god.arch.aarch64 import layout as L
from god.arch.aarch64.gic import VgicV3
from god.arch.aarch64.runner import Arm64VcpuRunner
from god.arch.aarch64.vcpu import init_vcpus, set_boot_regs
from god.boot.acpi import MmioDevice
from god.boot.common import BootInputs
from god.boot.errors import LoaderError
from god.devices import pl011, pl031
from god.devices.bus import Bus, Device, stderr_trace
from god.devices.console import Console, NullConsole
from god.devices.eventloop import EventLoop
from god.devices.irq import IrqLine
from god.kvm import Kvm, KvmError
from god.machine_base import MachineBase
from god.memory import GuestMemory
from god.vcpu.runner import STATUS_GUEST_CRASH, VcpuRunner, VmExit
from god.virtio.mmio import VirtioPlaceholder


@dataclass
class MachineConfig:
    mem_mib: int = 128
    cpus: int = 1
    console: Console = field(default_factory=NullConsole)
    trace_unassigned: bool = False


class _Unmapped:
    """What an unmapped guest-physical address is on arm64: a fault that stops the VM."""

    __slots__ = ("addr", "on_fault")

    def __init__(self, addr: int, on_fault: Callable[[str], None]) -> None:
        self.addr, self.on_fault = addr, on_fault

    def _fault(self, what: str) -> None:
        who = threading.current_thread().name.replace("god-vcpu", "vCPU ")
        self.on_fault(f"{who}: guest {what} unmapped address {self.addr:#x} "
                      "(nothing of god's virt layout is there)")

    def read(self, offset: int, size: int) -> int:
        self._fault(f"read of {size} bytes at")
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self._fault(f"write of {size} bytes ({value:#x}) to")


class FaultingBus(Bus):
    """A Bus whose unassigned addresses fault instead of reading all ones."""

    def __init__(self, name: str, limit: int, on_fault: Callable[[str], None]) -> None:
        super().__init__(name, limit)
        self.on_fault = on_fault

    def lookup(self, addr: int) -> tuple[int, Device]:
        if self.find(addr) is None:
            return addr, _Unmapped(addr, self.on_fault)  # not cached: the VM stops anyway
        return super().lookup(addr)


class Machine(MachineBase):
    def __init__(self, config: MachineConfig) -> None:
        super().__init__()
        self.config = config
        if config.mem_mib < 16:
            raise ValueError("--mem must be at least 16 MiB on arm64 (kernel, DTB and initrd "
                             "go in 2 MiB-aligned regions)")
        self.mem_bytes = config.mem_mib << 20
        if self.mem_bytes > L.RAM_MAX:
            raise ValueError(f"--mem {config.mem_mib}: QEMU virt's RAM ends at 255 GiB")
        self._closed = False
        self.kvm = Kvm()
        self.kvm.require()
        limit = min(self.kvm.max_vcpus(), L.MAX_CPUS)
        if not 1 <= config.cpus <= limit:
            raise KvmError(f"--cpus {config.cpus}: this KVM and the virt layout allow 1..{limit}")
        self.vm = self.kvm.create_vm()
        self.gic: VgicV3 | None = None
        self.runners: list[VcpuRunner] = []
        self.virtio: list = []
        self.virtio_slots: list[MmioDevice] = []  # the attached devices (base, size, SPI)
        self.mem = GuestMemory([(L.RAM_BASE, self.mem_bytes)])
        for slot, r in enumerate(self.mem.regions):
            self.vm.set_user_memory_region(slot, r.gpa, r.size, r.host_addr)
        self.pio = Bus("port I/O", 1)  # arm64 has none; the shared runner wants a bus
        self.mmio = FaultingBus("MMIO", 1 << 48, self._on_fault)
        if config.trace_unassigned:
            self.mmio.trace = stderr_trace
        vcpus = [self.vm.create_vcpu(i) for i in range(config.cpus)]
        init_vcpus(self.vm, vcpus)
        for v in vcpus:
            r = Arm64VcpuRunner(v, self.pio, self.mmio, self.mem, self.request_stop,
                                self.kvm.flavour)
            r.kick = lambda r=r: self._kick_one(r)
            self.runners.append(r)
        # arm-vgic-v3.rst: the vGIC is initialised after every vCPU exists
        self.gic = self.irqchip = VgicV3(self.vm, config.cpus)
        self.loop = EventLoop()
        self.console = config.console
        self.uart = pl011.Pl011(self.irq_line(L.UART_SPI), self.console.write)
        self.mmio.register(L.UART.base, L.UART.size, self.uart)
        self.rtc = pl031.Pl031(self.irq_line(L.RTC_SPI), self.loop)
        self.mmio.register(L.RTC.base, L.RTC.size, self.rtc)

    def _on_fault(self, message: str) -> None:
        self.request_stop(VmExit(STATUS_GUEST_CRASH, message, "unmapped-mmio"))

    # --- wiring for devices (god.virtio.attach) -------------------------------------------
    def irq_line(self, spi: int) -> IrqLine:
        assert self.gic is not None
        return self.gic.line(spi)

    def place_virtio(self, n: int, size: int) -> tuple[int, int]:
        w = L.virtio_window(n)
        if size > w.size:
            raise ValueError(f"virtio-mmio window of {size:#x} bytes > virt's {w.size:#x}")
        return w.base, L.VIRTIO_SPI_BASE + n

    # --- boot -----------------------------------------------------------------------------
    def fill_virtio_slots(self) -> None:
        """Every slot without a device becomes a placeholder transport, as on QEMU virt."""
        for n in range(len(self.virtio), L.VIRTIO_MMIO_COUNT):
            w = L.virtio_window(n)
            if self.mmio.find(w.base) is None:
                self.mmio.register(w.base, w.size, VirtioPlaceholder())

    def device_tree(self, bootargs: str, initrd: tuple[int, int] | None) -> bytes:
        return DT.dtb(DT.DtConfig(self.mem_bytes, self.config.cpus, bootargs, initrd,
                                  L.virtio_transports()))

    def load(self, inputs: BootInputs) -> str:
        """Kernel, initrd and DTB into RAM, the boot vCPU at the entry; returns the format."""
        if len(inputs.modules) > 1:
            raise LoaderError("arm64 boots with one initrd (--initrd FILE)")
        initrd = inputs.modules[0].data if inputs.modules else None
        p = B.plan(inputs.kernel, self.mem_bytes, len(initrd) if initrd is not None else None)
        self.fill_virtio_slots()  # devices are attached before load
        B.load(self.mem, p, initrd, self.device_tree(inputs.cmdline, p.initrd_range))
        set_boot_regs(self.runners[0].vcpu, p.entry, p.dtb_addr)
        return p.fmt

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self.virtio:
            t.close()
        self.rtc.close()
        stuck = [r for r in self.runners if r.thread and r.thread.is_alive()]
        if not stuck:
            for r in self.runners:
                r.vcpu.close()
            if self.gic is not None:
                self.gic.close()
            self.vm.close()
            self.mem.close()
        self.kvm.close()
        self._close_wake_pipe()
