"""Build the virtio test guest (guest/vguest.c, a PVH ELF) and run it under god or QEMU as a
subprocess, so tests see exactly what `python -m god run` / QEMU do. Every process started
here is stopped by pid (and its process group) when the context exits."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

HERE = Path(__file__).resolve().parent / "guest"
CFLAGS = ["-m32", "-ffreestanding", "-fno-pic", "-fno-pie", "-no-pie", "-mgeneral-regs-only",
          "-mno-red-zone", "-fno-stack-protector", "-fcf-protection=none",
          "-fno-asynchronous-unwind-tables", "-O2", "-nostdlib", "-static",
          "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments", "-Wa,--noexecstack"]


def build(out_dir: Path) -> Path:
    elf = out_dir / "vguest.elf"
    p = subprocess.run(["gcc", *CFLAGS, "-T", str(HERE / "link.ld"), str(HERE / "boot.S"),
                        str(HERE / "vguest.c"), "-o", str(elf)], capture_output=True, text=True,
                       check=False)
    if p.returncode:
        raise RuntimeError(f"vguest build failed:\n{p.stderr}")
    return elf


def have_toolchain() -> bool:
    return shutil.which("gcc") is not None


class Guest:
    """A running guest process with its console captured to a file."""

    def __init__(self, argv: list[str], run_dir: Path, uds: Path) -> None:
        self.run_dir = run_dir
        self.uds = uds
        self.log = run_dir / "console.log"
        self.err_log = run_dir / "stderr.log"
        self._logf = self.log.open("wb")
        self._errf = self.err_log.open("wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=self._errf, start_new_session=True)

    def text(self) -> str:
        return self.log.read_bytes().decode(errors="replace")

    def wait_for(self, marker: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.text()
            if marker in t:
                return t
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        err = self.err_log.read_bytes().decode(errors="replace")
        raise AssertionError(f"{marker!r} not seen (exit {self.proc.poll()}):\n"
                             f"{self.text()[-3000:]}\nstderr:\n{err[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._logf.close()
        self._errf.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def short_run_dir() -> Path:
    # Unix socket paths must stay under 108 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix="vio-"))


def god_argv(elf: Path, uds: Path | None, cid: int = 3, disks: list[str] = (),
             append: str = "", mem: int = 32) -> list[str]:
    argv = [sys.executable, "-m", "god", "run", str(elf), "--mem", str(mem), "--serial", "stdio"]
    for d in disks:
        argv += ["--disk", d]
    if uds is not None:
        argv += ["--vsock-uds", str(uds), "--vsock-cid", str(cid)]
    if append:
        argv += ["--append", append]
    return argv
