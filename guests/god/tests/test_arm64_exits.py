"""How an arm64 guest's end becomes god's exit status, with a fake vCPU (no KVM).

PSCI (Arm DEN0022D): SYSTEM_OFF (5.10) and SYSTEM_RESET (5.11) reach the VMM as
KVM_EXIT_SYSTEM_EVENT SHUTDOWN / RESET (api.rst, KVM_EXIT_SYSTEM_EVENT); SYSTEM_RESET2 (5.20)
as RESET with the KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2 flag, reset type in x1 and cookie
in x2. Statuses are those of the x86 side: 0 clean stop, 6 reset, 10 crash, and the exit
port's (value << 1) | 1 for god's vendor SYSTEM_RESET2 (reset type 0x8000060D)."""

from __future__ import annotations

import struct

import pytest
from god.arch.aarch64.machine import _Unmapped
from god.arch.aarch64.runner import RESET2_GOD_EXIT, Arm64VcpuRunner
from god.devices.bus import Bus
from god.devices.exitport import ExitPort
from god.kvm import arm64 as A
from god.kvm import ioctls as k
from god.kvm import structs as s
from god.memory import GuestMemory


class FakeArmVcpu:
    index = 1
    fd = -1

    def __init__(self) -> None:
        self.run = bytearray(4096)
        self.regs = {A.REG_PC: 0x40080010, A.REG_PSTATE: 0x3C5, A.REG_ESR_EL1: 0,
                     A.REG_FAR_EL1: 0}

    def get_one_reg(self, reg: int) -> int:
        return self.regs.get(reg, 0)


@pytest.fixture
def runner():
    mem = GuestMemory([(0x4000_0000, 0x10000)])
    r = Arm64VcpuRunner(FakeArmVcpu(), Bus("pio", 1), Bus("mmio", 1 << 48), mem,
                        lambda e: None, "arm64")
    yield r
    mem.close()


def event(r, typ: int, flags: int | None = None):
    struct.pack_into("<II", r.vcpu.run, s.RUN_SYSTEM_EVENT_TYPE, typ, 0 if flags is None else 1)
    if flags is not None:
        struct.pack_into("<Q", r.vcpu.run, s.RUN_SYSTEM_EVENT_DATA, flags)
    return r._slow_exit(k.EXIT_SYSTEM_EVENT)


def test_system_off_is_a_clean_stop(runner):
    e = event(runner, k.SYSTEM_EVENT_SHUTDOWN)
    assert (e.status, e.message) == (0, "")


def test_system_reset_and_crash(runner):
    e = event(runner, k.SYSTEM_EVENT_RESET)
    assert e.status == 6 and "PSCI SYSTEM_RESET" in e.message and e.message.startswith("vCPU 1")
    assert event(runner, k.SYSTEM_EVENT_CRASH).status == 10
    assert event(runner, 77).status == 10


@pytest.mark.parametrize("value", [0, 1, 21, 127])
def test_reset2_vendor_exit_matches_the_exit_port(runner, value):
    port_status = []
    ExitPort(port_status.append).write(0, 1, value)
    runner.vcpu.regs[A.x_reg(1)] = RESET2_GOD_EXIT
    runner.vcpu.regs[A.x_reg(2)] = value
    e = event(runner, k.SYSTEM_EVENT_RESET, flags=1)
    assert e.status == port_status[0] == (value << 1) | 1


def test_reset2_other_type_is_a_reset(runner):
    runner.vcpu.regs[A.x_reg(1)] = 0  # SYSTEM_WARM_RESET
    e = event(runner, k.SYSTEM_EVENT_RESET, flags=1)
    assert e.status == 6 and "SYSTEM_RESET2 (type 0x0" in e.message


def test_nisv_names_the_address(runner):
    struct.pack_into("<QQ", runner.vcpu.run, s.RUN_ARM_NISV_ESR_ISS, 0x1234, 0x0900_0008)
    e = runner._slow_exit(k.EXIT_ARM_NISV)
    assert e.status == 10 and "KVM_EXIT_ARM_NISV" in e.message and "0x9000008" in e.message
    assert "pc=0x40080010" in e.message


@pytest.mark.parametrize("reason", [k.EXIT_FAIL_ENTRY, k.EXIT_INTERNAL_ERROR, k.EXIT_IO, 99])
def test_failures_are_named_and_nonzero(runner, reason):
    e = runner._slow_exit(reason)
    assert e.status == 10 and e.message.startswith("vCPU 1: ") and "\n" not in e.message


def test_unmapped_mmio_faults_with_a_message():
    got = []
    dev = _Unmapped(0x0B00_0000, got.append)
    assert dev.read(0, 4) == 0
    dev.write(0, 1, 0x5A)
    assert "read of 4 bytes at unmapped address 0xb000000" in got[0]
    assert "write of 1 bytes (0x5a) to unmapped address" in got[1]
