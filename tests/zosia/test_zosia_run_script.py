"""guests/zosia/run.sh picks the QEMU command by architecture (DRY_RUN=1: printed, not run)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "guests" / "zosia" / "run.sh"


def fake_out(tmp_path: Path, arch: str) -> Path:
    out = tmp_path / arch
    out.mkdir()
    kernel = "linux/Image" if arch == "aarch64" else "linux/vmlinux"
    append = "console=ttyAMA0 panic=-1" if arch == "aarch64" else "console=ttyS0 panic=-1"
    (out / "zosia.json").write_text(json.dumps({"arch": arch, "kernel": kernel,
                                                "initrd": "initramfs.cpio", "append": append}))
    return out


def dry_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUN), *args], env={**os.environ, "DRY_RUN": "1", "QEMU_ACCEL": "auto", **env},
                          capture_output=True, text=True, timeout=30, check=False)


def test_aarch64_is_qemu_virt_with_the_seed_knobs(tmp_path: Path) -> None:
    out = fake_out(tmp_path, "aarch64")
    r = dry_run("--arch", "aarch64", str(out), RAM_MB="2048", APPEND_EXTRA="zosia.ci=1")
    assert r.returncode == 0, r.stderr
    cmd = r.stdout
    assert cmd.startswith("qemu-system-aarch64 ") and r"virt\,gic-version=3" in cmd
    assert "-m 2048" in cmd and "zosia.ci=1" in cmd and "ttyAMA0" in cmd
    assert "tsc_early_khz" not in cmd and "pci=off" not in cmd and "-bios" not in cmd
    if os.uname().machine == "x86_64":  # no hvf/kvm for aarch64 guests here
        assert "-accel tcg" in cmd and r"-cpu max\,pauth-impdef=on" in cmd


def test_aarch64_uefi_adds_the_firmware(tmp_path: Path) -> None:
    firmware = tmp_path / "QEMU_EFI.fd"
    firmware.write_bytes(b"fd")
    r = dry_run("--arch", "aarch64", str(fake_out(tmp_path, "aarch64")), UEFI="1", UEFI_FIRMWARE=str(firmware))
    assert r.returncode == 0, r.stderr
    assert f"-bios {firmware}" in r.stdout
    r = dry_run("--arch", "aarch64", str(tmp_path / "aarch64"), UEFI="1", UEFI_FIRMWARE=str(tmp_path / "none.fd"))
    assert r.returncode == 2 and "qemu-efi-aarch64" in r.stderr


def test_x86_64_stays_the_default(tmp_path: Path) -> None:
    r = dry_run(str(fake_out(tmp_path, "x86_64")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("qemu-system-x86_64 -M microvm") and "tsc_early_khz=" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--arch", "riscv64"), "expected x86_64 or aarch64"),
    (("--bogus",), "unknown option --bogus"),
])
def test_bad_arguments_are_named(args: tuple[str, ...], message: str) -> None:
    r = dry_run(*args)
    assert r.returncode == 2 and message in r.stderr


def test_an_image_of_the_other_architecture_is_refused(tmp_path: Path) -> None:
    r = dry_run("--arch", "aarch64", str(fake_out(tmp_path, "x86_64")))
    assert r.returncode == 2 and "holds the x86_64 image, not aarch64" in r.stderr
