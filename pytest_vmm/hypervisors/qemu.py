"""QEMU (qemu-system-x86_64): accel kvm when /dev/kvm works, else tcg; QMP for a clean quit."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Hypervisor, LaunchPlan
from pytest_vmm.stack import BootSpec

if TYPE_CHECKING:
    from pytest_vmm.machine import Machine

QEMU_BINARY = "qemu-system-x86_64"
# Same port and semantics as god's exit port: status = (value << 1) | 1.
EXIT_PORT_DEVICE = "isa-debug-exit,iobase=0xf4,iosize=0x04"
log = logging.getLogger(__name__)


class Qemu(Hypervisor):
    name = "qemu"
    description = "QEMU x86_64 (-M microvm or pc), accel kvm or tcg, QMP control"
    accels = ("kvm", "tcg")

    def problem(self, host: HostInfo) -> str:
        if host.tool(QEMU_BINARY) is None:
            return f"{QEMU_BINARY} not found on PATH (apt-get install qemu-system-x86)"
        return ""

    def cpu_model(self, accel: str, host: HostInfo) -> str:
        if accel == "kvm":
            # PVM rejects MSR 0x10a (arch-capabilities) with -cpu host (PLATFORM.md).
            return "host,arch-capabilities=off" if host.kvm_flavour == "pvm" else "host"
        return "max"

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        qmp = run_dir / "qmp.sock"
        virtio_suffix = "device" if spec.qemu_machine.startswith("microvm") else "pci"
        argv = [
            QEMU_BINARY,
            "-M", spec.qemu_machine,
            "-accel", accel,
            "-cpu", self.cpu_model(accel, host),
            "-m", str(spec.mem_mib),
            "-smp", str(spec.cpus),
            "-display", "none",
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-serial", "stdio",
            "-monitor", "none",
            "-qmp", f"unix:{qmp},server=on,wait=off",
            "-device", EXIT_PORT_DEVICE,
            "-kernel", str(spec.kernel),
        ]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
        if spec.cmdline:
            argv += ["-append", spec.cmdline]
        for index, disk in enumerate(spec.disks):
            readonly = ",readonly=on" if disk.read_only else ""
            argv += [
                "-drive", f"file={disk.path},if=none,id=disk{index},format=raw{readonly}",
                "-device", f"virtio-blk-{virtio_suffix},drive=disk{index}",
            ]
        argv += spec.hypervisor_args.get(self.name, [])
        return LaunchPlan(argv=argv, sockets=[qmp])

    def request_stop(self, machine: Machine) -> bool:
        qmp_path = machine.run_dir / "qmp.sock"
        if not qmp_path.exists():
            return False
        try:
            from qemu.qmp.legacy import QEMUMonitorProtocol

            qmp = QEMUMonitorProtocol(str(qmp_path))
            qmp.connect()
            try:
                qmp.cmd("quit")
            finally:
                qmp.close()
            return True
        except Exception as exc:  # noqa: BLE001 - any QMP failure falls back to signals
            log.debug("QMP quit failed (%s); falling back to SIGTERM", exc)
            machine.signal_group(signal.SIGTERM)
            return True


hypervisor = Qemu()
