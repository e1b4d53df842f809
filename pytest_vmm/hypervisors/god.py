"""god, this project's Python KVM VMM (guests/god), run as ``python -m god run``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Hypervisor, LaunchPlan
from pytest_vmm.stack import BootSpec

if TYPE_CHECKING:
    from pytest_vmm.machine import Machine


class God(Hypervisor):
    name = "god"
    description = "god: this project's Python KVM VMM (guests/god)"
    accels = ("kvm",)
    # god's own virtio-mmio devices (guests/god/src/god/virtio, docs/virtio.md).
    provides = frozenset({"vsock", "blk"})

    def problem(self, host: HostInfo) -> str:
        if not host.python_module("god"):
            return "the god package is not installed (pip install -e guests/god)"
        if not host.kvm_usable:
            return host.kvm_problem or "KVM is not usable here"
        return ""

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        argv = [
            sys.executable, "-u", "-m", "god", "run", str(spec.kernel),
            "--mem", str(spec.mem_mib),
            "--cpus", str(spec.cpus),
            "--serial", "stdio",
        ]
        if spec.initrd is not None:
            argv += ["--initrd", str(spec.initrd)]
        if spec.cmdline:
            argv += ["--append", spec.cmdline]
        for index, disk in enumerate(spec.disks):
            path = disk.launch_path(run_dir, index)
            argv += ["--disk", f"{path},ro" if disk.read_only else str(path)]
        sockets = []
        if spec.vsock is not None:
            uds = run_dir / spec.vsock.socket_name
            argv += ["--vsock-uds", str(uds), "--vsock-cid", str(spec.vsock.guest_cid)]
            sockets.append(uds)
        argv += spec.hypervisor_args.get(self.name, [])
        return LaunchPlan(argv=argv, env={"PYTHONUNBUFFERED": "1"}, sockets=sockets)

    def request_stop(self, machine: Machine) -> bool:
        # god treats SIGTERM as an orderly stop (vCPUs kicked out, fds closed).
        machine.signal_leader(signal.SIGTERM)
        return True


hypervisor = God()
