"""The two interrupt-controller set-ups a god Machine can have (`god run --irqchip`).

- `split` (the default): KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, 24) before any vCPU exists,
  so only the local APICs stay in KVM. god's own 8259 pair, 82093AA IOAPIC and 8254 PIT
  (god.devices.pic/ioapic/pit) sit on its buses; the IOAPIC delivers by KVM_SIGNAL_MSI and
  mirrors its redirection table into KVM's GSI routing (MSI routes on GSI 0-23), which is
  how KVM knows which vectors are level-triggered and must exit with KVM_EXIT_IOAPIC_EOI.
  The master 8259's INT reaches the BSP as KVM_INTERRUPT, issued by the BSP's own thread
  when kvm_run says it is ready (else it asks for an interrupt window).
- `kernel`: KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2, everything in the host kernel; device
  lines are KVM_IRQ_LINE on the GSI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from god.boot import layout as L
from god.devices.bus import Bus
from god.devices.diag import Diag
from god.devices.ioapic import IOAPIC_PINS, IOAPIC_WINDOW, Ioapic, entry_msi
from god.devices.irq import GsiLine, IrqLine, IsaIrqRouter, KvmIrqLine
from god.devices.pic import ELCR_BASE, MASTER_BASE, SLAVE_BASE, DualPic
from god.devices.pit import PIT_BASE, PIT_IRQ, PIT_PORTS, PORT_B, Pit
from god.kvm.caps import KVM_CAP_SPLIT_IRQCHIP
from god.kvm.system import KvmError, VmFd

if TYPE_CHECKING:
    from god.vcpu.runner import VcpuRunner

IRQCHIPS = ("split", "kernel")
MSI_DM_REMOTE_READ = 3 << 8  # MSI data: delivery mode 011


class KernelIrqchip:
    """Today's path: the host kernel's PIC, IOAPIC and PIT."""

    kind = "kernel"

    def __init__(self, vm: VmFd) -> None:
        self.vm = vm
        vm.create_irqchip()
        vm.create_pit2()

    def line(self, gsi: int) -> IrqLine:
        return KvmIrqLine(self.vm.irq_line, gsi)

    def stats(self) -> dict[str, int]:
        return {}  # the host kernel keeps its counters

    def attach(self, runners: list[VcpuRunner]) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class SplitIrqchip:
    """LAPIC in KVM; PIC, IOAPIC and PIT are god's."""

    kind = "split"

    def __init__(self, vm: VmFd, pio: Bus, mmio: Bus, ioapic_id: int, diag: Diag,
                 nudge_eois: bool = False) -> None:
        self.vm = vm
        if not vm.kvm.check_extension(KVM_CAP_SPLIT_IRQCHIP):
            raise KvmError("this KVM lacks KVM_CAP_SPLIT_IRQCHIP (god's own PIC/IOAPIC/PIT "
                           "need it): run with --irqchip kernel")
        vm.enable_split_irqchip(IOAPIC_PINS)
        self.bsp: VcpuRunner | None = None
        self.pic = DualPic(self._pic_int, diag)
        self.ioapic = Ioapic(self._send_msi, vm.set_msi_routes, ioapic_id, diag)
        self.ioapic.extint_vector = lambda: self.pic.acknowledge() if self.pic.output else None
        self.router = IsaIrqRouter(self.pic, self.ioapic)
        self.pit = Pit(lambda: self.router.pulse(PIT_IRQ), diag=diag, acked=True)
        # ISA IRQ0 is IOAPIC pin 0 (MP table). The EOI path holds no lock when it acks, so
        # the next held-back tick leaves from the vCPU thread; INTA (under the 8259's lock)
        # leaves it to the timer thread.
        self.ioapic.ack_pins[PIT_IRQ] = lambda: self.pit.ack(send_next=True)
        self.pic.on_ack = lambda irq: self.pit.ack() if irq == PIT_IRQ else None
        # Linux's check_timer masks IRQ0 at the 8259 and re-initialises it, then unmasks the
        # IOAPIC pin and counts ticks for ~10 jiffies: a tick left with the 8259 must not hold
        # the IOAPIC's back for ACK_TIMEOUT_NS.
        self.pit.is_withdrawn = lambda: self.router.pulse_withdrawn(PIT_IRQ)
        if nudge_eois:
            self.ioapic.nudge = self._nudge
            self.pit.nudge = lambda: self._nudge(entry_msi(self.ioapic.entries[PIT_IRQ])[0])
        self.ioapic.reset_routes()
        pio.register(MASTER_BASE, 2, self.pic.master_port)
        pio.register(SLAVE_BASE, 2, self.pic.slave_port)
        pio.register(ELCR_BASE, 2, self.pic.elcr_port)
        pio.register(PIT_BASE, PIT_PORTS, self.pit)
        pio.register(PORT_B, 1, self.pit.port_b)
        mmio.register(L.IOAPIC_ADDR, IOAPIC_WINDOW, self.ioapic)

    def _send_msi(self, address: int, data: int) -> bool:
        return self.vm.signal_msi(address, data) > 0

    def _nudge(self, address: int) -> None:
        """PVM holds a KVM_EXIT_IOAPIC_EOI back while the vCPU halts right after its EOI
        (the exit request is only looked at on the next entry to the guest). An MSI with
        delivery mode 011 ("remote read", reserved for MSIs) is KVM's PV unhalt kick: it
        wakes the halted vCPU without an interrupt, the held-back EOI exit reaches god, and
        the guest sees its HLT return early once (as after any spurious wake-up)."""
        self.vm.signal_msi(address, MSI_DM_REMOTE_READ)

    def _pic_int(self, level: bool) -> None:
        bsp = self.bsp
        if bsp is not None:
            bsp.request_extint(level)

    def line(self, gsi: int) -> IrqLine:
        return GsiLine(self.router, gsi)

    def stats(self) -> dict[str, int]:
        """The PIT's IRQ0 figures under its lost-tick policy (god.devices.pit)."""
        p = self.pit
        return {"pit_delivered": p.delivered, "pit_coalesced": p.coalesced,
                "pit_ack_timeouts": p.ack_timeouts, "pit_withdrawn": p.withdrawn,
                "pit_backlog": p.backlog}

    def attach(self, runners: list[VcpuRunner]) -> None:
        for r in runners:
            r.on_eoi = self.ioapic.eoi
        self.bsp = runners[0]
        runners[0].pic_ack = self.pic.acknowledge
        runners[0].request_extint(self.pic.output)

    def start(self) -> None:
        self.pit.start()

    def stop(self) -> None:
        self.pit.stop()
