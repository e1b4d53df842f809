"""Build the tiny arm64 test kernels (arm64guest/) with Debian's cross toolchain at test
time; the lane and QEMU virt runs use the same binaries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "arm64guest"
CC, OBJCOPY = "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-objcopy"
LINK_ADDR = 0x40080000  # RAM base + 0x80000: where a raw -kernel is loaded on QEMU virt and god
VARIANTS = ("OFF", "RESET2", "FAULT")


def need_cross() -> None:
    if shutil.which(CC) is None or shutil.which(OBJCOPY) is None:
        pytest.skip("gcc-aarch64-linux-gnu not installed (scripts/bootstrap.sh installs it)")


def build(tmp: Path, source: str = "hello.S", variant: str = "OFF", status: int = 21) -> tuple[Path, Path]:
    """(ELF, raw binary) of arm64guest/source with EXIT_<variant>."""
    need_cross()
    stem = f"{Path(source).stem}-{variant}-{status}"
    elf, raw = tmp / f"{stem}.elf", tmp / f"{stem}.bin"
    # -N: one RWX segment at the link address, no ELF header in a PT_LOAD below it
    cmd = [CC, "-nostdlib", "-static", "-Wl,-N", f"-Wl,-Ttext={LINK_ADDR:#x}",
           "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments", f"-DEXIT_{variant}",
           f"-DSTATUS={status}", "-o", str(elf), str(HERE / source)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr}")
    subprocess.run([OBJCOPY, "-O", "binary", str(elf), str(raw)], check=True)
    return elf, raw
