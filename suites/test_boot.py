"""Boot and console conformance: every stack boots to its ready line, logs its console,
answers its agent (where it has one), and stops cleanly with the status it asked for. These are
the harness's contracts (docs/writing-a-stack.md, docs/agent-protocol.md) and QEMU's
isa-debug-exit semantics; each check names its clause."""

from __future__ import annotations

import pytest

from pytest_vmm import Machine


@pytest.mark.vmm_spec_allows("measured boot time: the contract asks only for a ready guest", "boot_ms_measured")
def test_boots_to_ready(machine: Machine) -> None:
    """docs/writing-a-stack.md (the stack contract): the guest reaches its ready pattern, the
    boot time is measured, and the hypervisor is still running."""
    assert machine.boot_ms is not None and machine.boot_ms > 0, f"boot time not measured: {machine.boot_ms}"
    machine.record("boot_ms_measured", round(machine.boot_ms, 1))
    assert machine.is_alive(), f"hypervisor exited with status {machine.exit_status} right after boot"


def test_console_log_is_written(machine: Machine) -> None:
    """docs/writing-a-stack.md: the serial console is logged to the machine's console log, non-
    empty once ready."""
    log = machine.console_text()
    assert machine.console_log.exists(), f"no console log at {machine.console_log}"
    assert log, "console log is empty although the guest reported ready"


def test_shutdown_leaves_nothing_behind(machine: Machine) -> None:
    """docs/architecture.md (machine lifetime): shutdown stops the hypervisor and leaves no
    process, socket or run directory."""
    pid, run_dir = machine.pid, machine.run_dir
    machine.shutdown()  # raises MachineLeak when a process, socket or the run dir survives
    assert not machine.is_alive(), f"hypervisor pid {pid} still running after shutdown"
    assert not run_dir.exists(), f"run dir {run_dir} left behind"


@pytest.mark.vmm_requires("agent")
def test_agent_hello_names_the_guest(machine: Machine) -> None:
    """docs/agent-protocol.md, 'hello': the reply names the guest, the target's architecture
    (x86_64, aarch64), protocol 1 (PROTOCOL_VERSION) and at least one vCPU."""
    hello = machine.agent.hello()
    assert hello.arch == machine.arch, f"expected arch {machine.arch}, guest says {hello.arch!r}"
    assert hello.proto == 1, f"expected agent protocol 1, guest speaks {hello.proto}"
    assert hello.cpus >= 1, f"expected at least 1 vCPU, guest reports {hello.cpus}"
    assert hello.name, "guest did not give its name"


@pytest.mark.vmm_requires("agent")
def test_agent_survives_console_garbage(machine: Machine) -> None:
    """docs/agent-protocol.md, framing: lines that are not a valid request frame (noise, a bad
    checksum) are ignored, and the next request is answered."""
    # Noise on the serial line (a human typing, a half-written request) must not wedge the agent.
    machine.send(b"\x00\xff garbage \x1b[2J\r\n@>99 nonsense *zz\r\n\r\n")
    hello = machine.agent.hello()
    assert hello.arch == machine.arch, f"agent answered {hello} after garbage"


@pytest.mark.vmm_requires("agent")
@pytest.mark.parametrize("status", [0, 7])
def test_exit_status_reaches_the_host(machine: Machine, status: int) -> None:
    """QEMU isa-debug-exit device (hw/misc/debugexit.c), which god's exit port follows: a write
    of v to port 0xf4 ends the machine with exit status (v << 1) | 1. On arm64 the probe asks
    for the same status through Arm semihosting SYS_EXIT (Arm semihosting spec 2.0, 6.5,
    ADP_Stopped_ApplicationExit; QEMU TCG) or PSCI SYSTEM_OFF carrying v in x1 (god). An exit
    that does not stop the machine is a failure (ExitIgnored), never a skip."""
    machine.agent.exit(status)
    observed = machine.wait_exit(10.0)
    expected = (status << 1) | 1  # isa-debug-exit semantics, same on god and QEMU
    assert observed == expected, f"guest exit({status}): expected hypervisor status {expected}, got {observed}"
