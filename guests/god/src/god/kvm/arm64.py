"""arm64 KVM constants that are not ioctls: register ids, vCPU features, vGIC attributes and
the KVM_IRQ_LINE encoding (arch/arm64/include/uapi/asm/kvm.h, include/uapi/linux/kvm.h).
Checked against the aarch64 cross headers by tests/test_kvm_abi_arm64.py."""

from __future__ import annotations

# Register ids (KVM_{GET,SET}_ONE_REG): arch | size | coprocessor group | index.
KVM_REG_ARM64 = 0x6000000000000000
KVM_REG_SIZE_U64 = 0x0030000000000000
KVM_REG_ARM_CORE = 0x0010 << 16
KVM_REG_ARM64_SYSREG = 0x0013 << 16
CORE_REGS_BASE = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE

# struct kvm_regs begins with struct user_pt_regs: u64 regs[31], sp, pc, pstate; then
# sp_el1, elr_el1. A core register's id indexes it in 32-bit words.
_U64 = 8


def core_reg(byte_offset: int) -> int:
    return CORE_REGS_BASE | (byte_offset // 4)


def x_reg(n: int) -> int:
    if not 0 <= n <= 30:
        raise ValueError(f"x{n}: arm64 has x0..x30")
    return core_reg(n * _U64)


REG_SP = core_reg(31 * _U64)
REG_PC = core_reg(32 * _U64)
REG_PSTATE = core_reg(33 * _U64)


def sys_reg(op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
    return (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG
            | (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2)


REG_MPIDR_EL1 = sys_reg(3, 0, 0, 0, 5)
REG_ESR_EL1 = sys_reg(3, 0, 5, 2, 0)
REG_FAR_EL1 = sys_reg(3, 0, 6, 0, 0)

# PSTATE at entry (booting.rst: "PSTATE.DAIF all masked", EL1h): D A I F | M = EL1h.
PSR_D, PSR_A, PSR_I, PSR_F = 1 << 9, 1 << 8, 1 << 7, 1 << 6
PSR_MODE_EL1H = 0b0101
PSTATE_BOOT = PSR_D | PSR_A | PSR_I | PSR_F | PSR_MODE_EL1H

# KVM_ARM_VCPU_INIT feature bits
VCPU_POWER_OFF = 0      # the vCPU starts off; PSCI CPU_ON starts it
VCPU_EL1_32BIT = 1
VCPU_PSCI_0_2 = 2

# Device control API
KVM_DEV_TYPE_ARM_VGIC_V3 = 7
KVM_CREATE_DEVICE_TEST = 1
VGIC_GRP_ADDR = 0
VGIC_GRP_NR_IRQS = 3
VGIC_GRP_CTRL = 4
VGIC_CTRL_INIT = 0
VGIC_V3_ADDR_TYPE_DIST = 2
VGIC_V3_ADDR_TYPE_REDIST = 3

# KVM_IRQ_LINE's irq field on arm64: type << 24 | vcpu << 16 | number
IRQ_TYPE_SHIFT, IRQ_VCPU_SHIFT = 24, 16
IRQ_TYPE_CPU, IRQ_TYPE_SPI, IRQ_TYPE_PPI = 0, 1, 2
SPI_BASE_INTID = 32     # GICv3: INTIDs 32..1019 are SPIs


def spi_irq_field(spi: int) -> int:
    """KVM_IRQ_LINE irq for SPI number spi (INTID 32 + spi); the vcpu field is ignored."""
    return (IRQ_TYPE_SPI << IRQ_TYPE_SHIFT) | (SPI_BASE_INTID + spi)
