"""Interrupt delivery through the guest agent: host-injected UART interrupts, IOAPIC masking,
level-triggered pending delivery, EOI discipline, spurious vectors, IPIs between vCPUs.

The agent routes IOAPIC line L to vector 0x40+L (the console UART, line 4, to 0xe4) and
counts every vector per vCPU; see docs/agent-protocol.md.
"""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.protocol import fnv1a32

UART_LINE = 4
PIT_LINE = 0
SPURIOUS_VECTOR = 0xFF
LAPIC_SVR = 0xFEE000F0
# Printable bytes only: a pty's line discipline may act on control characters (^C, ^Z, ^\).
BURST = bytes(0x21 + (i * 37) % 94 for i in range(1000))

pytestmark = pytest.mark.vmm_requires("irq")


# ---------------------------------------------------------------------------- host-injected (UART RX)
def test_uart_burst_every_byte_arrives(machine: Machine) -> None:
    burst = machine.agent.uart_burst(BURST)
    machine.record("burst_irqs", burst.irqs)
    assert burst.received == len(BURST), f"UART burst: expected {len(BURST)} bytes, guest received {burst.received}"


def test_uart_burst_arrives_in_order(machine: Machine) -> None:
    burst = machine.agent.uart_burst(BURST)
    expected = fnv1a32(BURST)
    assert burst.fnv == expected, (
        f"UART burst digest (FNV-1a): expected {expected:#010x}, observed {burst.fnv:#010x} "
        f"over {burst.received} bytes (bytes lost, duplicated or reordered)")


def test_uart_burst_interrupt_count_bounded(machine: Machine) -> None:
    burst = machine.agent.uart_burst(BURST)
    machine.record("burst_irqs", burst.irqs)
    assert 1 <= burst.irqs <= len(BURST), f"RX interrupts for {len(BURST)} bytes: expected 1..{len(BURST)}, observed {burst.irqs}"


def test_uart_burst_without_overrun(machine: Machine) -> None:
    burst = machine.agent.uart_burst(BURST)
    assert (burst.overruns, burst.dropped) == (0, 0), (
        f"UART burst: expected 0 overruns and 0 dropped, observed overruns={burst.overruns} dropped={burst.dropped}")


def test_pit_irq0_arrives_on_the_advertised_pin(machine: Machine) -> None:
    # ISA IRQ0 reaches IOAPIC pin 2 on QEMU and pin 0 on god; each says so in its MP table,
    # which the probe follows (hello: mptable=1 pit_pin=N).
    agent = machine.agent
    fields = agent.hello().fields
    pin = int(fields.get("pit_pin", "2"))
    machine.record("pit_ioapic_pin", pin)
    pit = agent.pit_measure(ms=200, hz=100)
    low, high = pit.ticks_expected()
    assert pit.ticks > 0 and low <= pit.ticks <= high, (
        f"PIT at 100 Hz for {pit.ns / 1e6:.1f} ms of guest time via IOAPIC pin {pin} "
        f"(MP table: {fields.get('mptable', '?')}): expected {low}..{high} ticks, observed {pit.ticks}")


# ---------------------------------------------------------------------------- masking
def test_masked_line_does_not_deliver(machine: Machine) -> None:
    hold = machine.agent.irq_hold(UART_LINE, lambda: machine.send(b"\n"), ms=200)
    assert hold.masked == hold.before, (
        f"UART line masked at the IOAPIC while a byte arrived: expected count to stay {hold.before}, observed {hold.masked}")


def test_pending_level_interrupt_arrives_on_unmask(machine: Machine) -> None:
    hold = machine.agent.irq_hold(UART_LINE, lambda: machine.send(b"\n"), ms=200)
    assert hold.after == hold.masked + 1, (
        f"level-triggered UART line unmasked with data pending: expected count {hold.masked + 1}, observed {hold.after}")


def test_unarmed_line_counts_nothing(machine: Machine) -> None:
    count = machine.agent.irq_count(13)
    assert count == 0, f"IOAPIC line 13 was never armed: expected 0 interrupts, observed {count}"


def test_mask_state_reads_back(machine: Machine) -> None:
    agent = machine.agent
    agent.irq_arm(13)
    agent.irq_mask(13)
    masked = agent.request("irq_count", line=13).int("masked")
    agent.irq_unmask(13)
    unmasked = agent.request("irq_count", line=13).int("masked")
    agent.irq_mask(13)
    assert (masked, unmasked) == (1, 0), f"IOAPIC mask bit after mask/unmask: expected (1, 0), observed {(masked, unmasked)}"


