"""The SVM lane's own tests: one shared lane boot runs Linux on god and god's test suite.

``lane_boot`` boots the lane once per session (only the parts the selected tests need) and
hands each test its slice of the console: god's inner test results come back as a JUnit
document (tests/lane/test_god_suite_in_lane.py turns each into its own pytest result), the
Linux-on-god run as console lines with timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors import lane
from tests.lane import irq_reentry

REPO = Path(__file__).resolve().parents[2]
GOD_DIR = REPO / "guests" / "god"
LINUX_MARKER = "@@linux-on-god initramfs reached"
# What Linux on god prints from the virtio-blk disk it found through ACPI and mounted
DISK_MARKER_PREFIX = "@@linux-on-god disk says: "
DISK_MARKER_FILE = "marker.txt"
DISK_MARKER = "god-virtio-blk-via-acpi"
# Modules (with their dependencies) for a virtio-mmio disk with ext2 on it
LINUX_DISK_MODULES = ("virtio_mmio", "virtio_blk", "crc32c_generic", "ext4")
LANE_LINUX_IRQCHIP = os.environ.get("LANE_LINUX_IRQCHIP", "split")
# Generous: TCG on a shared 2-core machine; the lane reports its own timings.
# Linux takes 13-16 s of lane time with one host core busy; the known deadlock
# (tests/lane/irq_reentry.py) costs the whole timeout, so it is not larger than it must be.
LINUX_TIMEOUT_S = 150
GOD_SUITE_TIMEOUT_S = 900
# god's own tests wait this many times longer in the lane (guests/god/tests/waits.py)
LANE_TIME_SCALE = 4


def lane_problem() -> str:
    return lane.hypervisor.problem(HostInfo.detect())


@pytest.fixture(scope="session")
def lane_available() -> None:
    problem = lane_problem()
    if problem:
        pytest.skip(f"the SVM lane cannot run here: {problem}")


# god's tests for the SVM lane: all but the arm64 backend's, which need no KVM of this
# architecture (they run on the host) and host tools (dtc, qemu-aarch64-static) the lane lacks.
LANE_GOD_TEST_ARGS = ("--ignore-glob=tests/test_arm64_*", "tests")


def inner_god_tests() -> list[str]:
    """Node ids of god's test suite, collected on the host (same files the lane ships)."""
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          *LANE_GOD_TEST_ARGS], cwd=GOD_DIR, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    return [line.strip() for line in res.stdout.splitlines() if "::" in line and not line.startswith(" ")]


def linux_initramfs(kernel_dir: Path) -> bytes:
    """BusyBox initramfs for Linux on god: prints the marker, loads the virtio and ext4
    modules, mounts the virtio-blk disk god describes only in ACPI (no virtio_mmio.device=
    words) and prints its marker file, then leaves through god's exit port."""
    import json

    tree = lane.initramfs_module().Tree()
    tree.copy("bin/busybox", Path("/bin/busybox"))
    for applet in ("sh", "mount", "cat", "dd", "printf", "echo", "insmod", "ls", "sleep", "grep"):
        tree.symlink(f"bin/{applet}", "busybox")
    for d in ("proc", "dev", "sys", "mnt", "lib", "lib/modules"):
        tree.dir(d)
    tree.chardev("dev/console", 5, 1)
    order = json.loads((kernel_dir / "kernel.json").read_text())["load_order"]
    for name in order:
        tree.copy(f"lib/modules/{name}.ko", kernel_dir / "modules" / f"{name}.ko")
    tree.file("init", (
        "#!/bin/sh\n"
        "mount -t proc proc /proc\n"
        "mount -t sysfs sys /sys\n"
        "mount -t devtmpfs dev /dev\n"
        "read up _ </proc/uptime\n"
        f'echo "{LINUX_MARKER} uptime=$up release=$(cat /proc/sys/kernel/osrelease)"\n'
        f"for m in {' '.join(order)}; do insmod /lib/modules/$m.ko || echo \"insmod $m failed\"; done\n"
        "i=0; while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n"
        'echo "@@linux-on-god acpi devices: $(ls /sys/bus/acpi/devices | grep LNRO)"\n'
        'echo "@@linux-on-god cmdline: $(cat /proc/cmdline)"\n'
        "if mount -t ext2 -o ro /dev/vda /mnt; then\n"
        f'  echo "{DISK_MARKER_PREFIX}$(cat /mnt/{DISK_MARKER_FILE})"\n'
        "else echo \"@@linux-on-god: mounting /dev/vda failed\"; ls /dev; fi\n"
        # god's exit port (isa-debug-exit semantics): value 0 -> god exits with status 1
        "printf '\\000' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null\n"
        'echo "linux-on-god: the exit port did not stop god"\n'
    ).encode(), 0o755)
    return tree.gz()


def debian_vmlinuz(out: Path) -> Path:
    """Debian's kernel from guests/linux (the one unpacker), with LINUX_DISK_MODULES."""
    mods = [a for m in LINUX_DISK_MODULES for a in ("--module", m)]
    subprocess.run([sys.executable, str(REPO / "guests" / "linux" / "build.py"), "--out", str(out), "--only",
                    *mods], check=True, capture_output=True, timeout=1800)
    return out / "vmlinuz"


def marker_disk(out: Path) -> Path:
    """A small ext2 image holding DISK_MARKER_FILE (mke2fs -d: no root, no loop device)."""
    stage = out.with_suffix(".d")
    stage.mkdir(parents=True, exist_ok=True)
    (stage / DISK_MARKER_FILE).write_text(DISK_MARKER + "\n")
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-d", str(stage), str(out), "2M"],
                   check=True, capture_output=True, timeout=60,
                   env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/sbin:/usr/sbin"})
    return out


