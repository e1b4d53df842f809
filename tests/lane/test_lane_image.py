"""The lane image without booting it: reproducible, and its minimal Python runs god.

The Python subset in the lane is computed from god's imports (guests/lane/pyset.py); these
tests check that it is *sufficient*: the interpreter is pointed at the image's own stdlib
(PYTHONHOME) so nothing can come from the host's, and god imports every module and, where
this host has KVM, boots the probe kernel to its agent banner.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors import lane

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "guests" / "lane" / "build.py"


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """path -> (mode, data) of a (concatenation of) gzip'd cpio newc archive(s)."""
    raw = gzip.decompress(data)  # concatenated gzip members decompress as one stream
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while pos + 110 <= len(raw):
        if raw[pos:pos + 6] != b"070701":
            break
        f = [int(raw[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = raw[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = raw[pos:pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            break
        out[name] = (mode, body)
    return out


@pytest.fixture(scope="module")
def image(lane_available: None) -> Path:
    return lane.build_lane().path


def test_build_is_reproducible(lane_available: None, tmp_path: Path) -> None:
    digests = []
    for n in (1, 2):
        out = tmp_path / f"b{n}"
        subprocess.run([sys.executable, str(BUILD), "--out", str(out), "--no-tests"], check=True,
                       capture_output=True, timeout=900)
        digests.append(hashlib.sha256((out / "lane.cpio.gz").read_bytes()).hexdigest())
    assert digests[0] == digests[1], "two builds of the same inputs gave different lane.cpio.gz"


def test_image_holds_the_lane(image: Path) -> None:
    files = read_newc((image / "lane.cpio.gz").read_bytes())
    for path in ("init", "bin/busybox", "bin/sh", "dev/console", "usr/bin/python3.11",
                 "lib64/ld-linux-x86-64.so.2", "lane/god/god/__main__.py",
                 "usr/lib/python3.11/os.py", "usr/lib/python3.11/runpy.py"):
        assert path in files, f"{path} missing from the lane image"
    for mod in ("irqbypass", "kvm", "ccp", "kvm_amd"):
        assert f"lib/modules/lane/{mod}.ko" in files, f"module {mod} missing"
    dynload = sorted(p for p in files if "/lib-dynload/" in p)
    assert any("_ctypes" in p for p in dynload) and any("mmap" in p for p in dynload), dynload
    size = sum(len(body) for _m, body in files.values())
    assert size < 40e6, f"the lane image unpacks to {size / 1e6:.1f} MB; it should stay minimal"


def test_booted_archive_is_the_recorded_one(image: Path) -> None:
    """Boots use the uncompressed lane.cpio (no inflate under TCG); it must be the very archive
    lane.cpio.gz records, and the per-boot payload is a newc archive Linux appends to it."""
    assert gzip.decompress((image / "lane.cpio.gz").read_bytes()) == (image / lane.BASE_INITRD).read_bytes()
    payload = lane.payload_initramfs({}, "true\n")
    assert payload[:6] == b"070701", "the per-boot payload is not an uncompressed newc archive"


def test_each_archive_of_the_initrd_starts_aligned(tmp_path: Path) -> None:
    """Linux unpacks an uncompressed newc archive only at a 4-byte-aligned offset (init/
    initramfs.c): after a gzip member of any length, the next archive must be padded to one."""
    gz = gzip.compress(b"070701" + b"x" * 5, mtime=0)
    gz += b"\1" if len(gz) % 4 == 0 else b""  # a member whose length is not a multiple of 4
    assert len(gz) % 4
    raw = lane.payload_initramfs({}, "true\n")
    out = lane.concat(tmp_path / "initrd", [raw, gz, raw]).read_bytes()
    second = len(raw) + len(gz) + (-len(gz) % 4)
    assert out[:len(raw)] == raw and out[len(raw):len(raw) + len(gz)] == gz
    assert out[len(raw) + len(gz):second] == bytes(-len(gz) % 4), "padding must be zeros (skipped)"
    assert out[second:second + 6] == b"070701" and second % 4 == 0


def _extract_python(image: Path, root: Path) -> None:
    for name, (mode, body) in read_newc((image / "lane.cpio.gz").read_bytes()).items():
        if name.startswith(("usr/lib/python3.11/", "lane/god/")) and (mode & 0o170000) == 0o100000:
            dest = root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(body)


def _minimal_python(root: Path) -> tuple[list[str], dict[str, str]]:
    env = {"PYTHONHOME": str(root / "usr"), "PYTHONPATH": str(root / "lane" / "god"),
           "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    return [lane.GUEST_PYTHON, "-S"], env


def test_minimal_python_imports_all_of_god(image: Path, tmp_path: Path) -> None:
    _extract_python(image, tmp_path)
    py, env = _minimal_python(tmp_path)
    script = (
        "import os, sys, god, runpy, importlib\n"
        "base = os.path.dirname(os.path.dirname(god.__file__))\n"
        "names = sorted(os.path.relpath(os.path.join(d, f), base)[:-3].replace('/', '.').removesuffix('.__init__')\n"
        "               for d, _, fs in os.walk(os.path.dirname(god.__file__)) for f in fs if f.endswith('.py'))\n"
        "for n in names:\n    if n != 'god.__main__':  # runs the CLI\n        importlib.import_module(n)\n"
        "import god.cli\n"
        "try:\n    god.cli.main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "bad = sorted(n for n, m in sys.modules.items() if getattr(m, '__file__', None)"
        f" and not m.__file__.startswith({str(tmp_path)!r}))\n"
        "print('OUTSIDE', bad)\nprint('IMPORTED', len(names))\n")
    res = subprocess.run([*py, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, f"god does not import in the lane's Python:\n{res.stderr[-3000:]}"
    assert "OUTSIDE []" in res.stdout, res.stdout[-2000:]


def test_minimal_python_boots_the_probe_on_this_hosts_kvm(image: Path, tmp_path: Path) -> None:
    host = HostInfo.detect()
    if not host.kvm_usable:
        pytest.skip(f"no usable KVM on this host ({host.kvm_problem}); the lane boot tests cover it")
    _extract_python(image, tmp_path / "root")
    subprocess.run([sys.executable, str(REPO / "guests" / "probe" / "build.py"), "--out", str(tmp_path / "probe")],
                   check=True, capture_output=True, timeout=600)
    py, env = _minimal_python(tmp_path / "root")
    proc = subprocess.Popen([*py, "-u", "-m", "god", "run", str(tmp_path / "probe" / "probe.elf"),
                             "--mem", "64", "--cpus", "2", "--serial", "stdio"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    out = b""
    deadline = time.monotonic() + 60
    try:
        os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
        while time.monotonic() < deadline and not re.search(rb"@@ready proto=1", out) and proc.poll() is None:
            out += proc.stdout.read() or b""  # type: ignore[union-attr]
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
    assert b"@@ready proto=1" in out, f"god (lane Python) did not boot the probe: {out[-1000:]!r}\n{err[-2000:]}"
    assert "ModuleNotFoundError" not in err, err[-2000:]


def test_lane_is_listed_with_its_reason(lane_available: None) -> None:
    host = HostInfo.detect()
    assert lane.hypervisor.name == "god-svm"
    assert lane.hypervisor.problem(host) == ""
    assert lane.hypervisor.pick_accel("auto", host, None) == ("kvm" if host.kvm_flavour == "svm" and host.kvm_usable else "tcg")
    if host.kvm_flavour != "svm":
        assert "hardware AMD SVM" in lane.hypervisor.accel_problem("kvm", host)


def test_a_lane_that_cannot_run_its_script_fails_fast(lane_available: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken initrd (here a payload that is no archive) must end the run with an error
    naming the kernel's complaint, not wait at the lane's shell until the timeout."""
    import time

    monkeypatch.setattr(lane, "payload_initramfs", lambda files, script: b"\x01not an archive")
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="did not run its script: (Initramfs unpacking failed|lane: no /lane/run)"):
        lane.run_in_lane("true\n", {}, tmp_path / "console.log", timeout_s=300)
    assert time.monotonic() - began < 120, "the broken lane was noticed only near the timeout"
