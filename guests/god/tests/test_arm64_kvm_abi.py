"""god.kvm's arm64 ioctl numbers, struct layouts and constants match the arm64 uapi headers
(<linux/kvm.h>, <asm/kvm.h> of Debian's linux-libc-dev-arm64-cross): a program compiled with
aarch64-linux-gnu-gcc prints them, run by qemu-aarch64-static (no arm64 host needed)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest
from god.kvm import arm64 as A
from god.kvm import ioctls as k
from god.kvm import structs as s
from god.kvm.caps import ARM64_CAPS

C_SOURCE = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
#define P(name, expr) printf("%s %llu\n", name, (unsigned long long)(expr))
#define CORE(f) (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | \
                 (offsetof(struct kvm_regs, f) / sizeof(__u32)))
int main(void) {
    P("vcpu_init", sizeof(struct kvm_vcpu_init)); P("one_reg", sizeof(struct kvm_one_reg));
    P("create_device", sizeof(struct kvm_create_device));
    P("device_attr", sizeof(struct kvm_device_attr));
    P("run.mmio.data", offsetof(struct kvm_run, mmio.data));
    P("run.mmio.len", offsetof(struct kvm_run, mmio.len));
    P("run.system_event.data", offsetof(struct kvm_run, system_event.data));
    P("run.arm_nisv.fault_ipa", offsetof(struct kvm_run, arm_nisv.fault_ipa));
    P("run.exit_reason", offsetof(struct kvm_run, exit_reason));
    P("KVM_ARM_VCPU_INIT", KVM_ARM_VCPU_INIT); P("KVM_ARM_PREFERRED_TARGET", KVM_ARM_PREFERRED_TARGET);
    P("KVM_GET_ONE_REG", KVM_GET_ONE_REG); P("KVM_SET_ONE_REG", KVM_SET_ONE_REG);
    P("KVM_CREATE_DEVICE", KVM_CREATE_DEVICE); P("KVM_SET_DEVICE_ATTR", KVM_SET_DEVICE_ATTR);
    P("KVM_HAS_DEVICE_ATTR", KVM_HAS_DEVICE_ATTR); P("KVM_IRQ_LINE", KVM_IRQ_LINE);
    P("KVM_RUN", KVM_RUN); P("KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION);
    P("PC", CORE(regs.pc)); P("PSTATE", CORE(regs.pstate)); P("X0", CORE(regs.regs[0]));
    P("X1", CORE(regs.regs[1])); P("SP", CORE(regs.sp));
    P("KVM_ARM_VCPU_POWER_OFF", KVM_ARM_VCPU_POWER_OFF); P("KVM_ARM_VCPU_PSCI_0_2", KVM_ARM_VCPU_PSCI_0_2);
    P("KVM_DEV_TYPE_ARM_VGIC_V3", KVM_DEV_TYPE_ARM_VGIC_V3); P("KVM_CREATE_DEVICE_TEST", KVM_CREATE_DEVICE_TEST);
    P("KVM_DEV_ARM_VGIC_GRP_ADDR", KVM_DEV_ARM_VGIC_GRP_ADDR);
    P("KVM_DEV_ARM_VGIC_GRP_NR_IRQS", KVM_DEV_ARM_VGIC_GRP_NR_IRQS);
    P("KVM_DEV_ARM_VGIC_GRP_CTRL", KVM_DEV_ARM_VGIC_GRP_CTRL);
    P("KVM_DEV_ARM_VGIC_CTRL_INIT", KVM_DEV_ARM_VGIC_CTRL_INIT);
    P("KVM_VGIC_V3_ADDR_TYPE_DIST", KVM_VGIC_V3_ADDR_TYPE_DIST);
    P("KVM_VGIC_V3_ADDR_TYPE_REDIST", KVM_VGIC_V3_ADDR_TYPE_REDIST);
    P("KVM_ARM_IRQ_TYPE_SHIFT", KVM_ARM_IRQ_TYPE_SHIFT); P("KVM_ARM_IRQ_TYPE_SPI", KVM_ARM_IRQ_TYPE_SPI);
    P("KVM_ARM_IRQ_VCPU_SHIFT", KVM_ARM_IRQ_VCPU_SHIFT);
    P("KVM_EXIT_SYSTEM_EVENT", KVM_EXIT_SYSTEM_EVENT); P("KVM_EXIT_ARM_NISV", KVM_EXIT_ARM_NISV);
    P("KVM_SYSTEM_EVENT_SHUTDOWN", KVM_SYSTEM_EVENT_SHUTDOWN); P("KVM_SYSTEM_EVENT_RESET", KVM_SYSTEM_EVENT_RESET);
    P("KVM_SYSTEM_EVENT_CRASH", KVM_SYSTEM_EVENT_CRASH);
    P("KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2", KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2);
    P("KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY); P("KVM_CAP_IRQCHIP", KVM_CAP_IRQCHIP);
    P("KVM_CAP_ONE_REG", KVM_CAP_ONE_REG); P("KVM_CAP_DEVICE_CTRL", KVM_CAP_DEVICE_CTRL);
    P("KVM_CAP_ARM_PSCI_0_2", KVM_CAP_ARM_PSCI_0_2); P("KVM_CAP_IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT);
    P("KVM_CAP_ARM_PSCI", KVM_CAP_ARM_PSCI); P("KVM_CAP_ARM_VM_IPA_SIZE", KVM_CAP_ARM_VM_IPA_SIZE);
    P("KVM_CAP_NR_VCPUS", KVM_CAP_NR_VCPUS); P("KVM_CAP_MAX_VCPUS", KVM_CAP_MAX_VCPUS);
    P("KVM_CAP_NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS); P("KVM_CAP_IOEVENTFD", KVM_CAP_IOEVENTFD);
    P("KVM_CAP_IRQFD", KVM_CAP_IRQFD); P("KVM_CAP_ARM_EL1_32BIT", KVM_CAP_ARM_EL1_32BIT);
    P("KVM_CAP_ARM_PMU_V3", KVM_CAP_ARM_PMU_V3); P("KVM_CAP_ARM_SVE", KVM_CAP_ARM_SVE);
    P("KVM_CAP_ARM_PTRAUTH_ADDRESS", KVM_CAP_ARM_PTRAUTH_ADDRESS);
    P("KVM_CAP_ARM_NISV_TO_USER", KVM_CAP_ARM_NISV_TO_USER);
    return 0;
}
"""


