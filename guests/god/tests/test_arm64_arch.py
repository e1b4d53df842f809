"""Architecture selection (god.arch) and the CLI's aarch64 dry run, which needs no KVM."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from arm64build import build
from god import cli
from god.arch import backend, host_arch, normalize

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("name,arch", [("x86_64", "x86_64"), ("AMD64", "x86_64"),
                                       ("aarch64", "aarch64"), ("arm64", "aarch64")])
def test_normalize(name, arch):
    assert normalize(name) == arch and host_arch(name) == arch


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="'riscv64'.*x86_64, aarch64"):
        normalize("riscv64")


def test_backends_import_without_kvm():
    assert backend("x86_64").NAME == "x86_64" and backend("arm64").NAME == "aarch64"


def god(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-S", "-m", "god", *args], capture_output=True,
                          text=True, env={"PYTHONPATH": str(SRC)}, timeout=60,
                          check=False)


def test_foreign_arch_needs_dry_run(tmp_path):
    other = "x86_64" if host_arch() == "aarch64" else "aarch64"
    p = god("run", "--arch", other, str(tmp_path / "k"))
    assert p.returncode == 2 and p.stderr.startswith("god: error: --arch") and "--dry-run" in p.stderr


def test_x86_options_refused_on_aarch64(tmp_path):
    p = god("run", "--arch", "aarch64", "--dry-run", "--flat-addr", "0x1000", str(tmp_path / "k"))
    assert p.returncode == 2 and "--flat-addr" in p.stderr and "x86_64 options" in p.stderr
    p = god("run", "--dry-run", "--arch", "x86_64", str(tmp_path / "k"))
    assert p.returncode == 2 and "aarch64" in p.stderr


def test_dry_run_dump_dtb(tmp_path):
    if shutil.which("dtc") is None:
        pytest.skip("dtc not installed")
    _, raw = build(tmp_path)
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"\x07" * 5000)
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(4096))
    dtb = tmp_path / "out.dtb"
    p = god("run", "--arch", "aarch64", "--dry-run", "--dump-dtb", str(dtb), "--mem", "64",
            "--cpus", "3", "--initrd", str(initrd), "--disk", str(disk), "--append", "quiet",
            str(raw))
    assert p.returncode == 0, p.stderr
    assert "format raw load 0x40080000" in p.stdout and "initrd 0x40400000+0x1388" in p.stdout
    dts = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(dtb)], capture_output=True,
                         text=True, check=True).stdout
    assert dts.count('enable-method = "psci";') == 3
    assert "virtio_mmio@a000000" in dts and 'bootargs = "quiet";' in dts
    assert "linux,initrd-start = <0x00 0x40400000>;" in dts
    assert "linux,initrd-end = <0x00 0x40401388>;" in dts


def test_dry_run_bad_kernel_is_a_god_error(tmp_path):
    k = tmp_path / "k.gz"
    k.write_bytes(b"\x1f\x8bnot really")
    p = god("run", "--arch", "aarch64", "--dry-run", str(k))
    assert p.returncode == 4 and p.stderr.startswith("god: error:") and "gzip" in p.stderr


def test_kvm_info_reports_the_architecture(kvm, capsys):
    assert cli.main(["kvm", "info"]) in (0, 4)
    assert f"architecture:    {host_arch()}" in capsys.readouterr().out
