"""god, this project's Python KVM VMM (guests/god), run as ``python -m god run``."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Hypervisor, LaunchPlan
from pytest_vmm.stack import BootSpec

# -u: the console is god's stdout, unbuffered. -S: no site module. god needs nothing but the
# standard library, and site (with the venv's editable-install finders) was ~95 ms of a
# ~250 ms start; god's own package directory goes on PYTHONPATH instead (god_python_env).
PYTHON_FLAGS = ("-u", "-S")


@functools.cache
def god_package_root() -> str | None:
    """The directory that holds the ``god`` package as this interpreter finds it, or None."""
    try:
        spec = importlib.util.find_spec("god")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


def god_python_env() -> dict[str, str]:
    """Environment of a ``python -S -m god`` process: god's package on the path; bytecode
    written (a PYTHONDONTWRITEBYTECODE environment made every boot recompile god, ~0.2 s)."""
    env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": ""}
    root = god_package_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return env


def god_run_argv(spec: BootSpec, python: Sequence[str], *, place: Callable[[Path], str] = str,
                 vsock_uds: str | None = None, args_key: str = "god",
                 run_dir: Path | None = None) -> list[str]:
    """``python -m god run ...`` for ``spec`` (docs/architecture.md, "The god command line").

    The one builder of god's command line: the ``god`` hypervisor runs it on the host, the lane
    (``god-svm``) inside its Linux, where ``place`` maps each host file to its path in the lane.
    """
    argv = [*python, "-m", "god", "run", place(spec.kernel),
            "--mem", str(spec.mem_mib),
            "--cpus", str(spec.cpus),
            "--serial", "stdio"]
    if spec.initrd is not None:
        argv += ["--initrd", place(spec.initrd)]
    if spec.cmdline:
        argv += ["--append", spec.cmdline]
    for index, disk in enumerate(spec.disks):
        # A scratch disk is copied into the run directory where there is one (on the host).
        path = disk.launch_path(run_dir, index) if run_dir is not None else disk.path
        argv += ["--disk", f"{place(path)},ro" if disk.read_only else place(path)]
    if spec.vsock is not None and vsock_uds is not None:
        argv += ["--vsock-uds", vsock_uds, "--vsock-cid", str(spec.vsock.guest_cid)]
    argv += spec.hypervisor_args.get(args_key, [])
    return argv


def host_arch(machine: str | None = None) -> str:
    """The host's architecture as Hypervisor.arch spells it (``uname -m``; arm64 -> aarch64)."""
    m = (machine or platform.machine()).lower()
    return "aarch64" if m in ("aarch64", "arm64") else m


def god_description(arch: str) -> str:
    """What plain ``god`` runs on a host of ``arch`` (god picks its backend by the host's
    architecture, god.arch): --vmm-list says which backend applies and where the other runs."""
    if arch == "aarch64":
        return ("god: this project's Python KVM VMM (guests/god): its arm64 backend, directly on this "
                "arm64 host's /dev/kvm (god-arm64 runs the same backend in a TCG lane)")
    return (f"god: this project's Python KVM VMM (guests/god): its {arch} backend on this host's KVM "
            "(its arm64 backend runs here only in the ARM64 lane: god-arm64)")


class God(Hypervisor):
    name = "god"
    arch = host_arch()
    description = god_description(arch)
    accels = ("kvm",)
    # god's own virtio-mmio devices (guests/god/src/god/virtio, docs/virtio.md).
    provides = frozenset({"vsock", "blk"})

    def problem(self, host: HostInfo) -> str:
        if not host.python_module("god"):
            return "the god package is not installed (pip install -e guests/god)"
        if not host.kvm_usable:
            problem = host.kvm_problem or "KVM is not usable here"
            if self.arch == "aarch64":
                problem += " (god's arm64 backend needs /dev/kvm here; god-arm64 runs it in a TCG lane)"
            return problem
        return ""

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        uds = run_dir / spec.vsock.socket_name if spec.vsock is not None else None
        argv = god_run_argv(spec, [sys.executable, *PYTHON_FLAGS], vsock_uds=str(uds) if uds else None, run_dir=run_dir,
                            args_key=self.name)
        # god treats SIGTERM as an orderly stop (vCPUs kicked out, fds closed).
        return LaunchPlan(argv=argv, env=god_python_env(), sockets=[uds] if uds else [],
                          vsock_socket=uds, stop="sigterm")


class GodKernelIrqchip(God):
    """god with KVM's in-kernel PIC, IOAPIC and PIT (``god run --irqchip kernel``), beside
    plain ``god`` (its own devices, the split irqchip): ``--vmm=god,god@god-kirq``."""

    name = "god-kirq"
    description = "god with the in-kernel irqchip and PIT (--irqchip kernel), for comparison"

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        plan = super().launch_plan(spec, accel, run_dir, host)
        at = plan.argv.index("run") + 2  # after "run KERNEL", before the user's own arguments
        plan.argv[at:at] = ["--irqchip", "kernel"]
        return plan


hypervisor = God()
kernel_irqchip = GodKernelIrqchip()
