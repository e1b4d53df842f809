"""Stack ``zosia``: Linux + BusyBox + llama.cpp booting into a prompt (guests/zosia), on QEMU."""

from __future__ import annotations

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec, BuiltImage, Disk, Stack
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    guest_recipe,
    needs_python_module,
    needs_tool,
)

READY = rb"zosia: prompt ready"


def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
    manifest = image.manifest
    append = str(manifest.get("append", "console=ttyS0 panic=-1"))
    if host.cpu_khz:
        # Under TCG on a loaded host the kernel can hang calibrating the TSC (PLATFORM.md).
        append += f" tsc_early_khz={host.cpu_khz} tsc=reliable"
    disk = manifest.get("disk")
    return BootSpec(
        kernel=image.file(str(manifest.get("kernel", "vmlinux"))),
        initrd=image.file(str(manifest.get("initrd", "initramfs.cpio.gz"))),
        cmdline=append,
        mem_mib=int(str(manifest.get("mem_mib", 1024))),
        cpus=2,
        disks=[Disk(image.file(str(disk)), read_only=True)] if disk else [],
        ready=READY,
        fail_patterns=list(COMMON_FAIL_PATTERNS),
        boot_timeout_s=30.0,
        qemu_machine=str(manifest.get("qemu_machine", "microvm")),
    )


def preferred_accel(host: HostInfo, hypervisor: str) -> str | None:
    # PVM cannot run Linux in useful time (PLATFORM.md): Linux uses TCG unless KVM is hardware.
    return None if host.hardware_kvm else "tcg"


def problem(host: HostInfo, hypervisor: str) -> str:
    if hypervisor == "god" and not host.hardware_kvm:
        return f"Linux on god needs hardware KVM (this host's KVM flavour: {host.kvm_flavour})"
    return ""


stack = Stack(
    name="zosia",
    description="minimal Linux + BusyBox + llama.cpp booting into a prompt (seeds 003/004)",
    recipe=guest_recipe("zosia", needs_tool("mke2fs", "e2fsprogs"), needs_tool("cmake", "cmake"),
                        needs_python_module("gguf", "gguf")),
    boot=boot,
    default_hypervisor="qemu",
    hypervisors=("qemu", "god"),
    capabilities=frozenset({"serial", "linux", "llm", "blk"}),
    preferred_accel=preferred_accel,
    problem=problem,
)
