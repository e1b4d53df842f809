"""PSCI conformance (Arm Power State Coordination Interface, Arm DEN0022), called over HVC (the
conduit QEMU virt and KVM use at EL1): the version, CPU_ON for an online and for an offline
vCPU (the probe starts vCPU 1 at boot), AFFINITY_INFO, and SYSTEM_OFF ending the machine."""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.protocol import encode_request

PSCI_VERSION, AFFINITY_INFO, SYSTEM_OFF = 0x84000000, 0xC4000004, 0x84000008
SUCCESS, ALREADY_ON = 0, -4
AFFINITY_ON = 0

pytestmark = [pytest.mark.vmm_arch("aarch64"), pytest.mark.vmm_requires("agent"),
              pytest.mark.vmm_shared_state(probe=None, reason="the shared calls change no state: a version read, "
                                           "CPU_ON of a CPU already on")]


def signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


@pytest.mark.vmm_shared
def test_psci_version_is_at_least_0_2(machine: Machine) -> None:
    """DEN0022 5.1.1 (PSCI_VERSION): bits [31:16] major, [15:0] minor; CPU_ON by function ID and
    SYSTEM_OFF need PSCI 0.2 or later."""
    ret = machine.agent.request("psci", fid=PSCI_VERSION).int("ret")
    major, minor = ret >> 16 & 0x7FFF, ret & 0xFFFF
    machine.record("psci_version", major * 100 + minor)
    assert (major, minor) >= (0, 2), f"PSCI_VERSION {ret:#x}: expected 0.2 or later, observed {major}.{minor}"


@pytest.mark.vmm_shared
@pytest.mark.vmm_requires("smp")
def test_cpu_on_started_the_offline_secondary(machine: Machine) -> None:
    """DEN0022 5.6 (CPU_ON): for a CPU that is off, CPU_ON returns SUCCESS and the CPU starts at
    the given entry point with the context id in x0; AFFINITY_INFO (5.7) then reports it ON (0).
    The probe called CPU_ON for vCPU 1 at boot; vCPU 1 counted itself in and answers."""
    agent = machine.agent
    hello = agent.hello()
    assert signed(int(hello.fields["boot_cpu_on"], 16)) == SUCCESS, f"boot CPU_ON of vCPU 1: {hello.fields}"
    assert hello.cpus == 2, f"vCPU 1 did not come online: cpus={hello.cpus}"
    agent.ping(cpu=1)
    state = signed(agent.request("psci", fid=AFFINITY_INFO, a1=1, a2=0).int("ret"))
    assert state == AFFINITY_ON, f"AFFINITY_INFO(vCPU 1): expected ON (0), observed {state}"


@pytest.mark.vmm_shared
@pytest.mark.vmm_requires("smp")
@pytest.mark.parametrize("target", [0, 1])
def test_cpu_on_of_an_online_cpu_returns_already_on(machine: Machine, target: int) -> None:
    """DEN0022 5.6.2 (CPU_ON return values): ALREADY_ON (-4) when the target is already on; the
    target keeps running (it still answers)."""
    agent = machine.agent
    r = agent.request("cpu_on", target=target)
    assert signed(r.int("ret")) == ALREADY_ON, f"CPU_ON of online vCPU {target}: expected -4, observed {signed(r.int('ret'))}"
    agent.ping(cpu=target)


@pytest.mark.vmm_shared(False)
def test_system_off_ends_the_machine(machine: Machine) -> None:
    """DEN0022 5.10 (SYSTEM_OFF): the call does not return and the system powers off; the
    hypervisor ends with status 0, a clean power-off (QEMU -no-reboot; god: SYSTEM_OFF with x1 = 0)."""
    machine.send(encode_request(9999, "psci", {"fid": SYSTEM_OFF}))
    status = machine.wait_exit(10.0 * machine.timeout_factor)
    assert status == 0, f"SYSTEM_OFF: expected the machine to end with status 0, observed {status}"
