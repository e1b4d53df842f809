"""microkernelia's agent runs at CPL3: faults at guarded accesses come back as err 5 (ring-0
exception-table fixup in boot.S) and interrupts reach ring 3 without disturbing MCP.

Runs on the microkernelia stack only (`pytest --vmm=microkernelia tests/microkernelia`)."""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.client import AgentError
from pytest_vmm.agent.protocol import ErrorCode

# "mcp": only microkernelia offers it, so other stacks skip before booting anything.
pytestmark = pytest.mark.vmm_requires("agent", "mcp")


@pytest.fixture
def mk(machine: Machine) -> Machine:
    if machine.config.stack != "microkernelia":
        pytest.skip(f"microkernelia-specific (stack is {machine.config.stack})")
    return machine


@pytest.mark.parametrize(("addr", "kind"), [
    (1 << 44, "page fault at"),                   # no page table behind it
    (0x0000_8000_0000_0000, "general protection fault at"),  # non-canonical
])
def test_faulting_access_reports_and_keeps_serving(mk: Machine, addr: int, kind: str) -> None:
    agent = mk.agent
    for op in ("read", "write"):
        with pytest.raises(AgentError) as info:
            if op == "read":
                agent.mmio_read(addr, 8)
            else:
                agent.mmio_write(addr, 4, 0x5A)
        assert info.value.code == ErrorCode.FAULT, f"{op} of {addr:#x}: expected FAULT, got {info.value}"
        assert kind in info.value.text and f"{addr:#x}" in info.value.text, info.value.text
    assert agent.hello().name == "microkernelia"


def test_stack_guard_page_read_is_a_fault_not_a_panic(mk: Machine) -> None:
    agent = mk.agent
    log = mk.console_log.read_text(errors="replace")
    guard = int(log.split("stack guard page at ")[1].split()[0], 16)
    with pytest.raises(AgentError) as info:
        agent.mmio_read(guard + 8, 8)
    assert info.value.code == ErrorCode.FAULT and "page fault" in info.value.text
    assert agent.hello().name == "microkernelia"


def test_hello_reports_calibrated_clock_and_caps(mk: Machine) -> None:
    fields = mk.agent.hello().fields
    assert fields.get("clock") == "pit", f"TSC not calibrated against the PIT: {fields}"
    assert set(fields["caps"].split(",")) >= {"port", "mmio", "irq", "timer", "uart", "exit"}
    assert int(fields["lapic_khz"]) > 0


def test_other_cpu_is_refused(mk: Machine) -> None:
    with pytest.raises(AgentError) as info:
        mk.agent.ping(cpu=1)
    assert info.value.code == ErrorCode.NO_CPU
