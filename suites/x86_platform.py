"""Addresses of the x86 PC the x86 suites test, the conventions god and QEMU (pc, microvm)
both follow: COM1 at port 0x3f8, the IOAPIC at 0xfec00000 (82093AA §3.1: IOREGSEL, then the
IOWIN window at +0x10), the LAPIC at 0xfee00000 (Intel SDM vol. 3A 11.4.1)."""

from __future__ import annotations

from pytest_vmm.agent.client import AgentClient

COM1 = 0x3F8
IOAPIC = 0xFEC00000
IOREGSEL, IOWIN = IOAPIC, IOAPIC + 0x10
LAPIC = 0xFEE00000


def ioapic_read(agent: AgentClient, reg: int) -> int:
    """82093AA §3.1: select ``reg`` in IOREGSEL, read it through IOWIN."""
    agent.mmio_write(IOREGSEL, 4, reg)
    return agent.mmio_read(IOWIN, 4)


def ioapic_write(agent: AgentClient, reg: int, value: int) -> None:
    agent.mmio_write(IOREGSEL, 4, reg)
    agent.mmio_write(IOWIN, 4, value)
