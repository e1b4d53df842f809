"""Stack ``zigu``: the Zig capability microkernel (guests/zigu) on QEMU microvm, Firecracker or god."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec, BuiltImage, ChannelHost, Stack
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    GUESTS,
    agent_channel,
    guest_recipe,
    needs_python_module,
)

READY = rb"zigu: ready"
# zigu's Python adapter: the ABI's host library binding, the in-guest channel, the checks.
ADAPTER = GUESTS / "zigu" / "adapter" / "python-3.12"
ABI_TIMEOUT_S = 30.0


def adapter(name: str) -> ModuleType:
    """A module of zigu's adapter (``abi_checks``, ``ukernel_abi``, ``ukernel_channel``).

    Its modules import each other by bare name, so the adapter directory is put on sys.path
    here, once, rather than by every suite that uses them.
    """
    if str(ADAPTER) not in sys.path:
        sys.path.append(str(ADAPTER))
    return importlib.import_module(name)


def abi_channel(machine: ChannelHost) -> object:
    """``machine.channel("abi")``: ABI calls performed by the running kernel (``@abi`` lines on
    the console), with the same methods as the host library's ``HostAbi``."""
    return adapter("ukernel_channel").GuestAbi(machine, timeout=ABI_TIMEOUT_S)


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
    # cold_build_s: 127 s here with zig's own cache cold
    recipe=guest_recipe("zigu", needs_python_module("ziglang", "ziglang"), cold_build_s=130.0),
    boot=boot,
    default_hypervisor=default_hypervisor,
    hypervisors=("qemu", "god", "firecracker"),
    # The agent (guests/zigu/kernel/agent.zig) runs beside the @abi channel on one vCPU: no "smp".
    capabilities=frozenset({"serial", "abi", "agent", "mmio", "irq", "timer"}),
    channels={"agent": agent_channel, "abi": abi_channel},
)
