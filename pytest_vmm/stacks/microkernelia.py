"""Stack ``microkernelia``: the Rust no_std unikernel serving MCP over virtio-vsock, on god."""

from __future__ import annotations

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec, BuiltImage, Stack, VsockSpec
from pytest_vmm.stacks._common import COMMON_FAIL_PATTERNS, guest_recipe, needs_tool

READY = rb"microkernelia: mcp ready"


def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
    return BootSpec(
        kernel=image.file("microkernelia.elf"),
        kernel_format="pvh",
        mem_mib=128,
        cpus=1,
        vsock=VsockSpec(guest_cid=3),
        ready=READY,
        fail_patterns=list(COMMON_FAIL_PATTERNS),
        boot_timeout_s=30.0,
    )


stack = Stack(
    name="microkernelia",
    description="Rust no_std unikernel serving MCP over virtio-vsock (seed 002)",
    recipe=guest_recipe("microkernelia", needs_tool("cargo", "cargo")),
    boot=boot,
    default_hypervisor="god",
    hypervisors=("god", "qemu"),
    capabilities=frozenset({"serial", "mcp", "vsock"}),
    needs_from_hypervisor=frozenset({"vsock"}),
)
