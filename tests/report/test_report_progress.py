"""Build progress: phase lines and cmake's percentage from the build log, in place on a terminal,
a line per phase in a CI log."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from pytest_vmm.artifacts import ArtifactCache, BuildError
from pytest_vmm.progress import PHASE_PREFIX, Display
from pytest_vmm.stack import ImageRecipe

BUILD = f"""
import pathlib, sys, time
out = pathlib.Path(sys.argv[1])
print("{PHASE_PREFIX}kernel: download linux-image", flush=True)
time.sleep(0.7)
print("{PHASE_PREFIX}llama.cpp sse42: compile", flush=True)
for pct in (3, 3, 50, 100):
    # cmake writes "[ NN%] Building ..." lines; ninja-style \\r endings too.
    sys.stdout.write(f"[{{pct:3d}}%] Building CXX object ggml.o\\r")
    sys.stdout.flush()
    time.sleep(0.7)
if len(sys.argv) > 2:
    sys.exit(3)
(out / "kernel.elf").write_text("k")
(out / "image.json").write_text('{{"kernel": "kernel.elf"}}')
"""


def recipe(tmp_path: Path, *extra: str) -> ImageRecipe:
    src = tmp_path / "guest"
    src.mkdir(exist_ok=True)
    (src / "build.py").write_text(BUILD)
    return ImageRecipe(name="demo", sources=src, command=(sys.executable, str(src / "build.py"), "{out}", *extra))


def test_phases_and_percentages_come_from_the_log(tmp_path: Path) -> None:
    lines: list[str] = []
    status: list[str] = []
    ArtifactCache(tmp_path / "cache", lines.append, status.append).build(recipe(tmp_path))
    assert [line.split(" (")[0] for line in lines[:3]] == [
        "pytest-vmm: building demo", "pytest-vmm: demo: kernel: download linux-image",
        "pytest-vmm: demo: llama.cpp sse42: compile"]
    assert lines[3].startswith("pytest-vmm: built demo in ") and len(lines) == 4
    percents = list(dict.fromkeys(s.split(" (")[0] for s in status if "%" in s))  # ticks repeat the last
    assert percents == [f"pytest-vmm: demo: llama.cpp sse42: compile {p}%" for p in (3, 50, 100)]
    assert any(s.startswith("pytest-vmm: demo: kernel: download linux-image (") for s in status), \
        "a long phase without percentages still shows it is alive"


def test_a_failing_build_still_names_its_log(tmp_path: Path) -> None:
    lines: list[str] = []
    with pytest.raises(BuildError, match=r"exit status 3: .*Building CXX.*build log"):
        ArtifactCache(tmp_path / "cache", lines.append).build(recipe(tmp_path, "fail"))
    assert lines[-1].startswith("pytest-vmm: demo: llama.cpp sse42: compile")


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_terminal_updates_in_place_and_ci_gets_lines() -> None:
    for tty in (True, False):
        stream = FakeTerminal(tty)
        display = Display(heartbeat_s=3600)
        display.write(stream, "building zosia")
        display.write(stream, "compile 3%", transient=True)
        display.write(stream, "compile 50%", transient=True)
        display.write(stream, "built zosia")
        if tty:
            assert stream.getvalue() == ("building zosia\n\r\x1b[Kcompile 3%\r\x1b[Kcompile 50%"
                                         "\r\x1b[Kbuilt zosia\n")
        else:  # no escape codes, no percentage spam: a line per phase
            assert stream.getvalue() == "building zosia\nbuilt zosia\n"


def test_ci_log_gets_a_heartbeat_on_long_phases() -> None:
    stream = FakeTerminal(False)
    display = Display(heartbeat_s=0.0)
    display.write(stream, "building zosia")
    display.write(stream, "compile 3%", transient=True)
    assert stream.getvalue() == "building zosia\ncompile 3%\n"
