"""Boot and console conformance: every stack boots to its ready line, logs its console,
answers its agent (where it has one), and stops cleanly with the status it asked for."""

from __future__ import annotations

import pytest

from pytest_vmm import Machine


def test_boots_to_ready(machine: Machine) -> None:
    assert machine.boot_ms is not None and machine.boot_ms > 0, f"boot time not measured: {machine.boot_ms}"
    machine.record("boot_ms_measured", round(machine.boot_ms, 1))
    assert machine.is_alive(), f"hypervisor exited with status {machine.exit_status} right after boot"


def test_console_log_is_written(machine: Machine) -> None:
    log = machine.console_text()
    assert machine.console_log.exists(), f"no console log at {machine.console_log}"
    assert log, "console log is empty although the guest reported ready"


def test_shutdown_leaves_nothing_behind(machine: Machine) -> None:
    pid, run_dir = machine.pid, machine.run_dir
    machine.shutdown()  # raises MachineLeak when a process, socket or the run dir survives
    assert not machine.is_alive(), f"hypervisor pid {pid} still running after shutdown"
    assert not run_dir.exists(), f"run dir {run_dir} left behind"


@pytest.mark.vmm_requires("agent")
def test_agent_hello_names_the_guest(machine: Machine) -> None:
    hello = machine.agent.hello()
    assert hello.arch == "x86_64", f"expected arch x86_64, guest says {hello.arch!r}"
    assert hello.proto == 1, f"expected agent protocol 1, guest speaks {hello.proto}"
    assert hello.cpus >= 1, f"expected at least 1 vCPU, guest reports {hello.cpus}"
    assert hello.name, "guest did not give its name"


@pytest.mark.vmm_requires("agent")
def test_agent_survives_console_garbage(machine: Machine) -> None:
    # Noise on the serial line (a human typing, a half-written request) must not wedge the agent.
    machine.send(b"\x00\xff garbage \x1b[2J\r\n@>99 nonsense *zz\r\n\r\n")
    hello = machine.agent.hello()
    assert hello.arch == "x86_64", f"agent answered {hello} after garbage"


@pytest.mark.vmm_requires("agent")
@pytest.mark.parametrize("status", [0, 7])
def test_exit_status_reaches_the_host(machine: Machine, status: int) -> None:
    machine.agent.exit(status)
    observed = machine.wait_exit(10.0)
    expected = (status << 1) | 1  # isa-debug-exit semantics, same on god and QEMU
    assert observed == expected, f"guest exit({status}): expected hypervisor status {expected}, got {observed}"
