"""The in-kernel vGICv3 (Linux Documentation/virt/kvm/devices/arm-vgic-v3.rst).

Set-up order: KVM_CREATE_DEVICE(KVM_DEV_TYPE_ARM_VGIC_V3) once every vCPU exists; the
distributor and redistributor base addresses (KVM_DEV_ARM_VGIC_GRP_ADDR,
KVM_VGIC_V3_ADDR_TYPE_DIST/REDIST: one 128 KiB redistributor per vCPU from the base);
the number of interrupts (KVM_DEV_ARM_VGIC_GRP_NR_IRQS, counted from INTID 0, a multiple of
32 between 64 and 1024); then KVM_DEV_ARM_VGIC_CTRL_INIT. SPIs are raised with
KVM_IRQ_LINE (god.kvm.arm64.spi_irq_field); the timer's PPIs are KVM's own.
"""

from __future__ import annotations

from god.arch.aarch64 import layout as L
from god.devices.irq import KvmIrqLine
from god.kvm import arm64 as A
from god.kvm.system import DeviceFd, VmFd


class VgicV3:
    def __init__(self, vm: VmFd, cpus: int) -> None:
        if not 1 <= cpus <= L.MAX_CPUS:
            raise ValueError(f"--cpus {cpus}: the virt redistributor region holds 1..{L.MAX_CPUS}")
        self.vm = vm
        dev = vm.create_device(A.KVM_DEV_TYPE_ARM_VGIC_V3)
        assert dev is not None
        self.dev: DeviceFd = dev
        try:
            dev.set_attr(A.VGIC_GRP_ADDR, A.VGIC_V3_ADDR_TYPE_DIST, L.GIC_DIST.base, "GICD base")
            dev.set_attr(A.VGIC_GRP_ADDR, A.VGIC_V3_ADDR_TYPE_REDIST, L.GIC_REDIST.base,
                         "GICR base")
            dev.set_attr(A.VGIC_GRP_NR_IRQS, 0, L.NR_IRQS, "NR_IRQS")
            dev.set_attr(A.VGIC_GRP_CTRL, A.VGIC_CTRL_INIT, None, "CTRL_INIT")
        except Exception:
            dev.close()
            raise
        self._lines: dict[int, KvmIrqLine] = {}

    def line(self, spi: int) -> KvmIrqLine:
        """The IrqLine of SPI spi (INTID 32 + spi), one object per SPI."""
        if not 0 <= spi < L.NUM_SPIS:
            raise ValueError(f"SPI {spi}: the vGIC has SPIs 0..{L.NUM_SPIS - 1}")
        ln = self._lines.get(spi)
        if ln is None:
            ln = self._lines[spi] = KvmIrqLine(self.vm.irq_line, A.spi_irq_field(spi))
        return ln

    # the Machine's irqchip interface (the x86 ones run threads; the vGIC is all KVM's)
    def stats(self) -> dict[str, int]:
        return {}  # the vGIC is in the kernel, with its own counters

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.dev.close()
