"""QEMU ``-M virt`` (qemu-system-aarch64): the arm64 reference machine, as ``qemu`` (microvm) is
the x86 one. GICv3, PL011 on the console, virtio-mmio disks; accel kvm on an arm64 Linux host
with /dev/kvm, hvf on macOS arm64, TCG elsewhere (here: an x86_64 host).

A guest ends with a status through Arm semihosting ``SYS_EXIT`` (enabled under TCG, where QEMU
implements it; virt has no isa-debug-exit), or with PSCI ``SYSTEM_OFF`` (status 0).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from pytest_vmm.errors import LaunchError
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Accel, LaunchPlan
from pytest_vmm.hypervisors.qemu import QMP_SOCKET, Qemu, base_argv
from pytest_vmm.stack import BootSpec

QEMU_AARCH64 = "qemu-system-aarch64"
# gic-version=3: the GICv3 the arm64 suites and god's vGICv3 speak (QEMU's default is v2).
VIRT_MACHINE = "virt,gic-version=3"
# Debian's qemu-efi-aarch64 (EDK2 ArmVirtQemu), a -bios image for -M virt.
UEFI_FIRMWARE = Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
# target=native: SYS_EXIT ends QEMU with the guest's status; userspace stays off (EL1 only).
SEMIHOSTING = "enable=on,target=native"


def host_is_arm64(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in ("aarch64", "arm64")


def uefi_firmware() -> Path | None:
    """The UEFI firmware for ``BootSpec.firmware`` when it is installed, else None."""
    return UEFI_FIRMWARE if UEFI_FIRMWARE.exists() else None


class QemuVirt(Qemu):
    name = "qemu-virt"
    description = ("QEMU aarch64 -M virt (GICv3, PL011, virtio-mmio), accel kvm on arm64 Linux, "
                   "hvf on macOS arm64, tcg elsewhere; QMP control")
    accels: tuple[Accel, ...] = ("tcg", "kvm", "hvf")
    arch = "aarch64"
    # QEMU's own virtio-blk; no vsock (the arm64 probe has no vsock driver yet).
    provides = frozenset({"blk"})

    def __init__(self, machine: str | None = None, os_name: str | None = None) -> None:
        # The host's CPU and OS, overridable so the accelerator choice can be tested anywhere.
        self.host_machine = machine or platform.machine()
        self.host_os = os_name or sys.platform

    def problem(self, host: HostInfo) -> str:
        if host.tool(QEMU_AARCH64) is None:
            return f"{QEMU_AARCH64} not found on PATH (apt-get install qemu-system-arm)"
        return ""

    def pick_accel(self, choice: str, host: HostInfo, preferred: str | None) -> str:
        if choice != "auto":
            return choice
        if preferred and not self.accel_problem(preferred, host):
            return preferred
        for accel in ("hvf", "kvm"):
            if not self.accel_problem(accel, host):
                return accel
        return "tcg"

    def accel_problem(self, accel: str, host: HostInfo) -> str:
        if accel not in self.accels:
            return f"{self.name} supports accel {', '.join(self.accels)}, not {accel}"
        arm = host_is_arm64(self.host_machine)
        if accel == "kvm":
            if self.host_os != "linux" or not arm:
                return (f"{self.name} with accel kvm needs an arm64 Linux host; this host is "
                        f"{self.host_os} {self.host_machine} (its KVM runs {self.host_machine} guests; "
                        f"accel tcg emulates aarch64)")
            if not host.kvm_usable:
                return host.kvm_problem or "KVM is not usable here"
        if accel == "hvf" and (self.host_os != "darwin" or not arm):
            return f"{self.name} with accel hvf needs macOS on arm64; this host is {self.host_os} {self.host_machine}"
        return ""

    def cpu_model(self, accel: str, host: HostInfo) -> str:
        # -cpu max under TCG (every feature QEMU emulates); a virtualized vCPU is the host's.
        return "max" if accel == "tcg" else "host"

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        qmp = run_dir / QMP_SOCKET
        machine = spec.qemu_machine if spec.qemu_machine.startswith("virt") else VIRT_MACHINE
        argv = base_argv(machine=machine, accel=accel, cpu=self.cpu_model(accel, host),
                         mem_mib=spec.mem_mib, cpus=spec.cpus, kernel=spec.kernel, initrd=spec.initrd,
                         cmdline=spec.cmdline, qmp=qmp, binary=QEMU_AARCH64, exit_device=None)
        if spec.firmware is not None:
            if not spec.firmware.exists():
                raise LaunchError(f"UEFI firmware {spec.firmware} not found (apt-get install qemu-efi-aarch64)")
            # With firmware loaded, QEMU hands -kernel/-initrd/-append to it through fw_cfg.
            argv += ["-bios", str(spec.firmware)]
        if accel == "tcg":
            argv += ["-semihosting-config", SEMIHOSTING]
        for index, disk in enumerate(spec.disks):
            readonly = ",readonly=on" if disk.read_only else ""
            argv += [
                "-drive", f"file={disk.launch_path(run_dir, index)},if=none,id=disk{index},format=raw{readonly}",
                # virt's virtio-mmio transports (0x0a000000, 32 x 0x200 bytes, SPIs 16-47); the
                # first -device takes the highest free transport.
                "-device", f"virtio-blk-device,drive=disk{index}",
            ]
        if spec.disks:
            # virtio-mmio is legacy (version 1) unless told otherwise; our kernels speak version 2.
            argv += ["-global", "virtio-mmio.force-legacy=false"]
        if spec.vsock is not None:
            raise LaunchError(f"{self.name} has no vsock device (the BootSpec asks for one)")
        argv += spec.hypervisor_args.get(self.name, [])
        return LaunchPlan(argv=argv, sockets=[qmp], control_socket=qmp, stop="qmp")


hypervisor = QemuVirt()
