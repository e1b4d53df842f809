"""The HTML report as a person sees it: rendered by headless Chromium, screenshot and DOM checked."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest
import scipy.stats  # noqa: F401

from pytest_vmm.report.metrics import make, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SUITE = """
import pytest

@pytest.mark.parametrize("round", range(5))
@pytest.mark.vmm_requires("agent")
def test_tok_s(machine, round):
    machine.sendline("metric")
    machine.expect(rb"tok_s=([0-9.]+)")
    machine.record("tok_s", float(machine.console.match.group(1)))

def test_console(machine):
    machine.sendline("ping 1")
    machine.expect(rb"pong 1")

@pytest.mark.vmm_stacks("fake2")
def test_fails_on_fake2(machine):
    assert False, "deliberate"
"""
# The report's cell colours (html.STYLE): pass green, fail red.
PASS_RGB, FAIL_RGB = (0xB7, 0xE4, 0xB0), (0xF4, 0xA6, 0xA6)


def chromium(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="vmm-chromium-") as profile:
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            # Chromium's helpers (zygote, GPU/network services) share its session: end them all.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


@pytest.fixture
def report(fake_project) -> Path:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    write(pytester.path / "base.jsonl", [make("tok_s", v, None, "fake", env={}) for v in (60.0, 61.0, 59.5, 60.5, 60.2)]
          + [make("boot_ms", v, None, "fake2", env={}) for v in (9.0, 11.0, 10.0)])
    result = pytester.runpytest("--vmm=fake,fake2", "--vmm-report=out/report.html", "--vmm-ab-baseline=base.jsonl",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=1, skipped=5)
    result.stdout.fnmatch_lines(["*vmm report: out/report.html*"])
    return pytester.path / "out/report.html"


def _colour_pixels(image: np.ndarray, rgb: tuple[int, int, int]) -> int:
    pixels = (image[..., :3] * 255).round().astype(int)
    return int(np.all(np.abs(pixels - np.array(rgb)) <= 3, axis=-1).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/bootstrap.sh installs it)")
def test_report_renders_with_the_matrix_and_the_plots(report: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", report.as_uri()).stdout.decode()
    # The matrix: one row per target, green where all passed, red where one failed.
    matrix = re.search(r"<table id=\"matrix\">(.*?)</table>", dom, re.DOTALL)
    assert matrix, "no matrix table in the rendered page"
    assert re.search(r"<th>fake</th><td class=\"pass\">6 passed, 0 failed, 0 skipped", matrix.group(1))
    assert re.search(r"<th>fake2</th><td class=\"fail\">1 passed, 1 failed, 5 skipped", matrix.group(1))
    # The differential table, values side by side; the failing check links its console log.
    differential = re.search(r"<table id=\"differential\">(.*?)</table>", dom, re.DOTALL)
    assert differential and "tok_s=42.5" in differential.group(1)
    links = re.findall(r"<a class=\"console-log\" href=\"([^\"]+)\"", differential.group(1))
    assert links and all((report.parent / link).resolve().is_file() for link in links)
    # Each plot is a real PNG image of a plausible size.
    for plot in ("plot-boot", "plot-toks", "plot-ab"):
        found = re.search(rf"id=\"{plot}\"[^>]*src=\"data:image/png;base64,([^\"]+)\"", dom) or \
            re.search(rf"src=\"data:image/png;base64,([^\"]+)\"[^>]*id=\"{plot}\"", dom)
        assert found, f"no {plot} image"
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(found.group(1))), format="png")
        assert image.shape[0] > 150 and image.shape[1] > 250, (plot, image.shape)
        assert image[..., :3].std() > 0.05, f"{plot} is blank"
    # The A/B table: tok_s fell from ~60 to 42.5 on fake: a regression.
    assert re.search(r"<td>tok_s</td><td>fake</td>.*?<td class=\"regression\">regression</td>", dom)

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2200", "--hide-scrollbars", report.as_uri())
    shutil.copy(shot, os.environ.get("TMPDIR", "/tmp") + "/last-report.png") if os.environ.get("VMM_KEEP_SCREENSHOT") else None
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2200, 1280)
    # The matrix's colours are on screen (cells of at least ~40x10 px each)...
    assert _colour_pixels(image, FAIL_RGB) > 400
    assert _colour_pixels(image, PASS_RGB) > 400
    # ...and so are the plots: the sample points in matplotlib's default blue (absent from the
    # page's CSS), and below the tables a tall region that is not blank.
    assert _colour_pixels(image, (0x1F, 0x77, 0xB4)) > 60
    figures_band = image[700:1900, :900, :3]
    assert (figures_band.min(axis=-1) < 0.9).mean() > 0.01  # a blank band: 0