# ---------------------------------------------------------------------------- EOI discipline (PIT line)
LAPIC_ISR_0x40 = 0xFEE00120  # in-service register word holding vectors 0x40..0x5f (bit 0 = 0x40)


def on_pvm(machine: Machine) -> bool:
    host = getattr(machine.config, "host", None)
    return machine.accel == "kvm" and getattr(host, "kvm_flavour", "") == "pvm"


def held_eoi_counts(machine: Machine) -> tuple[int, int, int]:
    """PIT at 1 kHz with the EOI held back: counts after 50 ms, EOIs released, count 20 ms later."""
    agent = machine.agent
    agent.irq_arm(PIT_LINE, eoi="manual")
    agent.pit_start(1000)
    agent.halt(50)
    held = agent.irq_count(PIT_LINE)
    in_service = agent.mmio_read(LAPIC_ISR_0x40, 4) & 1
    released = agent.eoi()
    agent.halt(20)
    after = agent.irq_count(PIT_LINE)
    agent.pit_stop()
    agent.irq_arm(PIT_LINE, eoi="auto")
    agent.eoi()
    if held > 1 and not in_service and on_pvm(machine):
        # Measured here: god and QEMU alike see ISR[0x40]=0 and PPR=0 right after delivery with
        # no EOI sent; QEMU TCG holds the bit. A property of PVM's LAPIC, not of the VMM.
        pytest.skip(f"PVM's in-kernel LAPIC does not keep a delivered interrupt in service "
                    f"({held} PIT interrupts in 50 ms with no EOI, ISR bit clear): EOI discipline is "
                    f"only testable under TCG or hardware KVM (SVM lane)")
    return held, released, after


def test_unacknowledged_interrupt_blocks_its_vector(machine: Machine) -> None:
    held, _, _ = held_eoi_counts(machine)
    assert held == 1, f"PIT at 1 kHz for 50 ms without EOI: expected exactly 1 interrupt, observed {held}"


def test_eoi_releases_one_pending_interrupt(machine: Machine) -> None:
    held, released, after = held_eoi_counts(machine)
    assert released == 1, f"EOIs held back: expected 1, observed {released}"
    assert after == held + 1, (
        f"after one EOI the latched (IRR) tick must arrive, then block again: expected {held + 1}, observed {after}")


# ---------------------------------------------------------------------------- spurious
def test_lapic_spurious_vector_register(machine: Machine) -> None:
    svr = machine.agent.mmio_read(LAPIC_SVR, 4)
    assert svr & 0x1FF == 0x1FF, f"LAPIC SVR: expected APIC enabled (bit 8) with vector 0xff, observed {svr:#x}"


def test_no_spurious_interrupts_in_normal_operation(machine: Machine) -> None:
    agent = machine.agent
    agent.uart_burst(BURST[:200])
    agent.lapic_oneshot(1000)
    agent.halt(20)
    counts = {v: agent.vector_count(v) for v in (SPURIOUS_VECTOR, 0x27, 0x2F)}
    assert counts == {SPURIOUS_VECTOR: 0, 0x27: 0, 0x2F: 0}, (
        f"spurious interrupts (LAPIC 0xff, 8259 IRQ7/15 at 0x27/0x2f): expected none, observed {counts}")


# ---------------------------------------------------------------------------- IPIs
@pytest.mark.vmm_requires("smp")
def test_ipi_from_bsp_to_ap(machine: Machine) -> None:
    result = machine.agent.ipi(to=1, vector=0x60, count=10)
    assert (result.sent, result.received) == (10, 10), f"IPIs vCPU0 -> vCPU1 on 0x60: expected 10/10, observed {result}"


@pytest.mark.vmm_requires("smp")
def test_ipi_from_ap_to_bsp(machine: Machine) -> None:
    result = machine.agent.ipi(to=0, vector=0x61, count=10, cpu=1)
    assert (result.sent, result.received) == (10, 10), f"IPIs vCPU1 -> vCPU0 on 0x61: expected 10/10, observed {result}"


@pytest.mark.vmm_requires("smp")
def test_ipi_lands_only_on_its_target(machine: Machine) -> None:
    agent = machine.agent
    agent.ipi(to=1, vector=0x62, count=3)
    counts = (agent.vector_count(0x62, cpu=0), agent.vector_count(0x62, cpu=1))
    assert counts == (0, 3), f"vector 0x62 counts on (vCPU0, vCPU1) after 3 IPIs to vCPU1: expected (0, 3), observed {counts}"


def test_self_ipi(machine: Machine) -> None:
    result = machine.agent.ipi(to=0, vector=0x63, count=5)
    assert (result.sent, result.received) == (5, 5), f"self-IPIs on 0x63: expected 5/5, observed {result}"
