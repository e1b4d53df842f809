"""god's start-up stays lean: `god run` for an x86 guest without virtio devices must not
import dataclasses (it pulls in inspect, ast, tokenize: ~8 ms of a ~50 ms boot) nor calendar
and datetime (~3 ms), shutil (argparse's default help formatter asks it for the terminal width;
with bz2 and lzma ~4 ms) nor platform (~1.5 ms). god starts as the plugin starts it: python -S, god's src on PYTHONPATH
(pytest_vmm/hypervisors/god.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import god

# The directory holding the god package this test imports: guests/god/src here, god's place in
# the lane's initramfs when god's tests run in the lane (tests/lane/test_god_suite_in_lane.py).
SRC = Path(god.__file__).resolve().parents[1]
AVOIDED = ("dataclasses", "inspect", "ast", "tokenize", "calendar", "datetime", "shutil", "platform")
# Also kept off the path of a boot with a disk and vsock (the suites' probe boots): logging
# (~3 ms with traceback, string, weakref) and pathlib (~3 ms with urllib.parse, ipaddress).
AVOIDED_WITH_VIRTIO = (*AVOIDED, "logging", "pathlib")
# What god.cli's _run_x86 imports for a boot without --disk/--vsock-uds.
RUN_PATH = ("god.cli", "god.arch", "god.vcpu.runner", "god.boot", "god.cli_run",
            "god.devices.console", "god.kvm", "god.machine")
# 64-bit flat guest: mov al, 'A'; mov dx, 0x3f8; out dx, al; mov al, 0; out 0xf4, al; hlt
GUEST = bytes.fromhex("b041" "66baf803" "ee" "b000" "e6f4" "f4")


def _imported(importtime_stderr: str) -> set[str]:
    """Module names in a `python -X importtime` report."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "imported package" not in line}


def test_run_path_modules_do_not_import_dataclasses_or_calendar():
    code = f"import sys\nfor m in {RUN_PATH!r}: __import__(m)\nprint(' '.join(sys.modules))"
    p = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": str(SRC)}, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    loaded = set(p.stdout.split())
    assert "god.machine" in loaded
    assert not loaded & set(AVOIDED), sorted(loaded & set(AVOIDED))


def _boot_imports(tmp_path: Path, *args: str) -> set[str]:
    """Modules a `god run` of GUEST (plus ``args``) imports, from `-X importtime`."""
    kernel = tmp_path / "guest.bin"
    kernel.write_bytes(GUEST)
    p = subprocess.run([sys.executable, "-S", "-X", "importtime", "-m", "god", "run", str(kernel),
                        "--flat-addr", "0x100000", "--serial", "stdio", *args],
                       capture_output=True, text=True, env={"PYTHONPATH": str(SRC)},
                       stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert p.stdout == "A" and p.returncode == 1, (p.returncode, p.stdout, p.stderr[-2000:])
    return _imported(p.stderr)


def test_god_run_boot_does_not_import_dataclasses_or_calendar(kvm, tmp_path):
    imported = _boot_imports(tmp_path)
    assert "god.machine" in imported and "god.devices.cmos" in imported
    assert not imported & set(AVOIDED), sorted(imported & set(AVOIDED))


def test_god_run_boot_with_disk_and_vsock_stays_lean(kvm, tmp_path):
    """The probe boots of the suites attach a virtio-blk disk and a vsock device."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    imported = _boot_imports(tmp_path, "--disk", str(disk), "--vsock-uds", str(tmp_path / "v.sock"),
                             "--vsock-cid", "3")
    assert "god.virtio.blk" in imported and "god.virtio.vsock" in imported
    assert not imported & set(AVOIDED_WITH_VIRTIO), sorted(imported & set(AVOIDED_WITH_VIRTIO))
