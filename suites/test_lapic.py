"""Local APIC registers (Intel SDM volume 3A, chapter 11 / 12 "Advanced Programmable
Interrupt Controller": 11.5.4 APIC timer -- divide configuration, current count; 11.8.3.1
task and processor priorities) at 0xfee00000, on vCPU 0.

The agent uses the LAPIC timer (divide by 16) for its own waits, so a check changes the
divide configuration only between two of its own accesses and puts it back at once. Every
check puts back what it changes (TDCR, TPR; a stopped timer is the agent's idle state), so the
module's checks share one guest (vmm_shared; --vmm-fresh boots one per check).
"""

from __future__ import annotations

import pytest

from pytest_vmm import Machine

from . import device_state
from .x86_platform import LAPIC

pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("mmio", "irq"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.lapic)]

TPR, TMICT, TMCCT, TDCR = 0x80, 0x380, 0x390, 0x3E0
AGENT_TDCR = 0x3  # divide by 16 (guests/probe/intr.c)
TEST_VECTOR = 0x55  # priority class 5


@pytest.mark.parametrize("value", [0x0, 0x1, 0x2, 0x8, 0xB])
def test_divide_configuration_round_trip(machine: Machine, value: int) -> None:
    """11.5.4: TDCR bits 0, 1 and 3 select the divisor (bit 2 is reserved, 0); what is
    written there reads back."""
    agent = machine.agent
    try:
        agent.mmio_write(LAPIC + TDCR, 4, value)
        observed = agent.mmio_read(LAPIC + TDCR, 4)
    finally:
        agent.mmio_write(LAPIC + TDCR, 4, AGENT_TDCR)
    assert observed & 0xB == value, f"TDCR: wrote {value:#x}, read {observed:#x}"


def test_current_count_is_read_only(machine: Machine) -> None:
    """11.5.4: writing 0 to the initial-count register stops the timer, and the current
    count then reads 0; the current-count register is read-only, so a write to it changes
    nothing. (The agent re-arms its timer for each wait; stopping a leftover one is harmless.)"""
    agent = machine.agent
    agent.mmio_write(LAPIC + TMICT, 4, 0)
    agent.mmio_write(LAPIC + TMCCT, 4, 0x12345678)
    observed = agent.mmio_read(LAPIC + TMCCT, 4)
    assert observed == 0, f"TMCCT of a stopped timer after a write of 0x12345678: expected 0, read {observed:#x}"


def test_tpr_holds_back_lower_priority_interrupts(machine: Machine) -> None:
    """11.8.3.1: the processor accepts only fixed interrupts whose priority class (vector
    bits 7-4) is above the processor priority; with TPR class 6, a vector 0x55 self-IPI
    waits in IRR and is taken once TPR drops to 0."""
    agent = machine.agent
    agent.reset_counts()
    try:
        agent.mmio_write(LAPIC + TPR, 4, 0x60)
        held = agent.ipi(0, TEST_VECTOR)
        waiting = agent.vector_count(TEST_VECTOR)
    finally:
        agent.mmio_write(LAPIC + TPR, 4, 0)
    agent.ping()
    taken = agent.vector_count(TEST_VECTOR)
    assert held.sent == 1
    assert waiting == 0, f"vector {TEST_VECTOR:#x} taken {waiting} time(s) with TPR 0x60 (class 6 masks class 5)"
    assert taken == 1, f"vector {TEST_VECTOR:#x} after TPR was lowered: taken {taken} time(s), expected 1"
