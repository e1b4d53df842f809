"""The Rust crates' own unit tests (framing, JSON-RPC dispatch, tools, model disk, vsock
header, log ring), run with `cargo test` on the host target."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

WORKSPACE = Path(__file__).resolve().parents[2] / "guests" / "microkernelia"


def test_cargo_test_passes(tmp_path: Path) -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo not found on PATH")
    if not any(Path("/usr/share/cargo/registry").glob("serde_json-*")):
        pytest.skip("serde_json not in /usr/share/cargo/registry (apt-get install librust-serde-json-dev)")
    proc = subprocess.run(["nice", cargo, "test", "--offline", "--target-dir", str(WORKSPACE / "target" / "host")],
                          cwd=WORKSPACE, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    passed = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", out))
    assert passed >= 19, f"only {passed} Rust tests ran:\n{out[-2000:]}"
    assert " FAILED" not in out
