"""/init is POSIX sh that BusyBox ash must parse, and it must know every documented flag."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INIT = Path(__file__).resolve().parents[2] / "guests" / "zosia" / "rootfs" / "init"


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
def test_init_parses_with_busybox_ash() -> None:
    r = subprocess.run(["busybox", "sh", "-n", str(INIT)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash not installed")
def test_init_parses_with_a_strict_posix_shell() -> None:
    # dash rejects most bashisms that ash would tolerate.
    r = subprocess.run(["dash", "-n", str(INIT)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("flag", [
    "zosia.ci=1", "zosia.diag=1", "zosia.selftest=1", "zosia.perf=1", "zosia.perf.tokens=*",
    "zosia.llama_threads=*", "zosia.llama_batch_threads=*", "zosia.llama_args=*",
])
def test_init_handles_flag(flag: str) -> None:
    assert f"    {flag})" in INIT.read_text()


def test_init_markers_carry_timestamps() -> None:
    text = INIT.read_text()
    for marker in ("init start", "boot ok", "prompt ready", "poweroff"):
        assert f'say "{marker}' in text
    assert 'say() { echo "zosia: $* t=$(uptime_s)"; }' in text
