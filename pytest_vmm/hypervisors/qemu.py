"""QEMU (qemu-system-x86_64): accel kvm when /dev/kvm works, else tcg; QMP for a clean quit."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from pytest_vmm.errors import LaunchError
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Companion, Hypervisor, LaunchPlan, ProcessControl
from pytest_vmm.stack import BootSpec

QEMU_BINARY = "qemu-system-x86_64"
# Same port and semantics as god's exit port: status = (value << 1) | 1.
EXIT_PORT_DEVICE = "isa-debug-exit,iobase=0xf4,iosize=0x04"
log = logging.getLogger(__name__)
QMP_SOCKET = "qmp.sock"


def base_argv(*, machine: str, accel: str, cpu: str, mem_mib: int, cpus: int, kernel: Path,
              initrd: Path | None, cmdline: str, qmp: Path | None, binary: str = QEMU_BINARY,
              exit_device: str | None = EXIT_PORT_DEVICE) -> list[str]:
    """The QEMU command line every boot shares (a guest under ``qemu`` or ``qemu-virt``, the
    lane under ``god-svm``): no defaults, the console on stdio, the exit device where the
    machine has one, a direct kernel boot."""
    argv = [
        binary,
        "-M", machine,
        "-accel", accel,
        "-cpu", cpu,
        "-m", str(mem_mib),
        "-smp", str(cpus),
        "-display", "none",
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        # signal=off: a 0x03 byte from a test must reach the guest, not stop QEMU.
        "-chardev", "stdio,id=console,signal=off",
        "-serial", "chardev:console",
        "-monitor", "none",
    ]
    if qmp is not None:
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    if exit_device is not None:
        argv += ["-device", exit_device]
    argv += ["-kernel", str(kernel)]
    if initrd is not None:
        argv += ["-initrd", str(initrd)]
    if cmdline:
        argv += ["-append", cmdline]
    return argv


def qmp_quit(qmp_path: Path) -> None:
    """Send QMP ``quit`` (raises on any failure: the caller falls back to signals)."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    qmp = QEMUMonitorProtocol(str(qmp_path))
    qmp.connect()
    try:
        qmp.cmd("quit")
    finally:
        qmp.close()


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
        qmp = run_dir / QMP_SOCKET
        virtio_suffix = "device" if spec.qemu_machine.startswith("microvm") else "pci"
        argv = base_argv(machine=spec.qemu_machine, accel=accel, cpu=self.cpu_model(accel, host),
                         mem_mib=spec.mem_mib, cpus=spec.cpus, kernel=spec.kernel, initrd=spec.initrd,
                         cmdline=spec.cmdline, qmp=qmp)
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
        vsock_socket = None
        if spec.vsock is not None:
            companion, vsock_argv = self._vsock_backend(spec, run_dir, host, virtio_suffix)
            companions.append(companion)
            argv += vsock_argv
            vsock_socket = run_dir / spec.vsock.socket_name
            sockets.append(vsock_socket)
        argv += spec.hypervisor_args.get(self.name, [])
        return LaunchPlan(argv=argv, sockets=sockets, companions=companions, control_socket=qmp,
                          vsock_socket=vsock_socket, stop="qmp")

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

    def request_stop(self, process: ProcessControl, plan: LaunchPlan) -> bool:
        if plan.stop != "qmp" or plan.control_socket is None or not plan.control_socket.exists():
            return super().request_stop(process, plan)
        try:
            qmp_quit(plan.control_socket)
            return True
        except Exception as exc:  # noqa: BLE001 - any QMP failure falls back to signals
            log.debug("QMP quit failed (%s); falling back to SIGTERM", exc)
            process.signal_group(signal.SIGTERM)
            return True


hypervisor = Qemu()
