"""The reference side: the same tiny arm64 kernels god runs boot on QEMU's own `-M virt`
(TCG), so "the layout of QEMU virt" is checked by QEMU itself: the PL011 at 0x09000000, a
raw kernel entered at 0x40080000, PSCI over HVC (CPU_ON of MPIDR 1, SYSTEM_OFF -> QEMU
exits 0)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from arm64build import build

QEMU = "qemu-system-aarch64"


def qemu(kernel, smp: int = 1) -> subprocess.CompletedProcess:
    if shutil.which(QEMU) is None:
        pytest.skip("qemu-system-aarch64 not installed")
    return subprocess.run([QEMU, "-M", "virt,gic-version=3", "-cpu", "max", "-accel", "tcg",
                           "-smp", str(smp), "-m", "128", "-nographic", "-no-reboot",
                           "-monitor", "none", "-kernel", str(kernel)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          check=False)


@pytest.mark.parametrize("kind", ["raw", "elf"])
def test_hello_on_qemu_virt(tmp_path, kind):
    elf, raw = build(tmp_path)
    p = qemu(raw if kind == "raw" else elf)
    assert p.returncode == 0 and "hello from arm64" in p.stdout


def test_cpu_on_on_qemu_virt(tmp_path):
    _, raw = build(tmp_path, "smp.S")
    p = qemu(raw, smp=2)
    assert p.returncode == 0 and "cpu1 up" in p.stdout
