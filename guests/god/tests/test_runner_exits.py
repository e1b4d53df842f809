"""Terminal exit decoding in the vCPU runner, with a fake vCPU (no KVM): every exit reason
god handles maps to the documented status and a readable message."""

from __future__ import annotations

import struct

import pytest
from god.devices.bus import Bus
from god.kvm import ioctls as k
from god.kvm import structs as s
from god.memory import GuestMemory
from god.vcpu.explain import classify
from god.vcpu.runner import (
    STATUS_GUEST_CRASH,
    STATUS_GUEST_RESET,
    STATUS_OK,
    STATUS_TRIPLE_FAULT,
    VcpuRunner,
)


class FakeVcpu:
    index = 0
    fd = -1

    def __init__(self, code: bytes, mem: GuestMemory) -> None:
        self.run = bytearray(4096)
        mem.write(0x1000, code)

    def get_regs(self):
        r = s.KvmRegs()
        r.rip = 0x1000
        return r

    def get_sregs(self):
        sr = s.KvmSregs()
        sr.efer = 0x500
        sr.cs.l = 1
        sr.cr0 = 0x1  # paging off: rip is the physical address
        return sr

    def translate(self, linear):
        return linear


@pytest.fixture
def runner():
    mem = GuestMemory([(0, 0x10000)])
    r = VcpuRunner(FakeVcpu(bytes.fromhex("0f57c0"), mem), Bus("pio", 0x10000),
                   Bus("mmio", 1 << 48), mem, lambda e: None, "pvm")
    yield r
    mem.close()


def test_system_events(runner):
    run = runner.vcpu.run
    for typ, status in ((k.SYSTEM_EVENT_SHUTDOWN, STATUS_OK), (k.SYSTEM_EVENT_RESET, STATUS_GUEST_RESET),
                        (k.SYSTEM_EVENT_CRASH, STATUS_GUEST_CRASH)):
        struct.pack_into("<I", run, s.RUN_SYSTEM_EVENT_TYPE, typ)
        assert runner._slow_exit(k.EXIT_SYSTEM_EVENT).status == status


def test_shutdown_is_triple_fault(runner):
    e = runner._slow_exit(k.EXIT_SHUTDOWN)
    assert e.status == STATUS_TRIPLE_FAULT and "rip=0x1000" in e.message and "0f 57 c0" in e.message


def test_fail_entry(runner):
    struct.pack_into("<Q", runner.vcpu.run, s.RUN_FAIL_ENTRY_REASON, 0x21)
    e = runner._slow_exit(k.EXIT_FAIL_ENTRY)
    assert e.status == STATUS_GUEST_CRASH and "reason 0x21" in e.message


def test_internal_error_names_the_instruction(runner):
    struct.pack_into("<II", runner.vcpu.run, s.RUN_INTERNAL_SUBERROR, 1, 0)
    e = runner._slow_exit(k.EXIT_INTERNAL_ERROR)
    assert e.status == STATUS_GUEST_CRASH
    assert "instruction emulation failed" in e.message
    assert "SSE instruction (xorps) in ring 0 under PVM" in e.message


def test_hlt_exit_and_unknown_exit(runner):
    assert "halted" in runner._slow_exit(k.EXIT_HLT).message
    assert "unhandled exit DEBUG" in runner._slow_exit(k.EXIT_DEBUG).message
    assert runner._slow_exit(k.EXIT_INTR) is None


@pytest.mark.parametrize("code,name", [
    ("0f57c0", "xorps"), ("660f6ec0", "movd"), ("f0480fc74d20", "cmpxchg16b"),
    ("480fae2f", "xrstor"), ("0f01ca", "clac"), ("9b", "fwait"), ("cc", "int3"),
    ("d9c9", "x87"), ("c5f877", "AVX"), ("0fae05", "fxsave"), ("90", None),
])
def test_classify(code, name):
    got = classify(bytes.fromhex(code))
    assert (got is None) if name is None else (name in got), got
