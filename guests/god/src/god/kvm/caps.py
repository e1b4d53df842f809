"""The KVM capabilities god uses, with why, per architecture; `god kvm info` prints the
table of the host's architecture (caps_for)."""

from __future__ import annotations


class Cap:
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    __slots__ = ("name", "number", "required", "why")

    def __init__(self, number: int, name: str, required: bool, why: str) -> None:
        self.number = number
        self.name = name
        self.required = required
        self.why = why


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

# arm64 (numbers from include/uapi/linux/kvm.h). The vGICv3 is a KVM device, not a
# capability: `god kvm info` probes it with KVM_CREATE_DEVICE_TEST (kvm/system.py).
KVM_CAP_ARM_VM_IPA_SIZE = 165
ARM64_CAPS: tuple[Cap, ...] = (
    Cap(3, "KVM_CAP_USER_MEMORY", True, "guest RAM from an mmap of this process"),
    Cap(0, "KVM_CAP_IRQCHIP", True, "an in-kernel GIC (vGICv3)"),
    Cap(70, "KVM_CAP_ONE_REG", True, "vCPU registers by KVM_{GET,SET}_ONE_REG (PC, x0, PSTATE)"),
    Cap(89, "KVM_CAP_DEVICE_CTRL", True, "KVM_CREATE_DEVICE for the vGICv3"),
    Cap(102, "KVM_CAP_ARM_PSCI_0_2", True,
        "PSCI 0.2+ in the kernel: CPU_ON, SYSTEM_OFF/RESET as KVM_EXIT_SYSTEM_EVENT"),
    Cap(136, "KVM_CAP_IMMEDIATE_EXIT", True, "stopping vCPU threads without races"),
    Cap(87, "KVM_CAP_ARM_PSCI", False, "PSCI 0.1"),
    Cap(KVM_CAP_ARM_VM_IPA_SIZE, "KVM_CAP_ARM_VM_IPA_SIZE", False,
        "largest guest-physical address width (bits; 0 = the fixed 40)"),
    Cap(9, "KVM_CAP_NR_VCPUS", False, "recommended vCPU limit (--cpus)"),
    Cap(66, "KVM_CAP_MAX_VCPUS", False, "hard vCPU limit (--cpus)"),
    Cap(10, "KVM_CAP_NR_MEMSLOTS", False, "memory slots"),
    Cap(36, "KVM_CAP_IOEVENTFD", False, "virtio doorbell writes completed in the kernel"),
    Cap(32, "KVM_CAP_IRQFD", False, "interrupts raised by an eventfd"),
    Cap(93, "KVM_CAP_ARM_EL1_32BIT", False, "AArch32 guests (god boots AArch64 only)"),
    Cap(126, "KVM_CAP_ARM_PMU_V3", False, "a PMUv3 for the guest (god gives none)"),
    Cap(170, "KVM_CAP_ARM_SVE", False, "SVE for the guest (not enabled by god)"),
    Cap(171, "KVM_CAP_ARM_PTRAUTH_ADDRESS", False, "pointer authentication (not enabled)"),
    Cap(177, "KVM_CAP_ARM_NISV_TO_USER", False,
        "data aborts KVM cannot decode reach god (KVM_EXIT_ARM_NISV)"),
)


def caps_for(arch: str) -> tuple[Cap, ...]:
    """The capability table of an architecture name of god.arch (x86_64, aarch64)."""
    return ARM64_CAPS if arch == "aarch64" else CAPS
