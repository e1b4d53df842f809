"""QEMU (qemu-system-x86_64): accel kvm when /dev/kvm works, else tcg; QMP for a clean quit."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmm.errors import LaunchError
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Companion, Hypervisor, LaunchPlan
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
    # blk: QEMU's own virtio-blk; vsock: god's device model as a vhost-user back-end.
    provides = frozenset({"vsock", "blk"})

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
            # signal=off: a 0x03 byte from a test must reach the guest, not stop QEMU.
            "-chardev", "stdio,id=console,signal=off",
            "-serial", "chardev:console",
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
                "-drive", f"file={disk.launch_path(run_dir, index)},if=none,id=disk{index},format=raw{readonly}",
                "-device", f"virtio-blk-{virtio_suffix},drive=disk{index}",
            ]
        if spec.qemu_machine.startswith("microvm") and (spec.disks or spec.vsock):
            # microvm's virtio-mmio is legacy (version 1) by default; our kernels and god
            # speak version 2 only (Linux speaks both).
            argv += ["-global", "virtio-mmio.force-legacy=false"]
        companions: list[Companion] = []
        sockets = [qmp]
        if spec.vsock is not None:
            companion, vsock_argv = self._vsock_backend(spec, run_dir, host, virtio_suffix)
            companions.append(companion)
            argv += vsock_argv
            sockets.append(run_dir / spec.vsock.socket_name)
        argv += spec.hypervisor_args.get(self.name, [])
        return LaunchPlan(argv=argv, sockets=sockets, companions=companions)

    def _vsock_backend(self, spec: BootSpec, run_dir: Path, host: HostInfo,
                       suffix: str) -> tuple[Companion, list[str]]:
        """vsock without /dev/vhost-vsock: god's device model as a vhost-user back-end
        (python -m god.vhost_user), guest RAM shared with it through a memfd."""
        assert spec.vsock is not None
        if not host.python_module("god.vhost_user"):
            raise LaunchError("vsock under QEMU needs the god package (pip install -e "
                              "guests/god): its vhost-user back-end serves the device")
        vu_sock = run_dir / "vhost-user-vsock.sock"
        uds = run_dir / spec.vsock.socket_name
        companion = Companion(
            name="vhost-user-vsock",
            argv=[sys.executable, "-m", "god.vhost_user", "--socket", str(vu_sock),
                  "--vsock-uds", str(uds), "--guest-cid", str(spec.vsock.guest_cid)],
            ready_path=vu_sock,
        )
        argv = [
            "-object", f"memory-backend-memfd,id=mem,size={spec.mem_mib}M,share=on",
            "-machine", "memory-backend=mem",
            "-chardev", f"socket,id=vu,path={vu_sock}",
            # The CID comes from the back-end's config space (VHOST_USER_GET_CONFIG).
            "-device", f"vhost-user-vsock-{suffix},chardev=vu",
        ]
        return companion, argv

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
