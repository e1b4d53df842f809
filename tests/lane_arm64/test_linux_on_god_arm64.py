"""Linux on arm64 god, in the ARM64 lane, through the god-arm64 hypervisor's own launch path.

Debian's arm64 kernel (the gzip'd Image of linux-image-6.1.0-N-arm64) and a BusyBox
initramfs boot on god's aarch64 backend over the real arm64 KVM inside the lane; the
initramfs prints a marker, loads virtio_mmio + virtio_blk, reads the read-only virtio-blk
disk god described in its device tree (/dev/vda, Linux's virtio-mmio driver binds the
``virtio,mmio`` nodes: Documentation/devicetree/bindings/virtio/mmio.yaml) and powers off
(PSCI SYSTEM_OFF: god status 0). Measured here: ~40-90 s for the guest on a loaded 2-core
host, after the lane's own boot.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors import lane_arm64, lane_arm64_hv
from pytest_vmm.stack import BootSpec, Disk

REPO = Path(__file__).resolve().parents[2]
MARKER = b"@@linux-on-god-arm64 initramfs reached"
DISK_TEXT = b"god-arm64-virtio-blk-via-devicetree"
DISK_PREFIX = b"@@disk says: "
TIMEOUT_S = 900.0  # TCG, nested KVM, a shared 2-core host: generous

pytestmark = pytest.mark.skipif(bool(problem := lane_arm64_hv.hypervisor.problem(HostInfo.detect())),
                                reason=problem or "")

INIT = b"""#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "@@linux-on-god-arm64 initramfs reached"
insmod /virtio_mmio.ko; insmod /virtio_blk.ko
n=0; while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.2; n=$((n+1)); done
echo "@@disk says: $(head -c 64 /dev/vda | tr -d '\\000')"
poweroff -f
"""


def _foreign():
    sys.path.append(str(REPO / "guests" / "linux"))
    import foreign  # guests/linux: arm64 packages

    return foreign


def inner_initramfs(tmp: Path) -> Path:
    sys.path.insert(0, str(REPO / "guests" / "lane"))
    from initramfs import Tree  # the one cpio writer

    foreign = _foreign()
    kernel = foreign.arm64_kernel()
    busybox = foreign.fetch_debs(["busybox-static"])["busybox-static"] / "bin" / "busybox"
    tree = Tree()
    for d in ("proc", "sys", "dev", "tmp"):
        tree.dir(d)
    tree.copy("bin/busybox", busybox)
    tree.symlink("bin/sh", "busybox")
    tree.file("init", INIT, 0o755)
    for name in ("virtio_mmio", "virtio_blk"):
        ko = next((kernel.root / "lib" / "modules").rglob(f"{name}.ko"))
        tree.copy(f"{name}.ko", ko)
    out = tmp / "inner.cpio.gz"
    out.write_bytes(tree.gz())
    return out


@pytest.fixture(scope="module")
def lane_session():
    yield
    assert lane_arm64.stop_shared_lane() == []


def test_linux_boots_on_arm64_god_with_a_virtio_blk_disk_from_the_dt(lane_session, tmp_path):
    kernel = _foreign().arm64_kernel().vmlinuz
    disk = tmp_path / "disk.img"
    disk.write_bytes(DISK_TEXT + b"\0" * (1024 * 1024 - len(DISK_TEXT)))
    spec = BootSpec(kernel=Path(kernel), initrd=inner_initramfs(tmp_path), mem_mib=256,
                    cmdline="console=ttyAMA0 panic=-1", disks=[Disk(disk, read_only=True)])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    host = HostInfo.detect()
    t0 = time.monotonic()
    plan = lane_arm64_hv.hypervisor.launch_plan(spec, "tcg", run_dir, host)
    lane_up = time.monotonic() - t0
    proc = subprocess.Popen(plan.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    console = bytearray()
    t1 = time.monotonic()
    marker_at = None
    try:
        while time.monotonic() - t1 < TIMEOUT_S:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                console += chunk
                if marker_at is None and MARKER in console:
                    marker_at = time.monotonic() - t1
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = console.decode(errors="replace")
    print(f"lane up in {lane_up:.1f} s; initramfs marker {marker_at} s after god's start; "
          f"whole guest run {time.monotonic() - t1:.1f} s")
    assert marker_at is not None, text[-3000:]
    assert (DISK_PREFIX + DISK_TEXT) in console, text[-3000:]
    assert status == 0, text[-3000:]  # PSCI SYSTEM_OFF: a clean stop
