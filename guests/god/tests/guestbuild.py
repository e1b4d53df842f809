"""Build tiny test guests with gcc at test time and run them in-process on god."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from god.boot import BootInputs, Module
from god.devices.console import CallbackConsole
from god.machine import Machine, MachineConfig
from god.vcpu.runner import VmExit

HERE = Path(__file__).resolve().parent / "guest"
CFLAGS = ["-m64", "-ffreestanding", "-fno-pic", "-fno-pie", "-no-pie", "-mno-red-zone",
          "-mgeneral-regs-only", "-fno-stack-protector", "-fcf-protection=none",
          "-fno-asynchronous-unwind-tables", "-O2", "-nostdlib", "-static",
          "-Wl,--build-id=none"]
STATUS_TIMEOUT = 99


def have_gcc() -> bool:
    return shutil.which("gcc") is not None and shutil.which("objcopy") is not None


def _run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr}")


def build_c64(tmp: Path, source: str, name: str = "guest") -> Path:
    """A 64-bit flat binary at 0x100000 from C (with lib.h and start64.S)."""
    c = tmp / f"{name}.c"
    c.write_text('#include "lib.h"\n' + source)
    elf, binf = tmp / f"{name}.elf", tmp / f"{name}.bin"
    _run(["gcc", *CFLAGS, "-I", str(HERE), "-T", str(HERE / "link.ld"),
          str(HERE / "start64.S"), str(c), "-o", str(elf)])
    _run(["objcopy", "-O", "binary", str(elf), str(binf)])
    return binf


def build_asm(tmp: Path, source: str, name: str, addr: int, code16: bool = False) -> Path:
    """A flat binary at addr from GNU as source."""
    s = tmp / f"{name}.S"
    s.write_text((".code16\n" if code16 else ".code64\n") + source)
    o, binf = tmp / f"{name}.o", tmp / f"{name}.bin"
    _run(["gcc", "-c", "-m64", str(s), "-o", str(o)])
    _run(["ld", f"-Ttext={addr:#x}", "--oformat=binary", "-e", "_start", str(o), "-o", str(binf)])
    return binf


def build_elf32(tmp: Path, source: str, name: str, ldscript: str) -> Path:
    """A 32-bit ELF kernel (multiboot / PVH) from GNU as source and a linker script."""
    s, o, lds, elf = tmp / f"{name}.S", tmp / f"{name}.o", tmp / f"{name}.ld", tmp / f"{name}.elf"
    s.write_text(source)
    lds.write_text(ldscript)
    _run(["gcc", "-c", "-m32", str(s), "-o", str(o)])
    _run(["ld", "-m", "elf_i386", "-T", str(lds), "--build-id=none", str(o), "-o", str(elf)])
    return elf


@dataclass
class Run:
    result: VmExit
    output: bytes
    machine: Machine
    exits: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


def run_guest(kernel: Path, *, flat_addr: int | None = 0x100000, flat_mode: int = 64,
              cpus: int = 1, mem_mib: int = 32, cmdline: str = "",
              modules: list[Module] | None = None, timeout: float = 30.0,
              on_output: Callable[[Machine, bytes], None] | None = None,
              setup: Callable[[Machine], None] | None = None,
              keep: bool = False, irqchip: str = "split") -> Run:
    """Boot kernel in-process; stop it after timeout (status 99) so a test never hangs.
    With keep=True the machine is left open for inspection (caller closes it)."""
    out = bytearray()
    holder: dict[str, Machine] = {}

    def on_bytes(b: bytes) -> None:
        out.extend(b)
        if on_output is not None:
            on_output(holder["m"], bytes(out))

    m = Machine(MachineConfig(mem_mib=mem_mib, cpus=cpus, console=CallbackConsole(on_bytes),
                              irqchip=irqchip))
    holder["m"] = m
    try:
        m.load(BootInputs(kernel.read_bytes(), cmdline, modules or []), flat_addr, flat_mode)
        if setup is not None:
            setup(m)
        timer = threading.Timer(timeout, lambda: m.request_stop(
            VmExit(STATUS_TIMEOUT, f"test timeout after {timeout}s", "timeout")))
        timer.daemon = True
        timer.start()
        try:
            result = m.run()
        finally:
            timer.cancel()
        return Run(result, bytes(out), m, m.exits)
    finally:
        if not keep:
            m.close()
