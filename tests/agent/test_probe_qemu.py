"""The probe kernel under QEMU, driven through AgentClient: the protocol end to end.

Boots guests/probe's image directly with pexpect (no plugin machinery), so a failure here
points at the probe or the protocol, not at the machine fixture. Every VM is killed at the end
of its test and checked to be gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import pytest

from pytest_vmm.agent.client import AgentClient, AgentError
from pytest_vmm.agent.protocol import ErrorCode, fnv1a32

REPO = Path(__file__).resolve().parents[2]
QEMU = shutil.which("qemu-system-x86_64")
KVM_OK = os.access("/dev/kvm", os.R_OK | os.W_OK)

pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not on PATH")


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not on PATH: cannot build the probe kernel")
    out = tmp_path_factory.mktemp("probe")
    proc = subprocess.run([sys.executable, str(REPO / "guests/probe/build.py"), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"probe build failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def qemu_argv(kernel: Path, machine: str, accel: str, cpus: int) -> list[str]:
    cpu = "host,arch-capabilities=off" if accel == "kvm" else "max"  # PVM rejects MSR 0x10a
    return [
        "-M", machine, "-accel", accel, "-cpu", cpu, "-smp", str(cpus), "-m", "128",
        "-display", "none", "-monitor", "none", "-no-reboot",
        # signal=off: a burst byte 0x03 must reach the guest, not kill QEMU
        "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel", str(kernel),
    ]


class Booted:
    def __init__(self, child: pexpect.spawn, agent: AgentClient, boot_s: float) -> None:
        self.child = child
        self.agent = agent
        self.boot_s = boot_s


@contextmanager
def boot(kernel: Path, machine: str, accel: str, cpus: int = 2) -> Iterator[Booted]:
    if accel == "kvm" and not KVM_OK:
        pytest.skip("/dev/kvm is not usable here")
    start = time.monotonic()
    child = pexpect.spawn(QEMU, qemu_argv(kernel, machine, accel, cpus), timeout=30)
    child.delaybeforesend = None  # pexpect sleeps 50 ms before every send by default
    try:
        agent = AgentClient(child, timeout=20)
        agent.wait_ready(timeout=30)
        yield Booted(child, agent, time.monotonic() - start)
    finally:
        child.close(force=True)
        assert not child.isalive(), f"QEMU pid {child.pid} survived close(force=True)"


VARIANTS = [("microvm", "kvm"), ("pc", "kvm"), ("microvm", "tcg"), ("pc", "tcg")]


@pytest.mark.parametrize(("machine", "accel"), VARIANTS, ids=[f"{m}-{a}" for m, a in VARIANTS])
def test_probe_answers_basic_commands(probe_dir: Path, machine: str, accel: str) -> None:
    with boot(probe_dir / "probe.elf", machine, accel) as vm:
        a = vm.agent
        hello = a.hello()
        assert (hello.name, hello.arch, hello.proto) == ("probe", "x86_64", 1), f"hello: {hello}"
        assert hello.cpus == 2, f"expected 2 vCPUs online, hello says {hello.cpus}"
        assert {"port", "mmio", "irq", "timer", "smp"} <= hello.caps, f"caps: {sorted(hello.caps)}"
        assert hello.fields["boot"] == "multiboot", "QEMU prefers the multiboot header when both exist"
        a.outb(0x3FF, 0xA5)  # 16550 scratch register
        assert a.inb(0x3FF) == 0xA5, "UART scratch register did not keep 0xa5"
        assert a.mmio_read(0xFEE00020, 4) >> 24 == 0, "BSP LAPIC ID should be 0"
        assert a.mmio_read(0xFEE00020, 4, cpu=1) >> 24 == 1, "AP LAPIC ID should be 1"
        a.mmio_write(0xFEC00000, 4, 1)  # IOAPIC: select the version register
        version = a.mmio_read(0xFEC00010, 4)
        assert (version >> 16) & 0xFF == 23, f"IOAPIC max redirection entry {version >> 16 & 0xFF}, want 23"
        c1, c2 = a.clock(), a.clock()
        assert c2.tsc > c1.tsc and c2.ns > c1.ns, f"clock not monotonic: {c1} then {c2}"
        a.exit(5)
        vm.child.expect(pexpect.EOF, timeout=10)
        vm.child.close()
        assert vm.child.exitstatus == (5 << 1) | 1, f"exit status {vm.child.exitstatus}, want 11"


def test_probe_boots_through_pvh(probe_dir: Path) -> None:
    with boot(probe_dir / "probe-pvh.elf", "microvm", "kvm" if KVM_OK else "tcg", cpus=1) as vm:
        hello = vm.agent.hello()
        assert hello.fields["boot"] == "pvh", f"boot protocol {hello.fields['boot']!r}, want 'pvh'"
        assert hello.cpus == 1


def test_probe_errors_come_back_as_errors(probe_dir: Path) -> None:
    with boot(probe_dir / "probe.elf", "microvm", "kvm" if KVM_OK else "tcg", cpus=1) as vm:
        a = vm.agent
        cases = [
            (lambda: a.request("no_such_command"), ErrorCode.UNKNOWN_COMMAND),
            (lambda: a.mmio_read(0x1000, 3), ErrorCode.UNSUPPORTED_WIDTH),
            (lambda: a.port_read(0x80, 8), ErrorCode.UNSUPPORTED_WIDTH),
            (lambda: a.request("rd"), ErrorCode.BAD_ARGUMENT),
            (lambda: a.request("rd", addr="zz"), ErrorCode.BAD_ARGUMENT),
            (lambda: a.mmio_read(0x100000000000, 4), ErrorCode.FAULT),  # unmapped: #PF
            (lambda: a.mmio_read(0x8000000000000000, 8), ErrorCode.FAULT),  # non-canonical: #GP
            (lambda: a.clock(cpu=1), ErrorCode.NO_CPU),
        ]
        for call, code in cases:
            with pytest.raises(AgentError) as info:
                call()
            assert info.value.code == code, f"expected error {code.name}, got {info.value}"
        # a request with a bad checksum is answered, not ignored
        vm.child.send(b"@>77 hello *00\n")
        vm.child.expect(rb"@@77 err 1 bad checksum \*[0-9a-f]{2}", timeout=10)
        assert a.hello().name == "probe", "the agent must still answer after errors"


def test_probe_memory_lines_and_fill(probe_dir: Path) -> None:
    """docs/agent-protocol.md, `mrd`/`mwr`: bytes written as hex read back; ``fill=N`` repeats
    the given bytes to exactly N (the byte after stays as it was); a fill past the limit is
    ``err 3`` (BAD_ARGUMENT)."""
    from pytest_vmm.agent.client import MEM_CHUNK, MEM_FILL_MAX

    with boot(probe_dir / "probe.elf", "microvm", "kvm" if KVM_OK else "tcg", cpus=1) as vm:
        a = vm.agent
        base, size = a.dma_area()
        assert size >= MEM_FILL_MAX, f"DMA area {size:#x} is smaller than a fill line"
        data = bytes(range(256)) * 2
        a.mem_write(base, data)
        assert a.mem_read(base, len(data)) == data, "mwr then mrd did not round-trip"
        a.mem_fill(base + 1, 300, 0xA5)
        got = a.mem_read(base, 302)
        assert got == bytes([0]) + bytes([0xA5]) * 300 + bytes([data[301]]), "fill wrote outside or short of its 300 bytes"
        a.request("mwr", addr=base, hex="0102", fill=5)
        assert a.mem_read(base, 6) == bytes([1, 2, 1, 2, 1, 0xA5]), "fill must repeat the pattern, partial at the end"
        with pytest.raises(AgentError) as info:
            a.request("mwr", addr=base, hex="00", fill=MEM_FILL_MAX + 1)
        assert info.value.code == ErrorCode.BAD_ARGUMENT, f"a fill past {MEM_FILL_MAX:#x}: {info.value}"
        a.mem_write(base, bytes(MEM_CHUNK))  # a full chunk is one line the agent accepts


def test_probe_interrupts_timers_and_smp(probe_dir: Path) -> None:
    accel = "kvm" if KVM_OK else "tcg"
    with boot(probe_dir / "probe.elf", "microvm", accel) as vm:
        a = vm.agent
        data = bytes(33 + (i * 7) % 94 for i in range(1000))
        burst = a.uart_burst(data)
        assert burst.received == 1000 and burst.fnv == fnv1a32(data), f"burst: {burst}"
        assert 1 <= burst.irqs <= 1000, f"RX interrupts {burst.irqs} not in 1..1000"
        hold = a.irq_hold(4, lambda: vm.child.send(b"\n"), ms=100)
        assert hold.masked == hold.before, f"masked line delivered: {hold}"
        assert hold.after > hold.masked, f"pending level interrupt not delivered on unmask: {hold}"
        ipi = a.ipi(to=1, vector=0x60, count=5)
        assert (ipi.sent, ipi.received) == (5, 5), f"IPI 0->1: {ipi}"
        assert a.vector_count(0x60, cpu=1) >= 5
        shot = a.lapic_oneshot(5000)
        assert shot.fired == 1 and shot.elapsed_ns >= 4_900_000, f"one-shot 5 ms: {shot}"
        halted = a.halt(100, cpu=1)
        assert 100_000_000 <= halted.ns < 1_000_000_000, f"halt 100 ms took {halted.ns} ns"
        pit = a.pit_measure(ms=500, hz=100)
        assert 45 <= pit.ticks <= 51, f"PIT 100 Hz over 500 ms: {pit.ticks} ticks"
