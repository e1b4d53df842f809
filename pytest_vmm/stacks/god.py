"""Stack ``god``: the probe kernel (guests/probe) on the god VMM; also ``god@qemu`` for comparison.

The probe gets the virtio suites' devices where the hypervisor has them: a writable virtio-blk
disk (a per-boot copy of the build's deterministic ``virtio-disk.img``), the same image
read-only, and on god a virtio-vsock device. The guest never drives them itself; the host's
virtio driver (pytest_vmm/virtio) does, through the agent.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec, BuiltImage, Disk, ImageRecipe, Stack, VsockSpec
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    agent_channel,
    agent_ready_pattern,
    guest_recipe,
    needs_tool,
)
from pytest_vmm.virtio import testdisk

# Hypervisors the probe gets disks and vsock on. In the lane (god-svm) the disks travel in the
# per-boot initramfs and god's warnings have a channel of their own (the lane's debugcon), so
# the virtio suites run on the real kvm_amd too (~2.5 minutes of CI: agent round trips are
# slow there). No vsock in the lane: the lane link carries host-to-guest connections only, and
# the vsock suite's guest-to-host connect would reach a socket inside the lane (docs/lane.md).
WITH_DISKS = ("god", "god-kirq", "qemu", "god-svm")
# QEMU has no vsock device of its own here (only vhost-user to god's back-end).
WITH_VSOCK = ("god", "god-kirq")


def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
    if image.arch == "aarch64":
        return boot_aarch64(image)
    disks: list[Disk] = []
    if hypervisor in WITH_DISKS:
        disk = image.file(testdisk.FILE_NAME)
        disks = [Disk(disk, scratch=True), Disk(disk, read_only=True)]
    return BootSpec(
        kernel=image.file("probe.elf"),
        kernel_format="pvh",
        mem_mib=64,
        cpus=2,
        disks=disks,
        vsock=VsockSpec(guest_cid=3) if hypervisor in WITH_VSOCK else None,
        ready=agent_ready_pattern(),
        fail_patterns=list(COMMON_FAIL_PATTERNS),
        boot_timeout_s=20.0,
        # rtc=on: the reference MC146818 for the CMOS checks (microvm leaves it out under KVM);
        # ioapic2=off: virtio-mmio GSIs 5+ on the one IOAPIC the probe drives, as on god.
        qemu_machine="microvm,rtc=on,ioapic2=off",
    )


def boot_aarch64(image: BuiltImage) -> BootSpec:
    """The arm64 probe: an arm64 Image at RAM base + 0x80000 on QEMU virt (and god's arm64
    machine), PL011 console; it starts vCPU 1 itself with PSCI CPU_ON. No virtio driver yet,
    so no disks."""
    return BootSpec(
        kernel=image.file("probe.img"),
        kernel_format="flat",
        mem_mib=64,
        cpus=2,
        ready=agent_ready_pattern(),
        fail_patterns=list(COMMON_FAIL_PATTERNS),
        boot_timeout_s=20.0,
        qemu_machine="virt,gic-version=3",
    )


def aarch64_recipe() -> ImageRecipe:
    """The arm64 probe (guests/probe/aarch64, sharing the agent's portable C with the x86 one)."""
    recipe = guest_recipe("probe", needs_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"), version="1",
                          extra_inputs=(Path(testdisk.__file__),))
    return replace(recipe, name="probe-aarch64", arch="aarch64",
                   command=(recipe.command[0], str(recipe.sources / "aarch64" / "build.py"), "--out", "{out}"))


stack = Stack(
    name="god",
    description="the probe kernel (agent) on god, this project's Python KVM VMM",
    recipe=guest_recipe("probe", needs_tool("gcc", "gcc"), needs_tool("ld", "binutils"), version="2",
                        extra_inputs=(Path(testdisk.__file__),)),
    boot=boot,
    default_hypervisor="god",
    hypervisors=("god", "qemu", "god-svm", "god-kirq", "qemu-virt", "god-arm64"),
    capabilities=frozenset({"serial", "agent", "mmio", "irq", "timer", "smp", "dma", "portseq", "blk", "vsock"}),
    missing_on={"qemu": frozenset({"vsock"}), "god-svm": frozenset({"vsock"}),
                # the arm64 probe: no port I/O on arm64, no virtio driver or DMA area yet
                "qemu-virt": frozenset({"blk", "vsock", "dma", "portseq"}),
                "god-arm64": frozenset({"blk", "vsock", "dma", "portseq"})},
    # (god-svm: no vsock for the probe in the lane, WITH_VSOCK above)
    channels={"agent": agent_channel},
    arch_recipes={"aarch64": aarch64_recipe()},
)
