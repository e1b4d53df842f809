"""A minimal ARM64 lane for god's own end-to-end tests: QEMU TCG aarch64 with
virtualization=on runs Debian's arm64 kernel (KVM built in) and an initramfs with BusyBox,
Debian's arm64 python3.11 and god's source tree; a script of god commands runs inside and
each prints "CASE <name> rc=<status>". The packages come through guests/linux/foreign.py
(apt, cached). pytest-vmm's god-arm64 hypervisor target is the lane for suites; this one
only proves god's backend on the real arm64 KVM (PLATFORM.md, "ARM64 lane")."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
GOD_SRC = REPO / "guests" / "god" / "src" / "god"
PACKAGES = ["busybox-static", "libc6", "libexpat1", "libffi8", "libpython3.11-minimal",
            "libpython3.11-stdlib", "python3.11-minimal", "zlib1g"]
PRUNE = ["usr/share/doc", "usr/share/man", "usr/share/locale", "usr/lib/python3.11/test",
         "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter",
         "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/lib2to3",
         "usr/lib/python3.11/pydoc_data"]
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
export PYTHONPATH=/god PYTHONDONTWRITEBYTECODE=1
cd /tmp
echo LANE-UP
sh /payload/run.sh
echo LANE-DONE
poweroff -f
"""
CASE_RE = re.compile(r"^CASE (\S+) rc=(\d+)", re.MULTILINE)


def _foreign():
    sys.path.insert(0, str(REPO / "guests" / "linux"))
    try:
        import foreign  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return foreign


def packages() -> tuple[Path, list[Path]]:
    """(arm64 vmlinuz, unpacked package roots); skip if apt cannot provide them."""
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 not installed")
    foreign = _foreign()
    try:
        roots = list(foreign.fetch_debs(PACKAGES).values())
        kernel = foreign.arm64_kernel()
    except Exception as e:  # noqa: BLE001 - no network and no cache: no lane here
        pytest.skip(f"Debian arm64 packages unavailable: {e}")
    return Path(kernel.vmlinuz), roots


def _cpio(root: Path, out: Path) -> None:
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    data = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                          capture_output=True, check=True).stdout
    out.write_bytes(gzip.compress(data, compresslevel=1))


def build_initramfs(tmp: Path, roots: list[Path], payload: dict[str, Path | str]) -> Path:
    root = tmp / "root"
    for r in roots:
        shutil.copytree(r, root, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("package.json"))
    for p in PRUNE:
        shutil.rmtree(root / p, ignore_errors=True)
    for d in ("proc", "sys", "dev", "tmp", "payload"):
        (root / d).mkdir(exist_ok=True)
    (root / "bin" / "sh").unlink(missing_ok=True)
    os.symlink("busybox", root / "bin" / "sh")
    shutil.copytree(GOD_SRC, root / "god" / "god",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name, src in payload.items():
        dst = root / "payload" / name
        if isinstance(src, Path):
            shutil.copy(src, dst)
        else:
            dst.write_text(src)
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    out = tmp / "lane.cpio.gz"
    _cpio(root, out)
    shutil.rmtree(root)
    return out


def boot(vmlinuz: Path, initrd: Path, timeout: float) -> str:
    cmd = ["qemu-system-aarch64", "-M", "virt,virtualization=on,gic-version=3", "-cpu", "max",
           "-accel", "tcg", "-m", "1024", "-smp", "1", "-nographic", "-no-reboot",
           "-monitor", "none", "-kernel", str(vmlinuz), "-initrd", str(initrd),
           "-append", "console=ttyAMA0 panic=-1 quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, check=False)
    return p.stdout + p.stderr


def cases(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in CASE_RE.finditer(output)}
