"""microkernelia sleeps when it has nothing to do: after a short spin the scheduler HLTs until
the console, the virtio-vsock device's line or a bounding LAPIC one-shot wakes it
(kernel/src/sched.rs), so an idle unikernel costs its host little, and an MCP request still
wakes it.

Runs on the microkernelia stack only (`pytest --vmm=microkernelia tests/microkernelia`)."""

from __future__ import annotations

import time

import pytest

from pytest_vmm import Machine
from pytest_vmm.mcp import connect_machine

pytestmark = pytest.mark.vmm_requires("agent", "mcp")

# kernel/src/intr.rs VEC_VIRTIO: the vector virtio-mmio lines are routed to while it sleeps.
VEC_VIRTIO = 0xE5
# Longer than the scheduler's spin before it sleeps (2 ms), with margin for the host.
LONGER_THAN_THE_SPIN_S = 0.05


@pytest.fixture
def mk(machine: Machine) -> Machine:
    if machine.config.stack != "microkernelia":
        pytest.skip(f"microkernelia-specific (stack is {machine.config.stack})")
    return machine


def test_idle_unikernel_costs_its_host_little_cpu(mk: Machine) -> None:
    with connect_machine(mk, timeout=30.0) as client:
        client.discover()  # MCP served once (2026-07-28 has no ping); the connection stays open and quiet
        mk.agent.ping()
        time.sleep(0.2)
        share = mk.cpu_share_while(lambda: time.sleep(1.5))
    if share is None:
        pytest.skip("needs /proc to read the VMM's CPU time")
    mk.record("idle_cpu_percent", round(share * 100, 1))
    # A polling guest costs a whole core; a sleeping one wakes about 20 times a second (2-3%
    # alone; in a lane the emulated machine around it adds its own idle cost).
    limit = mk.config.hypervisor.idle_cpu_limit
    assert share < limit, (
        f"{mk.target_id} with nothing to do for 1.5 s: expected < {limit:.0%} of a core, "
        f"observed {share:.1%} (is the scheduler spinning instead of sleeping?)")


def test_an_mcp_request_wakes_the_sleeping_kernel(mk: Machine) -> None:
    agent = mk.agent
    before = agent.vector_count(VEC_VIRTIO)
    with connect_machine(mk, timeout=30.0) as client:
        for _ in range(5):
            time.sleep(LONGER_THAN_THE_SPIN_S)  # the kernel is asleep now
            assert isinstance(client.discover(), dict)
        assert client.health()["status"] == "ok"
    wakeups = agent.vector_count(VEC_VIRTIO) - before
    mk.record("virtio_wakeups", wakeups)
    assert wakeups >= 1, (
        f"5 MCP requests to a sleeping kernel: expected the vsock device's interrupt (vector "
        f"{VEC_VIRTIO:#x}) to wake it at least once, observed {wakeups} deliveries")
