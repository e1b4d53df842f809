"""Model disks: reproducible bytes whoever builds them, GGUF check, user files untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from modeldisk import make_disk

pytestmark = pytest.mark.skipif(
    shutil.which("mke2fs") is None and not Path("/sbin/mke2fs").exists(),
    reason="e2fsprogs not installed")
MAKE = Path(__file__).resolve().parents[2] / "guests" / "zosia" / "make-model-disk.py"


def _gguf(path: Path, payload: bytes = b"\0" * 5000) -> Path:
    path.write_bytes(b"GGUF" + payload)
    return path


def test_disk_is_reproducible_and_leaves_inputs_alone(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a = _gguf(a_dir / "m.gguf")
    b = _gguf(b_dir / "m.gguf")
    os.utime(a, (1_000_000, 1_000_000))
    before = a.stat().st_mtime
    make_disk([a], tmp_path / "a.ext2", ["-n", "8"])
    time.sleep(1.1)  # a later build must not differ by its clock
    if os.geteuid() == 0:
        os.chown(b, 1234, 1234)  # nor by the model file's owner
    make_disk([b], tmp_path / "b.ext2", ["-n", "8"])
    assert (tmp_path / "a.ext2").read_bytes() == (tmp_path / "b.ext2").read_bytes()
    assert a.stat().st_mtime == before


def test_disk_holds_model_and_args(tmp_path: Path) -> None:
    m = _gguf(tmp_path / "x.gguf", b"hello")
    img = make_disk([m], tmp_path / "d.ext2", ["-n", "16"])
    debugfs = shutil.which("debugfs") or "/sbin/debugfs"
    ls = subprocess.run([debugfs, "-R", "ls -l /", str(img)], capture_output=True, text=True,
                        check=False)
    assert "x.gguf" in ls.stdout and "zosia.args" in ls.stdout
    cat = subprocess.run([debugfs, "-R", "cat /zosia.args", str(img)], capture_output=True,
                         text=True, check=False)
    assert cat.stdout == "-n\n16\n"


def test_cli_refuses_non_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    r = subprocess.run([sys.executable, str(MAKE), str(bad), "-o", str(tmp_path / "d.ext2")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "not a GGUF" in r.stderr
    r = subprocess.run([sys.executable, str(MAKE), "--force", str(bad), "-o",
                        str(tmp_path / "d.ext2")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
