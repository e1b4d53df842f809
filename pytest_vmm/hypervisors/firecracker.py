"""Firecracker, when its binary is on PATH: configured by a JSON file, console on stdio."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Hypervisor, LaunchPlan
from pytest_vmm.stack import BootSpec

FIRECRACKER_BINARY = "firecracker"


class Firecracker(Hypervisor):
    name = "firecracker"
    description = "Firecracker microVM monitor (user-supplied binary), --no-api with a config file"
    accels = ("kvm",)
    provides = frozenset({"vsock"})

    def problem(self, host: HostInfo) -> str:
        if host.tool(FIRECRACKER_BINARY) is None:
            return "firecracker binary not found on PATH (not packaged by Debian; install it yourself)"
        if not host.kvm_usable:
            return host.kvm_problem or "KVM is not usable here"
        return ""

    def config(self, spec: BootSpec, run_dir: Path) -> dict[str, object]:
        boot_args = spec.cmdline or "console=ttyS0 reboot=k panic=1"
        config: dict[str, object] = {
            "boot-source": {"kernel_image_path": str(spec.kernel), "boot_args": boot_args},
            "drives": [
                {
                    "drive_id": f"disk{index}",
                    "path_on_host": str(disk.launch_path(run_dir, index)),
                    "is_root_device": False,
                    "is_read_only": disk.read_only,
                }
                for index, disk in enumerate(spec.disks)
            ],
            "machine-config": {"vcpu_count": spec.cpus, "mem_size_mib": spec.mem_mib},
        }
        if spec.initrd is not None:
            config["boot-source"]["initrd_path"] = str(spec.initrd)  # type: ignore[index]
        if spec.vsock is not None:
            config["vsock"] = {
                "guest_cid": spec.vsock.guest_cid,
                "uds_path": str(run_dir / spec.vsock.socket_name),
            }
        return config

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        config_file = run_dir / "firecracker.json"
        config_file.write_text(json.dumps(self.config(spec, run_dir), indent=2))
        argv = [FIRECRACKER_BINARY, "--no-api", "--config-file", str(config_file)]
        vsock_socket = run_dir / spec.vsock.socket_name if spec.vsock else None
        return LaunchPlan(argv=argv, sockets=[vsock_socket] if vsock_socket else [],
                          vsock_socket=vsock_socket, stop="sigterm")


hypervisor = Firecracker()
