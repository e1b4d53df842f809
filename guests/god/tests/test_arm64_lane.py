"""god's arm64 backend end to end on the real arm64 KVM, inside a QEMU TCG aarch64 lane
(arm64lane.py): one lane boot runs every case, each check reads its own.

Run: .venv/bin/python -m pytest guests/god/tests/test_arm64_lane.py  (about 2 minutes:
the lane's own boot is ~17 s, Debian's Linux on god inside it ~40 s)."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from arm64build import build
from arm64lane import boot, build_initramfs, packages

DISK_MARK = b"GOD-ARM64-DISK-MARK"
INNER_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
echo GOD-ARM64-INITRAMFS-MARKER
/bin/busybox insmod /virtio_mmio.ko && /bin/busybox insmod /virtio_blk.ko
/bin/busybox sleep 1
echo "disk: $(/bin/busybox dd if=/dev/vda bs=19 count=1 2>/dev/null)"
echo "year: $(/bin/busybox date -u +%Y)"
echo "cpus: $(/bin/busybox grep -c ^processor /proc/cpuinfo)"
echo READY-FOR-INPUT
read -r line
echo "got: $line"
/bin/busybox poweroff -f
"""
RUN = r"""
one() { name=$1; shift; echo "CASE-BEGIN $name"; "$@" </dev/null; echo "CASE $name rc=$?"; }
G="python3.11 -S -m god"
one kvm-info $G kvm info --json
one hello-raw $G run /payload/hello.bin
one hello-elf-2cpus $G run /payload/hello.elf --cpus 2
one reset2 $G run /payload/reset2.bin
one fault $G run /payload/fault.bin
one cpu-on $G run /payload/smp.bin --cpus 2
# Linux: its console input comes through god's PL011 RX interrupt, sent once the guest asks
mkfifo /tmp/in
echo "CASE-BEGIN linux"
( $G run /payload/vmlinuz --initrd /payload/inner.cpio.gz --mem 256 --cpus 2 --disk /payload/disk.img,ro \
    --append "console=ttyAMA0 earlycon=pl011,0x09000000 panic=-1" </tmp/in >/tmp/linux.out 2>&1
  echo $? >/tmp/linux.rc ) &
exec 3>/tmp/in
n=0; while ! grep -q READY-FOR-INPUT /tmp/linux.out && [ $n -lt 300 ]; do sleep 1; n=$((n+1)); done
echo "ping-from-host" >&3
wait; exec 3>&-
cat /tmp/linux.out; echo "CASE linux rc=$(cat /tmp/linux.rc)"
"""


def _inner_initramfs(tmp, roots, vmlinuz):
    from arm64lane import _cpio

    root = tmp / "inner"
    (root / "bin").mkdir(parents=True)
    for d in ("proc", "dev"):
        (root / d).mkdir()
    busybox = next(r / "bin" / "busybox" for r in roots if (r / "bin" / "busybox").exists())
    shutil.copy(busybox, root / "bin" / "busybox")
    moddir = next((vmlinuz.parent.parent / "lib" / "modules").iterdir())
    for rel in ("kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/block/virtio_blk.ko"):
        shutil.copy(moddir / rel, root)
    (root / "init").write_text(INNER_INIT)
    (root / "init").chmod(0o755)
    out = tmp / "inner.cpio.gz"
    _cpio(root, out)
    return out


@pytest.fixture(scope="module")
def lane(tmp_path_factory) -> dict[str, tuple[int, str]]:
    vmlinuz, roots = packages()
    tmp = tmp_path_factory.mktemp("lane")
    elf, raw = build(tmp)
    _, reset2 = build(tmp, variant="RESET2", status=21)
    _, fault = build(tmp, variant="FAULT")
    _, smp = build(tmp, "smp.S")
    disk = tmp / "disk.img"
    disk.write_bytes(DISK_MARK.ljust(1 << 20, b"\0"))
    payload = {"hello.bin": raw, "hello.elf": elf, "reset2.bin": reset2, "fault.bin": fault,
               "smp.bin": smp, "vmlinuz": vmlinuz, "disk.img": disk,
               "inner.cpio.gz": _inner_initramfs(tmp, roots, vmlinuz), "run.sh": RUN}
    out = boot(vmlinuz, build_initramfs(tmp, roots, payload), timeout=600)
    assert "LANE-DONE" in out, out[-3000:]
    results: dict = {"_out": (0, out)}
    for m in re.finditer(r"CASE-BEGIN (\S+)\n(.*?)CASE \1 rc=(\d+)", out, re.DOTALL):
        results[m.group(1)] = (int(m.group(3)), m.group(2))
    return results


def get(lane, name: str) -> tuple[int, str]:
    if name not in lane:
        pytest.fail(f"case {name} did not run; lane output:\n{lane['_out'][1][-3000:]}")
    return lane[name]


def test_kvm_info_reports_arm64(lane):
    rc, out = get(lane, "kvm-info")
    assert rc == 0 and '"arch": "aarch64"' in out
    assert '"KVM_DEV_TYPE_ARM_VGIC_V3": true' in out and '"KVM_CAP_ARM_PSCI_0_2"' in out


@pytest.mark.parametrize("case", ["hello-raw", "hello-elf-2cpus"])
def test_hello_and_system_off(lane, case):
    """PL011 output, then PSCI SYSTEM_OFF: status 0 (a clean stop)."""
    rc, out = get(lane, case)
    assert rc == 0 and "hello from arm64" in out and "god:" not in out


def test_system_reset2_vendor_status(lane):
    rc, out = get(lane, "reset2")
    assert rc == (21 << 1) | 1 and "hello from arm64" in out, out


def test_unmapped_store_is_a_named_fault(lane):
    rc, out = get(lane, "fault")
    assert rc == 10, out
    assert "god: vCPU 0: guest write of 4 bytes (0x0) to unmapped address 0xb000000" in out


def test_psci_cpu_on(lane):
    rc, out = get(lane, "cpu-on")
    assert rc == 0 and "cpu1 up" in out, out


def test_debian_linux_boots_to_initramfs_with_virtio_blk(lane):
    rc, out = get(lane, "linux")
    assert "Machine model: god arm64 virt" in out
    assert "ttyAMA0 at MMIO 0x9000000" in out       # the PL011 driver took god's UART
    assert "GOD-ARM64-INITRAMFS-MARKER" in out
    assert f"disk: {DISK_MARK.decode()}" in out      # virtio-blk found through the DT
    assert "got: ping-from-host" in out              # console input: PL011 RX on SPI 1
    assert "cpus: 2" in out                          # the secondary came up by PSCI CPU_ON
    assert "rtc-pl031" in out and f"year: {time.gmtime().tm_year}" in out  # wall clock
    assert rc == 0                                     # poweroff = PSCI SYSTEM_OFF
