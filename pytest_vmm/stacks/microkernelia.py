"""Stack ``microkernelia``: the Rust no_std unikernel serving MCP over virtio-vsock, on god.

The model disk (``model.img``, virtio-blk) is attached read-only; QEMU's virtio-mmio is asked
for virtio 1.x (the guest drives virtio-mmio version 2 only). The agent answers the whole
protocol but its SMP parts (one vCPU): port and guarded MMIO access (faults -> err 5), IOAPIC
lines, vector counts, EOI, self-IPIs, the console UART's receive path, clock, HLT, the LAPIC
one-shot and the PIT (docs/microkernelia.md, "Rings": interrupts are taken from ring 3 by
small ring-0 stubs).
"""

from __future__ import annotations

from pytest_vmm.host import HostInfo
from pytest_vmm.mcp import MCP_PORT as MCP_PORT  # one definition (the guest's is checked against it)
from pytest_vmm.stack import BootSpec, BuiltImage, Disk, Stack, VsockSpec
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    agent_channel,
    guest_recipe,
    mcp_channel,
    needs_tool,
)

READY = rb"microkernelia: mcp ready"


def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
    return BootSpec(
        kernel=image.file("microkernelia.elf"),
        kernel_format="pvh",
        mem_mib=128,
        cpus=1,
        disks=[Disk(image.file("model.img"), read_only=True)],
        vsock=VsockSpec(guest_cid=3),
        ready=READY,
        fail_patterns=list(COMMON_FAIL_PATTERNS),
        boot_timeout_s=30.0,
        hypervisor_args={"qemu": ["-global", "virtio-mmio.force-legacy=false"]},
    )


stack = Stack(
    name="microkernelia",
    description="Rust no_std unikernel serving MCP over virtio-vsock (seed 002)",
    recipe=guest_recipe("microkernelia", needs_tool("cargo", "cargo"), version="2"),
    boot=boot,
    default_hypervisor="god",
    # god-svm: god on the real kvm_amd in the SVM lane, the vsock carried out by the lane link
    hypervisors=("god", "qemu", "god-svm"),
    capabilities=frozenset({"serial", "agent", "mcp", "vsock", "mmio", "irq", "timer"}),
    channels={"agent": agent_channel, "mcp": mcp_channel},
    needs_from_hypervisor=frozenset({"vsock"}),
)
