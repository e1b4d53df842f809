"""One virtual machine: KVM VM + guest RAM + buses + devices + vCPU threads.

Lifecycle: Machine(config) builds everything, load() puts a kernel in RAM and sets the BSP's
registers, run() starts the vCPU threads and blocks (no polling) until the guest exits, a
vCPU crashes or request_stop() is called (e.g. by a SIGTERM handler); close() frees it all.

No @dataclass here nor anywhere on the `god run` path (boot/, kvm/, memory/, vcpu/): the
dataclasses module imports inspect, ast and tokenize, ~8 ms of a ~50 ms boot. Plain classes
with __slots__ and an explicit __init__ instead (tests/test_startup_imports.py guards it).
"""

from __future__ import annotations

from god.boot import BootInputs, EntryState, acpi, load_kernel, mptable
from god.boot import layout as L
from god.boot.cpu import apply as apply_entry
from god.devices import fwcfg, pci, pmtimer
from god.devices.bus import Bus, Device, stderr_trace
from god.devices.cmos import CMOS_BASE, RTC_IRQ, Cmos
from god.devices.console import Console, NullConsole
from god.devices.diag import Diag
from god.devices.eventloop import EventLoop
from god.devices.exitport import EXIT_PORT, ExitPort
from god.devices.i8042 import AUX_IRQ, DATA_PORT, I8042, KBD_IRQ, STATUS_PORT
from god.devices.irq import IrqLine
from god.devices.serial import COM1_BASE, COM1_IRQ, Uart16550
from god.irqchip import IRQCHIPS, KernelIrqchip, SplitIrqchip
from god.kvm import Kvm, KvmError
from god.machine_base import KICK_SIGNAL, MachineBase  # noqa: F401 (KICK_SIGNAL: re-export)
from god.memory import GuestMemory
from god.vcpu.runner import STATUS_GUEST_RESET, STATUS_OK, VcpuRunner, VmExit

# PVM's ring-0 emulator cannot run cmpxchg16b or clac/stac (PLATFORM.md). Kernels pick
# those from CPUID (Linux: CX16 for SLUB's cmpxchg_double, SMAP for clac/stac), so god hides
# the two bits under PVM. SSE/XSAVE stay visible: ring-3 code may use them.
CPUID1_ECX_CX16 = 1 << 13
CPUID1_EDX_HTT = 1 << 28  # "EBX[23:16] is valid": more than one logical processor
CPUID7_EBX_SMAP = 1 << 20
TSS_ADDR = 0xFFFBD000  # below the 4 GiB boundary, outside RAM and the MMIO window


class MachineConfig:
    __slots__ = ("acpi", "console", "cpus", "irqchip", "mem_mib", "trace_unassigned")

    def __init__(self, mem_mib: int = 128, cpus: int = 1, console: Console | None = None,
                 trace_unassigned: bool = False, acpi: bool = True,
                 irqchip: str = "split") -> None:
        self.mem_mib = mem_mib
        self.cpus = cpus
        self.console: Console = NullConsole() if console is None else console
        self.trace_unassigned = trace_unassigned
        self.acpi = acpi  # write ACPI tables (boot/acpi.py) at load()
        self.irqchip = irqchip  # god.irqchip.IRQCHIPS: god's own PIC/IOAPIC/PIT, or KVM's