@dataclass
class LaneBoot:
    result: lane.LaneResult
    parts: list[str]
    junit: bytes | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _wanted_parts(session: pytest.Session) -> list[str]:
    parts = []
    names = {item.path.name for item in session.items}
    if "test_linux_on_god.py" in names:
        parts.append("linux")
    if "test_god_suite_in_lane.py" in names:
        parts.append("godtests")
    return parts


@pytest.fixture(scope="session")
def lane_boot(request: pytest.FixtureRequest, lane_available: None,
              tmp_path_factory: pytest.TempPathFactory) -> LaneBoot:
    """One lane boot for the whole session, running the parts the selected tests need."""
    parts = _wanted_parts(request.session)
    work = tmp_path_factory.mktemp("lane")
    host = HostInfo.detect()
    files: dict[str, Path] = {}
    script = [lane.EMIT_SECTION, 'up() { read u _ </proc/uptime; echo "$u"; }\n']
    if "linux" in parts:
        files["lane/guest/vmlinuz"] = debian_vmlinuz(work / "kernel")
        (work / "linux-initramfs.cpio.gz").write_bytes(linux_initramfs(work / "kernel"))
        files["lane/guest/linux-initramfs.cpio.gz"] = work / "linux-initramfs.cpio.gz"
        files["lane/guest/disk.ext2"] = marker_disk(work / "disk.ext2")
        # LANE_LINUX_APPEND adds words (e.g. loglevel=8 to see where a boot stops)
        # nokaslr: the kernel's addresses are the lane kernel's (the same vmlinux), so god's
        # stop line reads against the lane's /proc/kallsyms (tests/lane/irq_reentry.py).
        append = ("console=ttyS0 tsc=reliable panic=-1 loglevel=4 nokaslr "
                  f"{os.environ.get('LANE_LINUX_APPEND', '')}").rstrip()
        if host.cpu_khz:
            append += f" tsc_early_khz={host.cpu_khz}"
        script.append(
            'echo "@@lane-part linux start=$(up)"\n'
            f"timeout {LINUX_TIMEOUT_S} python3 -u -m god run /lane/guest/vmlinuz"
            " --initrd /lane/guest/linux-initramfs.cpio.gz --mem 256 --cpus 1 --serial stdio"
            # god's own PIC/IOAPIC/PIT (issue 13); LANE_LINUX_IRQCHIP=kernel compares with
            # kvm_amd's. --stats prints god's PIT figures after the exit.
            f" --irqchip {LANE_LINUX_IRQCHIP} --stats"
            # the disk is announced only by god's ACPI DSDT (LNRO0005), not on the command line
            " --disk /lane/guest/disk.ext2,ro --virtio-cmdline off"
            f" --append '{append}' </dev/null\n"
            "linux_status=$?\n"
            'echo "@@lane-part-end linux status=$linux_status end=$(up)"\n'
            # a failed part: the symbols that tell the lane's known deadlock from other stops
            f'[ "$linux_status" = 1 ] || {irq_reentry.SYMBOL_SCRIPT}\n')
    if "godtests" in parts:
        script.append(
            'echo "@@lane-part godtests start=$(up)"\n'
            "cd /lane/godtests\n"
            "LANE_REPLAY=replay:/lane/godtests/prebuilt.json PYTHONPATH=/lane/god:/lane/site "
            f"GOD_TEST_TIME_SCALE={LANE_TIME_SCALE:g} "
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "
            f"timeout {GOD_SUITE_TIMEOUT_S} python3 -m pytest -p lane_replay -p no:cacheprovider -q -rfEs --color=no "
            "--continue-on-collection-errors "
            f"--junitxml=/tmp/junit.xml {' '.join(LANE_GOD_TEST_ARGS)} </dev/null\n"
            'echo "@@lane-part-end godtests status=$? end=$(up)"\n'
            "emit junit /tmp/junit.xml\n")
    script.append("exit 0\n")
    log = work / "lane-console.log"
    result = lane.run_in_lane("".join(script), files, log, tests_layer="godtests" in parts,
                              mem_mib=1024, cpus=2, timeout_s=LINUX_TIMEOUT_S + GOD_SUITE_TIMEOUT_S + 300,
                              host=host)
    boot = LaneBoot(result=result, parts=parts, junit=result.section("junit"))
    boot.timings = part_timings(result.console)
    _SUMMARY.append(f"lane: one boot ran {', '.join(parts) or 'nothing'} in {result.seconds:.1f} s wall, "
                    f"QEMU status {result.status}; lane uptime figures (s): {boot.timings}; console: {log}")
    return boot


_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    for line in _SUMMARY:
        terminalreporter.write_line(line)


def part_timings(console: bytes) -> dict[str, float]:
    """Lane-uptime figures printed by /init and the lane script (seconds)."""
    import re

    out: dict[str, float] = {}
    m = re.search(rb"lane: /init at ([\d.]+) s, /dev/kvm \(kvm_amd\) ready at ([\d.]+) s", console)
    if m:
        out["init_s"], out["kvm_ready_s"] = float(m.group(1)), float(m.group(2))
    for name, start in re.findall(rb"@@lane-part (\w+) start=([\d.]+)", console):
        end = re.search(rb"@@lane-part-end " + name + rb" status=(\d+) end=([\d.]+)", console)
        if end:
            out[f"{name.decode()}_s"] = round(float(end.group(2)) - float(start), 2)
            out[f"{name.decode()}_status"] = int(end.group(1))
    return out
