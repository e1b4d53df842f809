"""The ctypes layouts and ioctl numbers in god.kvm match <linux/kvm.h> (compiled here)."""

from __future__ import annotations

import ctypes
import os
import subprocess

import pytest
from god.kvm import Kvm
from god.kvm import ioctls as k
from god.kvm import structs as s
from god.kvm.caps import CAPS
from god.kvm.system import kvm_flavour

C_SOURCE = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/kvm.h>
#define P(name, expr) printf("%s %lu\n", name, (unsigned long)(expr))
int main(void) {
    P("regs", sizeof(struct kvm_regs)); P("sregs", sizeof(struct kvm_sregs));
    P("segment", sizeof(struct kvm_segment)); P("pit_state2", sizeof(struct kvm_pit_state2));
    P("pit_config", sizeof(struct kvm_pit_config)); P("msi", sizeof(struct kvm_msi));
    P("irqfd", sizeof(struct kvm_irqfd)); P("ioeventfd", sizeof(struct kvm_ioeventfd));
    P("cpuid_entry2", sizeof(struct kvm_cpuid_entry2)); P("irqchip", sizeof(struct kvm_irqchip));
    P("translation", sizeof(struct kvm_translation));
    P("umr", sizeof(struct kvm_userspace_memory_region));
    P("sregs.efer", offsetof(struct kvm_sregs, efer));
    P("run.immediate_exit", offsetof(struct kvm_run, immediate_exit));
    P("run.exit_reason", offsetof(struct kvm_run, exit_reason));
    P("run.io", offsetof(struct kvm_run, io)); P("run.io.data_offset", offsetof(struct kvm_run, io.data_offset));
    P("run.mmio.data", offsetof(struct kvm_run, mmio.data)); P("run.mmio.len", offsetof(struct kvm_run, mmio.len));
    P("run.internal.data", offsetof(struct kvm_run, internal.data));
    P("run.system_event.data", offsetof(struct kvm_run, system_event.data));
    P("run.size", sizeof(struct kvm_run));
    P("KVM_RUN", KVM_RUN); P("KVM_SET_SREGS", KVM_SET_SREGS); P("KVM_GET_SREGS", KVM_GET_SREGS);
    P("KVM_SET_REGS", KVM_SET_REGS); P("KVM_CREATE_PIT2", KVM_CREATE_PIT2);
    P("KVM_GET_PIT2", KVM_GET_PIT2); P("KVM_SIGNAL_MSI", KVM_SIGNAL_MSI);
    P("KVM_IRQ_LINE", KVM_IRQ_LINE); P("KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION);
    P("KVM_SET_CPUID2", KVM_SET_CPUID2); P("KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID);
    P("KVM_TRANSLATE", KVM_TRANSLATE); P("KVM_IRQFD", KVM_IRQFD); P("KVM_IOEVENTFD", KVM_IOEVENTFD);
    P("KVM_GET_IRQCHIP", KVM_GET_IRQCHIP); P("KVM_SET_MP_STATE", KVM_SET_MP_STATE);
    P("KVM_CAP_IRQCHIP", KVM_CAP_IRQCHIP); P("KVM_CAP_PIT2", KVM_CAP_PIT2);
    P("KVM_CAP_IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT); P("KVM_CAP_SIGNAL_MSI", KVM_CAP_SIGNAL_MSI);
    P("KVM_EXIT_INTERNAL_ERROR", KVM_EXIT_INTERNAL_ERROR); P("KVM_EXIT_SYSTEM_EVENT", KVM_EXIT_SYSTEM_EVENT);
    return 0;
}
"""


@pytest.fixture(scope="module")
def header(tmp_path_factory) -> dict[str, int]:
    if not os.path.exists("/usr/include/linux/kvm.h"):
        pytest.skip("no <linux/kvm.h> (install linux-libc-dev)")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(C_SOURCE)
    subprocess.run(["gcc", "-o", str(d / "abi"), str(d / "abi.c")], check=True)
    out = subprocess.run([str(d / "abi")], capture_output=True, text=True, check=True).stdout
    return {name: int(v) for name, v in (line.split() for line in out.splitlines())}


def test_struct_sizes(header):
    for name, t in (("regs", s.KvmRegs), ("sregs", s.KvmSregs), ("segment", s.KvmSegment),
                    ("pit_state2", s.KvmPitState2), ("pit_config", s.KvmPitConfig),
                    ("msi", s.KvmMsi), ("irqfd", s.KvmIrqfd), ("ioeventfd", s.KvmIoeventfd),
                    ("cpuid_entry2", s.KvmCpuidEntry2), ("irqchip", s.KvmIrqchip),
                    ("translation", s.KvmTranslation), ("umr", s.KvmUserspaceMemoryRegion)):
        assert ctypes.sizeof(t) == header[name], name
    assert s.KvmSregs.efer.offset == header["sregs.efer"]


def test_kvm_run_offsets(header):
    assert s.RUN_IMMEDIATE_EXIT == header["run.immediate_exit"]
    assert s.RUN_EXIT_REASON == header["run.exit_reason"]
    assert s.RUN_IO_DIRECTION == header["run.io"]
    assert s.RUN_IO_DATA_OFFSET == header["run.io.data_offset"]
    assert s.RUN_MMIO_DATA == header["run.mmio.data"] and s.RUN_MMIO_LEN == header["run.mmio.len"]
    assert s.RUN_INTERNAL_DATA == header["run.internal.data"]
    assert s.RUN_SYSTEM_EVENT_DATA == header["run.system_event.data"]
    assert s.RUN_SIZE_MIN == header["run.size"]


def test_ioctl_numbers(header):
    for name in ("KVM_RUN", "KVM_SET_SREGS", "KVM_GET_SREGS", "KVM_SET_REGS", "KVM_CREATE_PIT2",
                 "KVM_GET_PIT2", "KVM_SIGNAL_MSI", "KVM_IRQ_LINE", "KVM_SET_USER_MEMORY_REGION",
                 "KVM_SET_CPUID2", "KVM_GET_SUPPORTED_CPUID", "KVM_TRANSLATE", "KVM_IRQFD",
                 "KVM_IOEVENTFD", "KVM_GET_IRQCHIP", "KVM_SET_MP_STATE"):
        assert getattr(k, name) == header[name], name
    caps = {c.name: c.number for c in CAPS}
    for name in ("KVM_CAP_IRQCHIP", "KVM_CAP_PIT2", "KVM_CAP_IMMEDIATE_EXIT", "KVM_CAP_SIGNAL_MSI"):
        assert caps[name] == header[name], name
    assert k.EXIT_INTERNAL_ERROR == header["KVM_EXIT_INTERNAL_ERROR"]
    assert k.EXIT_SYSTEM_EVENT == header["KVM_EXIT_SYSTEM_EVENT"]


def test_flavour_detection(tmp_path):
    assert kvm_flavour(tmp_path) == "unknown"
    for mod, fl in (("kvm_amd", "svm"), ("kvm_intel", "vmx"), ("kvm_pvm", "pvm")):
        (tmp_path / mod).mkdir()
        assert kvm_flavour(tmp_path) == fl  # pvm wins: it is what serves /dev/kvm when loaded


def test_kvm_info_and_required_caps(kvm):
    dev = Kvm()
    try:
        assert dev.api_version == 12
        dev.require()
        assert dev.max_vcpus() >= 1
        assert dev.flavour in ("pvm", "vmx", "svm", "unknown")
    finally:
        dev.close()


def test_cli_kvm_info(kvm):
    import json
    import sys
    p = subprocess.run([sys.executable, "-m", "god", "kvm", "info", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["api_version"] == 12
    assert info["capabilities"]["KVM_CAP_IRQCHIP"]["value"] >= 1
    p = subprocess.run([sys.executable, "-m", "god", "kvm", "info"], capture_output=True, text=True)
    assert "KVM flavour:" in p.stdout and "KVM_CAP_PIT2" in p.stdout
