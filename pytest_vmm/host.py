"""What this host can run: KVM flavour, /dev/kvm access, tools on PATH.

Detected once per process (``HostInfo.detect()`` is cached) and handed to stacks and
hypervisors so they can pick defaults (e.g. Linux guests under TCG on PVM).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

KvmFlavour = Literal["pvm", "vmx", "svm", "none"]

def detect_kvm_flavour(sys_module: Path = Path("/sys/module")) -> KvmFlavour:
    """Which kernel module serves /dev/kvm: what kind of virtualization we really have.

    The module -> flavour table is god's (``god.flavour``, standard library only, importing
    nothing else of god): one table for the VMM and the plugin, and god stays usable without
    pytest-vmm. Without god installed the flavour is "none" (unknown), as when no module is
    loaded.
    """
    try:
        from god.flavour import kvm_flavour
    except ImportError:
        return "none"
    flavour = kvm_flavour(sys_module)
    for known in ("pvm", "vmx", "svm"):
        if flavour == known:
            return known
    return "none"


@dataclass(frozen=True)
class HostInfo:
    kvm_flavour: KvmFlavour
    kvm_device: bool  # /dev/kvm exists
    kvm_usable: bool  # ... and we may open it read-write
    kvm_problem: str  # why KVM is not usable ("" when it is)
    cpu_khz: int  # host TSC/CPU frequency, for guests that must not calibrate under load
    tools: dict[str, str | None] = field(default_factory=dict)

    @property
    def hardware_kvm(self) -> bool:
        return self.kvm_usable and self.kvm_flavour in ("vmx", "svm")

    def tool(self, name: str) -> str | None:
        """Path of an executable on PATH (looked up lazily, cached on the instance dict)."""
        if name not in self.tools:
            self.tools[name] = shutil.which(name)
        return self.tools[name]

    def python_module(self, name: str) -> bool:
        """True when ``python -m NAME`` can work in this interpreter."""
        import importlib.util

        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    @classmethod
    @functools.cache
    def detect(cls) -> HostInfo:
        return cls.probe(Path("/dev/kvm"), Path("/sys/module"))

    @classmethod
    def probe(cls, kvm_path: Path, sys_module: Path) -> HostInfo:
        flavour = detect_kvm_flavour(sys_module)
        device = kvm_path.exists()
        usable = False
        problem = ""
        if not device:
            problem = f"{kvm_path} does not exist (no KVM on this host)"
        else:
            try:
                fd = os.open(kvm_path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                problem = f"cannot open {kvm_path}: {exc.strerror} (add the user to group kvm or run as root)"
            else:
                os.close(fd)
                usable = True
        return cls(
            kvm_flavour=flavour,
            kvm_device=device,
            kvm_usable=usable,
            kvm_problem=problem,
            cpu_khz=_host_cpu_khz(),
        )


def _host_cpu_khz() -> int:
    """Best effort host CPU frequency in kHz (from /proc/cpuinfo), 0 when unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("cpu MHz"):
            try:
                return int(float(line.split(":", 1)[1]) * 1000)
            except ValueError:
                return 0
    return 0


def command_works(argv: list[str], timeout: float = 20.0) -> bool:
    """True when a command runs and exits 0 (used for toolchain checks such as zig)."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


PYTHON = sys.executable
