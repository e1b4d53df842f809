"""Stack ``god``: the probe kernel (guests/probe) on the god VMM; also ``god@qemu`` for comparison."""

from __future__ import annotations

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec, BuiltImage, Stack
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    agent_channel,
    agent_ready_pattern,
    guest_recipe,
    needs_tool,
)


def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
    return BootSpec(
        kernel=image.file("probe.elf"),
        kernel_format="pvh",
        mem_mib=64,
        cpus=2,
        ready=agent_ready_pattern(),
        fail_patterns=list(COMMON_FAIL_PATTERNS),
        boot_timeout_s=20.0,
        qemu_machine="microvm",
    )


stack = Stack(
    name="god",
    description="the probe kernel (agent) on god, this project's Python KVM VMM",
    recipe=guest_recipe("probe", needs_tool("gcc", "gcc"), needs_tool("ld", "binutils")),
    boot=boot,
    default_hypervisor="god",
    hypervisors=("god", "qemu", "god-svm", "god-kirq"),
    capabilities=frozenset({"serial", "agent", "mmio", "irq", "timer", "smp"}),
    channels={"agent": agent_channel},
)
