"""Progress of long builds: phase lines and cmake's own percentage, read from the build log.

A build script announces a phase by printing a line ``pytest-vmm-phase: <what>`` (plain text,
so guest build scripts need not import this package); cmake's ``[ 45%] Building ...`` lines
give the percentage within a phase. On a terminal the status updates in place; in a CI log
(not a terminal) every phase is one line, plus a heartbeat line at most every
``HEARTBEAT_S`` seconds while a phase runs long.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

PHASE_PREFIX = "pytest-vmm-phase: "
HEARTBEAT_S = 60.0
_CMAKE_PERCENT = re.compile(r"^\[\s*(\d{1,3})%\]")


def phase(text: str) -> None:
    """For build scripts written in Python: announce a phase (stdout is the build log)."""
    print(PHASE_PREFIX + text, flush=True)


class BuildTracker:
    """Turns build-log lines into phase lines (permanent) and status lines (transient)."""

    def __init__(self, recipe: str, on_phase: Callable[[str], None], on_status: Callable[[str], None]) -> None:
        self.recipe = recipe
        self.on_phase = on_phase
        self.on_status = on_status
        self.started = time.monotonic()
        self.phase = ""
        self.percent: int | None = None

    def feed(self, line: str) -> None:
        line = line.rstrip()
        if line.startswith(PHASE_PREFIX):
            self.phase = line[len(PHASE_PREFIX):].strip()
            self.percent = None
            self.on_phase(f"pytest-vmm: {self.recipe}: {self.phase} ({self.elapsed():.0f} s)")
            return
        match = _CMAKE_PERCENT.match(line)
        if match and int(match.group(1)) != self.percent:
            self.percent = int(match.group(1))
            self.on_status(self.status())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def status(self) -> str:
        percent = f" {self.percent}%" if self.percent is not None else ""
        return f"pytest-vmm: {self.recipe}: {self.phase or 'building'}{percent} ({self.elapsed():.0f} s)"


def follow(log: Path, process: subprocess.Popen[bytes], timeout: float, on_line: Callable[[str], None],
           on_tick: Callable[[], None] | None = None, poll_s: float = 0.5) -> int:
    """Wait for ``process`` (which writes ``log``), feeding every complete new line to on_line.

    Raises subprocess.TimeoutExpired (the process still running) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    offset, pending = 0, b""

    def read_new() -> None:
        nonlocal offset, pending
        try:
            with log.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
        except OSError:
            return
        offset += len(chunk)
        # cmake (and ninja) end status lines with \r on a terminal; treat it as a line end.
        *lines, pending = (pending + chunk).replace(b"\r", b"\n").split(b"\n")
        for raw in lines:
            on_line(raw.decode(errors="replace"))

    while True:
        try:
            returncode = process.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            read_new()
            if on_tick is not None:
                on_tick()
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(process.args, timeout) from None
            continue
        read_new()
        if pending:
            on_line(pending.decode(errors="replace"))
        return returncode


class Display:
    """Writes progress to a stream: in place on a terminal, line by line otherwise."""

    def __init__(self, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.heartbeat_s = heartbeat_s
        self._transient = False
        self._last_line_at = time.monotonic()
        self._last_status = ""

    def write(self, stream: TextIO, text: str, transient: bool = False) -> None:
        tty = stream.isatty()
        if transient:
            self._last_status = text
            if tty:
                stream.write("\r\x1b[K" + text)
                self._transient = True
            elif time.monotonic() - self._last_line_at >= self.heartbeat_s:
                stream.write(text + "\n")
                self._last_line_at = time.monotonic()
        else:
            stream.write(("\r\x1b[K" if tty and self._transient else "") + text + "\n")
            self._transient = False
            self._last_line_at = time.monotonic()
        stream.flush()
