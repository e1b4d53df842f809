"""god's stderr inside the SVM lane reaches the host on a channel of its own (the lane's
isa-debugcon, pytest_vmm/hypervisors/lane_port_log.py), not the console it used to share with
the guest's serial output, where a warning could land inside an agent reply."""

from __future__ import annotations

import time

import pytest

from pytest_vmm import Machine

CMOS_INDEX, CMOS_DATA = 0x70, 0x71
RTC_REGISTER_A = 0x0A
# MC146818 register A: DV=000 (a divider god does not model: it warns once), RS=0110
UNMODELLED_DIVIDER = 0x06
DEFAULT_REGISTER_A = 0x26  # DV=010 (32.768 kHz), RS=0110: what god's CMOS starts with
WARNING = "RTC register A divider"

pytestmark = [pytest.mark.vmm_stacks("god@god-svm"), pytest.mark.vmm_requires("portseq"),
              pytest.mark.vmm_shared(False)]


def test_god_warning_goes_to_the_hypervisor_log_not_the_console(machine: Machine) -> None:
    agent = machine.agent
    agent.outb(CMOS_INDEX, RTC_REGISTER_A)
    agent.outb(CMOS_DATA, UNMODELLED_DIVIDER)
    agent.outb(CMOS_DATA, DEFAULT_REGISTER_A)
    deadline = time.monotonic() + 20
    log = ""
    while WARNING not in log and time.monotonic() < deadline:
        time.sleep(0.2)
        log = machine.stderr_log.read_text(errors="replace")
    agent.ping()  # the console still carries the agent's replies
    console = machine.console_log.read_text(errors="replace")
    assert WARNING in log, f"god's warning did not reach {machine.stderr_log}: {log[-2000:]!r}"
    assert WARNING not in console, f"god's warning is on the lane console: {console[-2000:]!r}"