class _Shifted:
    """Presents a device at a second base (the i8042's 0x64 port is its offset 4)."""

    def __init__(self, dev: Device, delta: int) -> None:
        self.dev, self.delta = dev, delta

    def read(self, offset: int, size: int) -> int:
        return self.dev.read(offset + self.delta, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.dev.write(offset + self.delta, size, value)


class _Sink:
    """Port 0x80 (POST codes, Linux's I/O delay): writes vanish, reads float high."""

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        pass


class Machine(MachineBase):
    def __init__(self, config: MachineConfig) -> None:
        super().__init__()
        self.config = config
        if config.mem_mib < 4:
            raise ValueError("--mem must be at least 4 MiB")
        self.kvm = Kvm()
        self.kvm.require()
        limit = self.kvm.max_vcpus()
        if not 1 <= config.cpus <= limit:
            raise KvmError(f"--cpus {config.cpus}: this KVM ({self.kvm.flavour}) allows 1..{limit}")
        self.mem_bytes = config.mem_mib << 20
        self.vm = self.kvm.create_vm()
        self._closed = False
        try:
            self.vm.set_tss_addr(TSS_ADDR)  # VMX real mode needs it; harmless elsewhere
        except KvmError:
            pass
        self.mem = GuestMemory(L.ram_layout(self.mem_bytes))
        for slot, r in enumerate(self.mem.regions):
            self.vm.set_user_memory_region(slot, r.gpa, r.size, r.host_addr)
        self.pio = Bus("port I/O", 0x10000)
        self.mmio = Bus("MMIO", 1 << 52)
        if config.trace_unassigned:
            self.pio.trace = self.mmio.trace = stderr_trace
        # The irqchip must exist before vCPUs are created (each gets an in-kernel LAPIC).
        self.diag = Diag(trace=config.trace_unassigned)
        if config.irqchip not in IRQCHIPS:
            raise ValueError(f"--irqchip {config.irqchip!r}: expected one of {', '.join(IRQCHIPS)}")
        self.irqchip: KernelIrqchip | SplitIrqchip = (
            SplitIrqchip(self.vm, self.pio, self.mmio, config.cpus, self.diag,
                         nudge_eois=self.kvm.flavour == "pvm")
            if config.irqchip == "split" else KernelIrqchip(self.vm))
        self._mmio_next = L.MMIO_BASE
        self.loop = EventLoop()
        self.console = config.console
        self.uart = Uart16550(self.irq_line(COM1_IRQ), self.console.write, self.loop)
        self.exit_port = ExitPort(lambda st: self.request_stop(VmExit(st, "", "exit-port")))
        self.cmos = Cmos(min(self.mem_bytes, L.LOW_RAM_LIMIT), max(self.mem_bytes - L.LOW_RAM_LIMIT, 0),
                         irq=self.irq_line(RTC_IRQ), scheduler=self.loop, diag=self.diag)
        self.i8042 = I8042(self._on_reset, self.irq_line(KBD_IRQ), self.irq_line(AUX_IRQ))
        self.pio.register(COM1_BASE, 8, self.uart)
        self.pio.register(EXIT_PORT, 4, self.exit_port)
        self.pio.register(CMOS_BASE, 2, self.cmos)
        self.pio.register(DATA_PORT, 1, self.i8042)
        self.pio.register(STATUS_PORT, 1, _Shifted(self.i8042, STATUS_PORT - DATA_PORT))
        self.pio.register(0x80, 1, _Sink())
        self._add_pc_conventions(config.trace_unassigned)
        cpuid = self.kvm.supported_cpuid()
        self.virtio: list = []  # virtio-mmio transports (god.virtio.attach), closed first
        self.virtio_slots: list[acpi.MmioDevice] = []  # their windows and GSIs, for ACPI
        self.runners: list[VcpuRunner] = []
        for i in range(config.cpus):
            vcpu = self.vm.create_vcpu(i)
            self._set_cpuid(vcpu, cpuid, i, config.cpus, self.kvm.flavour == "pvm")
            self.runners.append(VcpuRunner(vcpu, self.pio, self.mmio, self.mem,
                                           self.request_stop, self.kvm.flavour))
            self.runners[-1].kick = lambda r=self.runners[-1]: self._kick_one(r)
        self.irqchip.attach(self.runners)

    def _add_pc_conventions(self, trace: bool) -> None:
        """What kernels written for QEMU's pc/microvm expect besides the classic devices:
        fw_cfg, PCI configuration mechanism #1 with a host bridge (and the 0xcf9 reset
        register), the ACPI PM registers the FADT points at (boot/acpi.py)."""
        t = stderr_trace if trace else None
        # MAX_CPUS is QEMU's -smp maxcpus (hot-pluggable bound): god has no CPU hotplug
        self.fwcfg = fwcfg.FwCfg(self.mem_bytes, self.config.cpus, self.config.cpus,
                                 L.memory_map(self.mem_bytes), t)
        self.pci = pci.PciHost(lambda: self._on_reset("the reset control register (port 0xcf9)"),
                               t)
        self.acpi_pm = pmtimer.AcpiPm(lambda typ: self.request_stop(
            VmExit(STATUS_OK, "", "poweroff")), acpi.SLP_TYP_S5, t)
        self.pio.register(fwcfg.PORT_BASE, fwcfg.PORT_SIZE, self.fwcfg)
        self.pio.register(pci.PORT_BASE, pci.PORT_SIZE, self.pci)
        self.pio.register(acpi.PM_BASE, pmtimer.SIZE, self.acpi_pm)

    # --- wiring for devices ---------------------------------------------------------------
    def irq_line(self, gsi: int) -> IrqLine:
        return self.irqchip.line(gsi)

    def place_virtio(self, n: int, size: int) -> tuple[int, int]:
        """(window base, GSI) for the n-th virtio-mmio transport (god.virtio.attach)."""
        from god.virtio.attach import VIRTIO_GSIS

        if n >= len(VIRTIO_GSIS):
            raise ValueError(f"at most {len(VIRTIO_GSIS)} virtio devices")
        return self.alloc_mmio(size), VIRTIO_GSIS[n]

    def alloc_mmio(self, size: int) -> int:
        """A page-aligned slot in the MMIO window for a device (e.g. virtio-mmio)."""
        base = self._mmio_next
        self._mmio_next = L.align_up(base + size, L.PAGE)
        if self._mmio_next > L.MMIO_BASE + L.MMIO_SIZE:
            raise ValueError("MMIO window exhausted")
        return base

    @staticmethod
    def _set_cpuid(vcpu, cpuid, index: int, cpus: int, pvm: bool) -> None:  # type: ignore[no-untyped-def]
        # Topology as QEMU gives it for -smp N: one package of N cores, one thread each, so a
        # guest that counts CPUs from CPUID sees exactly the vCPUs that exist.
        core_bits = max(0, (cpus - 1).bit_length())
        for j in range(cpuid.nent):
            e = cpuid.entries[j]
            if e.function == 1:
                # EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
                e.ebx = (e.ebx & 0x0000FFFF) | ((index & 0xFF) << 24) | (min(cpus, 0xFF) << 16)
                e.edx = (e.edx | CPUID1_EDX_HTT) if cpus > 1 else (e.edx & ~CPUID1_EDX_HTT)
                if pvm:
                    e.ecx &= ~CPUID1_ECX_CX16
            elif e.function in (0xB, 0x1F):
                # Extended topology: level 0 = SMT (1 thread), level 1 = core (N cores).
                if e.index == 0:
                    e.eax, e.ebx, e.ecx = 0, 1, (1 << 8) | 0
                elif e.index == 1:
                    e.eax, e.ebx, e.ecx = core_bits, cpus, (2 << 8) | 1
                else:
                    e.eax, e.ebx, e.ecx = 0, 0, e.index
                e.edx = index  # x2APIC ID
            elif e.function == 7 and e.index == 0 and pvm:
                e.ebx &= ~CPUID7_EBX_SMAP
        vcpu.set_cpuid2(cpuid)

    # --- boot -------------------------------------------------------------------------------
    def load(self, inputs: BootInputs, flat_addr: int | None = None, flat_mode: int = 64) -> str:
        inputs.mem_bytes = self.mem_bytes
        fmt, entry = load_kernel(self.mem, inputs, flat_addr, flat_mode)
        mptable.write(self.mem, self.config.cpus)
        if self.config.acpi:
            acpi.write(self.mem, self.config.cpus, self.virtio_slots)
        self.set_entry(entry)
        return fmt

    def set_entry(self, entry: EntryState) -> None:
        """BSP registers for the boot mode; other vCPUs wait for INIT/SIPI in the kernel."""
        vcpu = self.runners[0].vcpu
        sregs, regs = vcpu.get_sregs(), vcpu.get_regs()
        apply_entry(sregs, regs, self.mem, entry)
        vcpu.set_sregs(sregs)
        vcpu.set_regs(regs)

    # --- run and stop -----------------------------------------------------------------------
    def _on_reset(self, how: str = "the i8042 reset line (e.g. 0xFE to port 0x64)") -> None:
        self.request_stop(VmExit(STATUS_GUEST_RESET,
                                 f"guest reset via {how}; god does not reboot guests", "reset"))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self.virtio:  # stop device threads before guest RAM is unmapped
            t.close()
        stuck = [r for r in self.runners if r.thread and r.thread.is_alive()]
        if not stuck:  # never unmap RAM or kvm_run under a running vCPU thread
            for r in self.runners:
                r.vcpu.close()
            self.vm.close()
            self.mem.close()
        self.kvm.close()
        self._close_wake_pipe()
