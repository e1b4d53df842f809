"""Stack ``zigu``: the Zig capability microkernel (guests/zigu) on QEMU microvm, Firecracker or god."""

from __future__ import annotations

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec, BuiltImage, Stack
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    agent_channel,
    guest_recipe,
    needs_python_module,
)

READY = rb"zigu: ready"


def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
    return BootSpec(
        kernel=image.file("zigu.elf"),
        kernel_format="pvh",
        mem_mib=64,
        cpus=1,
        ready=READY,
        fail_patterns=list(COMMON_FAIL_PATTERNS),
        boot_timeout_s=20.0,
        qemu_machine="microvm",
    )


def default_hypervisor(host: HostInfo) -> str:
    # Firecracker is what zigu is made for; QEMU microvm stands in where it is not installed.
    return "firecracker" if host.tool("firecracker") else "qemu"


stack = Stack(
    name="zigu",
    description="Zig microkernel with a capability-gated ABI (seed 001)",
    recipe=guest_recipe("zigu", needs_python_module("ziglang", "ziglang")),
    boot=boot,
    default_hypervisor=default_hypervisor,
    hypervisors=("qemu", "god", "firecracker"),
    # The agent (guests/zigu/kernel/agent.zig) runs beside the @abi channel on one vCPU: no "smp".
    capabilities=frozenset({"serial", "abi", "agent", "mmio", "irq", "timer"}),
    channels={"agent": agent_channel},
)
