"""The qemu-virt hypervisor (hypervisors/qemu_virt.py): its command line and which accelerator
it picks, on the hosts it knows (x86_64 Linux here, arm64 Linux with KVM, macOS arm64)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vmm.errors import LaunchError
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors import qemu_virt
from pytest_vmm.hypervisors.qemu_virt import QemuVirt
from pytest_vmm.stack import BootSpec, Disk, VsockSpec

KVM_HOST = HostInfo("none", True, True, "", 2_000_000)
NO_KVM_HOST = HostInfo("none", False, False, "/dev/kvm does not exist (no KVM on this host)", 0)


def spec(tmp_path: Path) -> BootSpec:
    for name in ("Image", "initrd.img", "ro.img", "rw.img"):
        (tmp_path / name).write_bytes(b"x")
    return BootSpec(kernel=tmp_path / "Image", initrd=tmp_path / "initrd.img", cmdline="console=ttyAMA0",
                    mem_mib=96, cpus=2, disks=[Disk(tmp_path / "ro.img", read_only=True), Disk(tmp_path / "rw.img")],
                    hypervisor_args={"qemu-virt": ["--extra"]})


def value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_argv_boots_the_kernel_on_virt_with_gicv3_and_virtio_mmio_disks(tmp_path: Path) -> None:
    s = spec(tmp_path)
    plan = QemuVirt("x86_64", "linux").launch_plan(s, "tcg", tmp_path, KVM_HOST)
    argv = plan.argv
    assert argv[0] == "qemu-system-aarch64"
    assert value(argv, "-M") == "virt,gic-version=3"
    assert value(argv, "-accel") == "tcg" and value(argv, "-cpu") == "max"
    assert value(argv, "-m") == "96" and value(argv, "-smp") == "2"
    assert value(argv, "-kernel") == str(s.kernel) and value(argv, "-initrd") == str(s.initrd)
    assert value(argv, "-append") == "console=ttyAMA0"
    assert value(argv, "-serial") == "chardev:console", "the PL011 (serial0) is the console"
    assert not any("isa-debug-exit" in a for a in argv), "virt has no ISA bus"
    assert value(argv, "-semihosting-config") == "enable=on,target=native"
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert drives == [f"file={tmp_path / 'ro.img'},if=none,id=disk0,format=raw,readonly=on",
                      f"file={tmp_path / 'rw.img'},if=none,id=disk1,format=raw"]
    assert devices == ["virtio-blk-device,drive=disk0", "virtio-blk-device,drive=disk1"]
    assert value(argv, "-global") == "virtio-mmio.force-legacy=false"
    assert "-bios" not in argv
    assert argv[-1] == "--extra"
    assert plan.stop == "qmp" and plan.control_socket == tmp_path / "qmp.sock"


def test_uefi_firmware_is_passed_as_bios(tmp_path: Path) -> None:
    s = spec(tmp_path)
    s.firmware = tmp_path / "QEMU_EFI.fd"
    s.firmware.write_bytes(b"fw")
    argv = QemuVirt("x86_64", "linux").launch_plan(s, "tcg", tmp_path, KVM_HOST).argv
    assert value(argv, "-bios") == str(s.firmware)
    assert value(argv, "-kernel") == str(s.kernel), "the firmware loads the kernel through fw_cfg"
    s.firmware = tmp_path / "missing.fd"
    with pytest.raises(LaunchError, match="missing.fd not found"):
        QemuVirt("x86_64", "linux").launch_plan(s, "tcg", tmp_path, KVM_HOST)
    assert qemu_virt.UEFI_FIRMWARE.name == "QEMU_EFI.fd"


def test_vsock_is_refused_by_name(tmp_path: Path) -> None:
    s = spec(tmp_path)
    s.vsock = VsockSpec()
    with pytest.raises(LaunchError, match="qemu-virt has no vsock"):
        QemuVirt("x86_64", "linux").launch_plan(s, "tcg", tmp_path, KVM_HOST)


def test_accel_on_an_x86_host_is_tcg_and_kvm_says_why_not() -> None:
    hv = QemuVirt("x86_64", "linux")
    assert hv.arch == "aarch64"
    assert hv.pick_accel("auto", KVM_HOST, None) == "tcg"
    assert "needs an arm64 Linux host" in hv.accel_problem("kvm", KVM_HOST)
    assert "needs macOS on arm64" in hv.accel_problem("hvf", KVM_HOST)
    assert hv.accel_problem("tcg", KVM_HOST) == ""


def test_accel_on_arm64_linux_is_kvm_when_usable() -> None:
    hv = QemuVirt("aarch64", "linux")
    assert hv.pick_accel("auto", KVM_HOST, None) == "kvm"
    assert hv.cpu_model("kvm", KVM_HOST) == "host"
    assert hv.pick_accel("auto", NO_KVM_HOST, None) == "tcg"
    assert "does not exist" in hv.accel_problem("kvm", NO_KVM_HOST)


def test_accel_on_macos_arm64_is_hvf() -> None:
    hv = QemuVirt("arm64", "darwin")
    assert hv.pick_accel("auto", NO_KVM_HOST, None) == "hvf"
    assert hv.accel_problem("hvf", NO_KVM_HOST) == ""
    assert "arm64 Linux host" in hv.accel_problem("kvm", NO_KVM_HOST)


def test_no_semihosting_under_kvm(tmp_path: Path) -> None:
    argv = QemuVirt("aarch64", "linux").launch_plan(spec(tmp_path), "kvm", tmp_path, KVM_HOST).argv
    assert value(argv, "-accel") == "kvm" and value(argv, "-cpu") == "host"
    assert "-semihosting-config" not in argv


def test_qemu_virt_is_registered_with_its_architecture() -> None:
    from pytest_vmm.registry import Registry

    registry = Registry(KVM_HOST)
    registry.load_entry_points()
    assert registry.hypervisors["qemu-virt"].arch == "aarch64"
    assert registry.hypervisors["qemu"].arch == "x86_64"


def test_the_god_stack_builds_the_probe_for_the_hypervisors_architecture(tmp_path: Path) -> None:
    from pytest_vmm.registry import Target
    from pytest_vmm.stack import BuiltImage
    from pytest_vmm.stacks import god

    assert god.stack.recipe_for("x86_64") is god.stack.recipe
    arm = god.stack.recipe_for("aarch64")
    assert arm is not None and arm.name == "probe-aarch64" and arm.arch == "aarch64"
    assert arm.command[1].endswith("guests/probe/aarch64/build.py")
    target = Target(god.stack, QemuVirt("x86_64", "linux"), explicit_hypervisor=True)
    assert target.arch == "aarch64" and target.recipe is arm and target.id == "god@qemu-virt"
    assert target.capabilities >= {"agent", "mmio", "irq", "timer", "smp"}
    assert not target.capabilities & {"portseq", "dma", "vsock", "blk"}
    (tmp_path / "probe.img").write_bytes(b"x")
    spec = god.boot(BuiltImage("probe-aarch64", tmp_path, arch="aarch64"), KVM_HOST, "qemu-virt")
    assert spec.kernel == tmp_path / "probe.img" and spec.cpus == 2 and not spec.disks and spec.vsock is None


def test_a_stack_without_arch_recipes_keeps_its_one_recipe() -> None:
    from pytest_vmm.stacks import zigu

    assert zigu.stack.recipe_for("aarch64") is zigu.stack.recipe
