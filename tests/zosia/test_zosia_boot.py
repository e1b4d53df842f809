"""Boot smoke tests of the real image under QEMU (opt-in: ZOSIA_BOOT_TEST=1).

The plugin's suites (suites/test_llm_perf.py) are the real boot tests; these exist so the
image can be checked on its own. Opt-in because the first image build compiles llama.cpp
(4-8 min) and each boot under TCG takes 5-10 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ZOSIA = Path(__file__).resolve().parents[2] / "guests" / "zosia"
pytestmark = [
    pytest.mark.skipif(os.environ.get("ZOSIA_BOOT_TEST") != "1",
                       reason="boot tests are opt-in: set ZOSIA_BOOT_TEST=1"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86_64 not installed"),
]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zosia") / "out"
    subprocess.run([sys.executable, str(ZOSIA / "build.py"), "--out", str(out)], check=True,
                   timeout=1800)
    return out


def _boot(image: Path, append: str, disk: str | None = None, timeout: int = 120) -> str:
    env = {**os.environ, "APPEND_EXTRA": append}
    if disk is not None:
        env["DISK"] = disk
    # run.sh execs QEMU, so the timeout kills QEMU itself; nothing is left running.
    r = subprocess.run([str(ZOSIA / "run.sh"), str(image)], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, check=False)
    return r.stdout.decode(errors="replace")


def test_ci_mode_finds_the_model_and_powers_off(image: Path) -> None:
    log = _boot(image, "zosia.ci=1")
    assert re.search(r"zosia: ci done model=/models/model.gguf ok=1", log), log[-2000:]
    assert "zosia: poweroff" in log


def test_perf_mode_reports_tokens_per_second(image: Path) -> None:
    log = _boot(image, "zosia.perf=1 zosia.perf.tokens=32")
    m = re.search(r"zosia: perf eval_tok_s=([0-9.]+) runs=31", log)
    assert m and float(m.group(1)) > 0, log[-2000:]


def test_no_disk_gives_stub_prompt(image: Path) -> None:
    log = _boot(image, "zosia.ci=1", disk="none")
    assert "zosia: no model: no model disk found" in log
    assert "zosia: ci done model=none ok=0" in log


def test_corrupt_model_gives_clear_error(image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 4096)
    disk = tmp_path / "bad.ext2"
    subprocess.run([sys.executable, str(ZOSIA / "make-model-disk.py"), str(bad), "-o",
                    str(disk)], check=True)
    log = _boot(image, "zosia.selftest=1", disk=str(disk))
    assert "zosia: error: selftest: generation with /models/bad.gguf failed" in log, log[-2000:]
    assert "zosia: selftest fail" in log
