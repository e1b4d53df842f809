"""Intel 8254 programmable interval timer, channel 0, register level: control words,
read-back status, counter latch, and the counts modes 0, 2 and 3 show (Intel 8254 data sheet,
order 231164: "Control Word Format", "Read-Back Command", "Counter Latch Command", "Modes").

Channel 0's IOAPIC pin is masked unless a timer check arms it, so reprogramming it here
interrupts nobody; every sequence runs in the agent with interrupts off (ioseq).
"""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.client import PIT_INPUT_HZ
from pytest_vmm.agent.ioseq import PortSeq

from . import device_state

# Each check programs channel 0 itself and leaves it quiet (run()): the checks share a guest
# (vmm_shared; the pool's guest lives for one module; --vmm-fresh boots one per check).
pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("mmio", "portseq"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.pit8254)]

CH0, CONTROL = 0x40, 0x43
LOHI = 0x30  # control word RW bits: low byte then high byte
READBACK_STATUS_CH0 = 0xE2  # 11 1(COUNT#: no) 0(STATUS#: yes) 001 0
LATCH_CH0 = 0x00
QUIET = 0x30  # mode 0 with no count written: the counter waits, OUT stays low


def program(seq: PortSeq, mode: int, count: int) -> PortSeq:
    return seq.out(CONTROL, LOHI | mode << 1).out(CH0, count & 0xFF).out(CH0, count >> 8 & 0xFF)


def latch_read(seq: PortSeq) -> PortSeq:
    return seq.out(CONTROL, LATCH_CH0).read(CH0).read(CH0)


def counts(values: list[int]) -> list[int]:
    return [values[i] | values[i + 1] << 8 for i in range(0, len(values), 2)]


def run(machine: Machine, seq: PortSeq) -> list[int]:
    try:
        return seq.run(machine.agent)
    finally:
        PortSeq().out(CONTROL, QUIET).run(machine.agent)


def test_mode0_control_word_sets_out_low(machine: Machine) -> None:
    """Mode 0: "OUT will be initially low" once the control word is written, and with no
    count loaded the counter does not start, so OUT stays low (read-back status bit 7),
    whatever channel 0 did before."""
    seq = program(PortSeq(), 0, 2).delay(200).out(CONTROL, 0x30).out(CONTROL, READBACK_STATUS_CH0).read(CH0)
    (status,) = run(machine, seq)
    assert status & 0x80 == 0, f"status after control word 0x30: OUT (bit 7) expected low, observed {status:#04x}"
    assert status & 0x3F == 0x30, f"status bits 5-0: expected the control word's 0x30, observed {status:#04x}"


def test_control_word_sets_null_count(machine: Machine) -> None:
    """Read-Back status bit 6, NULL COUNT: writing a control word sets it to 1; it stays 1
    until a count is written and loaded into the counting element."""
    seq = program(PortSeq(), 2, 1193).delay(200).out(CONTROL, 0x30).out(CONTROL, READBACK_STATUS_CH0).read(CH0)
    (status,) = run(machine, seq)
    assert status & 0x40, f"status after a control word and no count: NULL COUNT (bit 6) expected, observed {status:#04x}"


def test_mode0_out_goes_high_at_terminal_count(machine: Machine) -> None:
    """Mode 0 (interrupt on terminal count): after the count of 2 runs out (2 CLK pulses,
    under 2 us) OUT is high and stays high; the loaded count clears NULL COUNT: 0xb0."""
    seq = program(PortSeq(), 0, 2).delay(200).out(CONTROL, READBACK_STATUS_CH0).read(CH0)
    (status,) = run(machine, seq)
    assert status == 0xB0, f"status 200 us after count 2 in mode 0: expected 0xb0 (OUT=1, NULL=0), observed {status:#04x}"


def test_mode2_counts_stay_within_reload(machine: Machine) -> None:
    """Mode 2 (rate generator): the counter runs N..1 and reloads, so a latched count is in
    1..N; the status byte shows the mode 2 control word with NULL COUNT clear."""
    reload = 1193  # ~1 kHz
    seq = program(PortSeq(), 2, reload).delay(100)
    for _ in range(8):
        latch_read(seq).delay(137)
    seq.out(CONTROL, READBACK_STATUS_CH0).read(CH0)
    values = run(machine, seq)
    status, seen = values[-1], counts(values[:-1])
    assert status & 0x7F == 0x34, f"status in mode 2: expected 0x34 in bits 6-0, observed {status:#04x}"
    bad = [c for c in seen if not 1 <= c <= reload]
    assert not bad, f"mode 2, reload {reload}: latched counts outside 1..{reload}: {bad} (all: {seen})"


def test_mode3_even_count_decrements_by_two(machine: Machine) -> None:
    """Mode 3 (square wave), even count: the count is loaded and then decremented by two on
    each CLK pulse, so every latched count is even and within 2..N."""
    reload = 1000
    seq = program(PortSeq(), 3, reload).delay(100)
    for _ in range(10):
        latch_read(seq).delay(91)
    seq.out(CONTROL, READBACK_STATUS_CH0).read(CH0)
    values = run(machine, seq)
    status, seen = values[-1], counts(values[:-1])
    assert status & 0x7F == 0x36, f"status in mode 3: expected 0x36 in bits 6-0, observed {status:#04x}"
    bad = [c for c in seen if c % 2 or not 2 <= c <= reload]
    assert not bad, f"mode 3, reload {reload}: latched counts odd or outside 2..{reload}: {bad} (all: {seen})"


def test_second_latch_before_read_is_ignored(machine: Machine) -> None:
    """Counter Latch Command: if a counter is latched and latched again before the count is
    read, the second latch is ignored; the count read is the one of the first latch. In
    mode 0 the counter falls at 1.193182 MHz, so a 3 ms gap between the latches shows."""
    gap_us = 3000
    seq = program(PortSeq(), 0, 0xFFFF).delay(50).out(CONTROL, LATCH_CH0).delay(gap_us)
    seq.out(CONTROL, LATCH_CH0).read(CH0).read(CH0)
    latch_read(seq)
    first, last = counts(run(machine, seq))
    fell = (first - last) & 0xFFFF
    # The clock rate from the data sheet; 0.8: the gap is at least gap_us, and
    # nothing but a ~3.6k-tick fall is consistent with the first latch having been kept.
    floor = int(0.8 * gap_us * PIT_INPUT_HZ / 1e6)
    assert fell >= floor, (f"count read after a second latch was {first}, the later count {last}: it fell "
                           f"{fell} ticks, expected >= {floor} (the first latch's value, {gap_us} us older)")


def test_latched_count_is_held_until_read(machine: Machine) -> None:
    """Counter Latch Command: the latched count is held until read, however long that takes,
    while the counter keeps running: two reads of one latch taken 2 ms apart are one value."""
    seq = program(PortSeq(), 0, 0xFFFF).delay(50).out(CONTROL, LATCH_CH0).read(CH0).delay(2000).read(CH0)
    seq.delay(10)
    latch_read(seq)
    lo, hi, lo2, hi2 = run(machine, seq)
    held, later = lo | hi << 8, lo2 | hi2 << 8
    assert (held - later) & 0xFFFF >= int(0.8 * 2000 * PIT_INPUT_HZ / 1e6), (
        f"latched {held}, a fresh latch 2 ms later {later}: the first latch did not hold its value")
