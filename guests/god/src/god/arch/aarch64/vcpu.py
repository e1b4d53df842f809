"""arm64 vCPU set-up and state, by KVM_ARM_VCPU_INIT and KVM_{GET,SET}_ONE_REG
(Linux Documentation/virt/kvm/api.rst 4.82 KVM_ARM_VCPU_INIT, 4.68 KVM_SET_ONE_REG)."""

from __future__ import annotations

from god.kvm import arm64 as A
from god.kvm import structs as s
from god.kvm.system import KvmError, VcpuFd, VmFd


def features(index: int) -> int:
    """KVM_ARM_VCPU_INIT features[0] for vCPU index: PSCI 0.2+ everywhere (KVM serves PSCI
    calls from HVC in the kernel), and secondaries start powered off until PSCI CPU_ON."""
    f = 1 << A.VCPU_PSCI_0_2
    if index > 0:
        f |= 1 << A.VCPU_POWER_OFF
    return f


def init_vcpus(vm: VmFd, vcpus: list[VcpuFd]) -> int:
    """KVM_ARM_VCPU_INIT every vCPU with the host's preferred target; returns the target."""
    target = vm.arm_preferred_target().target
    for v in vcpus:
        init = s.KvmVcpuInit(target=target)
        init.features[0] = features(v.index)
        v.arm_vcpu_init(init)
    return target


def set_boot_regs(vcpu: VcpuFd, pc: int, x0: int) -> None:
    """booting.rst: x0 = DTB, x1..x3 = 0, EL1h with DAIF masked, at the kernel's entry."""
    vcpu.set_one_reg(A.REG_PSTATE, A.PSTATE_BOOT)
    vcpu.set_one_reg(A.x_reg(0), x0)
    for n in (1, 2, 3):
        vcpu.set_one_reg(A.x_reg(n), 0)
    vcpu.set_one_reg(A.REG_PC, pc)


def describe(vcpu: VcpuFd) -> str:
    """Where the vCPU is, for a `god:` line: PC, PSTATE's exception level, ESR/FAR."""
    try:
        pc = vcpu.get_one_reg(A.REG_PC)
        pstate = vcpu.get_one_reg(A.REG_PSTATE)
    except KvmError as e:
        return f"(registers unreadable: {e})"
    el = (pstate >> 2) & 3
    out = f"at pc={pc:#x} (EL{el}, pstate={pstate:#x})"
    try:
        esr = vcpu.get_one_reg(A.REG_ESR_EL1)
        far = vcpu.get_one_reg(A.REG_FAR_EL1)
        out += f", ESR_EL1={esr:#x} FAR_EL1={far:#x}"
    except KvmError:
        pass
    return out
