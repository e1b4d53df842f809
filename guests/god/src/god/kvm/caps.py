"""The KVM capabilities god uses, with why; `god kvm info` prints this table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cap:
    number: int
    name: str
    required: bool
    why: str


KVM_CAP_PIT2 = 33
KVM_CAP_SPLIT_IRQCHIP = 121  # KVM_ENABLE_CAP on the VM: LAPIC in KVM, the rest is god's

CAPS: tuple[Cap, ...] = (
    Cap(0, "KVM_CAP_IRQCHIP", True, "in-kernel LAPIC (and PIC/IOAPIC with --irqchip kernel)"),
    Cap(3, "KVM_CAP_USER_MEMORY", True, "guest RAM from an mmap of this process"),
    Cap(KVM_CAP_PIT2, "KVM_CAP_PIT2", False, "in-kernel i8254 PIT (KVM_CREATE_PIT2, --irqchip kernel)"),
    Cap(KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP", False,
        "LAPIC in KVM, god's own IOAPIC/PIC/PIT (--irqchip split, the default)"),
    Cap(136, "KVM_CAP_IMMEDIATE_EXIT", True, "stopping vCPU threads without races"),
    Cap(14, "KVM_CAP_MP_STATE", False, "secondary vCPUs wait for INIT/SIPI"),
    Cap(9, "KVM_CAP_NR_VCPUS", False, "recommended vCPU limit (--cpus)"),
    Cap(66, "KVM_CAP_MAX_VCPUS", False, "hard vCPU limit (--cpus)"),
    Cap(10, "KVM_CAP_NR_MEMSLOTS", False, "memory slots (RAM above 4 GiB uses a second)"),
    Cap(7, "KVM_CAP_EXT_CPUID", False, "KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2"),
    Cap(4, "KVM_CAP_SET_TSS_ADDR", False, "real mode on VMX without unrestricted guest"),
    Cap(77, "KVM_CAP_SIGNAL_MSI", False, "MSI injection (virtio-mmio, tests)"),
    Cap(32, "KVM_CAP_IRQFD", False, "interrupts raised by an eventfd"),
    Cap(36, "KVM_CAP_IOEVENTFD", False, "doorbell writes completed in the kernel"),
    Cap(25, "KVM_CAP_IRQ_ROUTING", False, "GSI routing (default routing is used)"),
    Cap(35, "KVM_CAP_PIT_STATE2", False, "KVM_GET_PIT2 / KVM_SET_PIT2"),
    Cap(40, "KVM_CAP_INTERNAL_ERROR_DATA", False, "extra data on KVM_EXIT_INTERNAL_ERROR"),
)
