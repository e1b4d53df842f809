"""The capability words suites ask for with ``@pytest.mark.vmm_requires``.

Defined once here so a typo in a marker is an error, not a silent skip.
"""

from __future__ import annotations

CAPABILITIES: dict[str, str] = {
    "serial": "a serial console the host can read and write",
    "agent": "answers the guest agent protocol (docs/agent-protocol.md)",
    "mmio": "the agent can do port and MMIO accesses of 1/2/4/8 bytes",
    "irq": "the agent can arm, mask and count interrupts",
    "timer": "the agent can measure PIT/LAPIC timers and read the guest clock",
    "abi": "offers the zigu capability ABI channel",
    "mcp": "serves MCP (JSON-RPC over length-prefixed frames)",
    "vsock": "a virtio-vsock device reachable through the hybrid host socket",
    "blk": "a virtio-blk disk",
    "llm": "runs llama.cpp and reports tokens per second",
    "linux": "a Linux kernel with a shell",
    "smp": "two or more vCPUs",
    "portseq": "the agent runs port-I/O sequences with interrupts off (ioseq, and uart_seq on its "
               "own console UART): the register-level device suites",
    "dma": "the agent names a DMA area in guest RAM and moves bytes to and from RAM (mrd/mwr, "
           "vmmio): the host-side virtio driver (pytest_vmm/virtio) can run",
}


def unknown_capabilities(names: object) -> list[str]:
    return [str(n) for n in names if n not in CAPABILITIES]  # type: ignore[attr-defined]