@pytest.fixture(scope="module")
def header(tmp_path_factory) -> dict[str, int]:
    if shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64-static") is None:
        pytest.skip("needs gcc-aarch64-linux-gnu and qemu-user-static")
    d = tmp_path_factory.mktemp("abi64")
    (d / "abi.c").write_text(C_SOURCE)
    subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-o", str(d / "abi"), str(d / "abi.c")],
                   check=True)
    out = subprocess.run(["qemu-aarch64-static", str(d / "abi")], capture_output=True, text=True,
                         check=True).stdout
    return {name: int(v) for name, v in (line.split() for line in out.splitlines())}


def test_struct_sizes(header):
    assert ctypes.sizeof(s.KvmVcpuInit) == header["vcpu_init"]
    assert ctypes.sizeof(s.KvmOneReg) == header["one_reg"]
    assert ctypes.sizeof(s.KvmCreateDevice) == header["create_device"]
    assert ctypes.sizeof(s.KvmDeviceAttr) == header["device_attr"]


def test_kvm_run_offsets_shared_with_x86(header):
    assert s.RUN_EXIT_REASON == header["run.exit_reason"]
    assert s.RUN_MMIO_DATA == header["run.mmio.data"] and s.RUN_MMIO_LEN == header["run.mmio.len"]
    assert s.RUN_SYSTEM_EVENT_DATA == header["run.system_event.data"]
    assert s.RUN_ARM_NISV_FAULT_IPA == header["run.arm_nisv.fault_ipa"]


@pytest.mark.parametrize("name", ["KVM_ARM_VCPU_INIT", "KVM_ARM_PREFERRED_TARGET",
                                  "KVM_GET_ONE_REG", "KVM_SET_ONE_REG", "KVM_CREATE_DEVICE",
                                  "KVM_SET_DEVICE_ATTR", "KVM_HAS_DEVICE_ATTR", "KVM_IRQ_LINE",
                                  "KVM_RUN", "KVM_SET_USER_MEMORY_REGION"])
def test_ioctl_numbers(header, name):
    assert getattr(k, name) == header[name]


def test_register_ids(header):
    assert A.REG_PC == header["PC"] == 0x6030000000100040
    assert A.REG_PSTATE == header["PSTATE"] == 0x6030000000100042
    assert A.x_reg(0) == header["X0"] == 0x6030000000100000
    assert A.x_reg(1) == header["X1"] and A.REG_SP == header["SP"]


def test_constants(header):
    assert A.VCPU_POWER_OFF == header["KVM_ARM_VCPU_POWER_OFF"]
    assert A.VCPU_PSCI_0_2 == header["KVM_ARM_VCPU_PSCI_0_2"]
    assert A.KVM_DEV_TYPE_ARM_VGIC_V3 == header["KVM_DEV_TYPE_ARM_VGIC_V3"]
    assert A.KVM_CREATE_DEVICE_TEST == header["KVM_CREATE_DEVICE_TEST"]
    assert A.VGIC_GRP_ADDR == header["KVM_DEV_ARM_VGIC_GRP_ADDR"]
    assert A.VGIC_GRP_NR_IRQS == header["KVM_DEV_ARM_VGIC_GRP_NR_IRQS"]
    assert A.VGIC_GRP_CTRL == header["KVM_DEV_ARM_VGIC_GRP_CTRL"]
    assert A.VGIC_CTRL_INIT == header["KVM_DEV_ARM_VGIC_CTRL_INIT"]
    assert A.VGIC_V3_ADDR_TYPE_DIST == header["KVM_VGIC_V3_ADDR_TYPE_DIST"]
    assert A.VGIC_V3_ADDR_TYPE_REDIST == header["KVM_VGIC_V3_ADDR_TYPE_REDIST"]
    assert A.IRQ_TYPE_SHIFT == header["KVM_ARM_IRQ_TYPE_SHIFT"]
    assert A.IRQ_TYPE_SPI == header["KVM_ARM_IRQ_TYPE_SPI"]
    assert A.IRQ_VCPU_SHIFT == header["KVM_ARM_IRQ_VCPU_SHIFT"]
    assert k.EXIT_SYSTEM_EVENT == header["KVM_EXIT_SYSTEM_EVENT"]
    assert k.EXIT_ARM_NISV == header["KVM_EXIT_ARM_NISV"]
    assert (k.SYSTEM_EVENT_SHUTDOWN, k.SYSTEM_EVENT_RESET, k.SYSTEM_EVENT_CRASH) == (
        header["KVM_SYSTEM_EVENT_SHUTDOWN"], header["KVM_SYSTEM_EVENT_RESET"],
        header["KVM_SYSTEM_EVENT_CRASH"])
    from god.arch.aarch64.runner import RESET_FLAG_PSCI_RESET2
    assert RESET_FLAG_PSCI_RESET2 == header["KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2"]


def test_spi_irq_field_encoding():
    """api.rst KVM_IRQ_LINE (arm64): irq = type << 24 | vcpu << 16 | num; SPI num = INTID."""
    assert A.spi_irq_field(1) == (1 << 24) | 33
    assert A.spi_irq_field(16) == (1 << 24) | 48


def test_capability_numbers(header):
    for c in ARM64_CAPS:
        assert c.number == header[c.name], c.name
