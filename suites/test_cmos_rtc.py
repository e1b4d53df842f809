"""MC146818 real-time clock and CMOS, register level (Motorola MC146818A data sheet:
"Register A/B/C/D", "Time, Calendar and Alarm Data Modes", "Update Cycle", table of
periodic interrupt rates; the PC's index/data ports 0x70/0x71).

Checks write the clock (SET, then the time in the chosen format) rather than switch formats
under a running clock: the data sheet says a mode change does not convert the registers.
The clock is put back to BCD/24 h and 1024 Hz periodic rate, PIE off, afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.ioseq import PortSeq

from . import device_state

# Each check writes the registers it reads and the rtc fixture puts B, A and C back: the checks
# share a guest (vmm_shared; the pool's guest lives for one module; --vmm-fresh boots one per check).
pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("mmio", "portseq"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.cmos_rtc)]

INDEX, DATA = 0x70, 0x71
SEC, MIN, HOUR = 0x00, 0x02, 0x04
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
B_SET, B_PIE, B_DM_BINARY, B_24H = 0x80, 0x40, 0x04, 0x02
A_DEFAULT = 0x26  # divider 010 (32.768 kHz time base), rate 0110 (1024 Hz): the PC's
C_PF = 0x40


def wr(seq: PortSeq, reg: int, value: int) -> PortSeq:
    return seq.out(INDEX, reg).out(DATA, value)


def rd(seq: PortSeq, reg: int) -> PortSeq:
    return seq.out(INDEX, reg).read(DATA)


@pytest.fixture
def rtc(machine: Machine) -> Iterator[Machine]:
    (b,) = rd(PortSeq(), REG_B).run(machine.agent)
    if b == 0xFF:
        (d,) = rd(PortSeq(), REG_D).run(machine.agent)
        if d == 0xFF:
            pytest.skip("no RTC at ports 0x70/0x71 (registers B and D read 0xff)")
    yield machine
    seq = wr(PortSeq(), REG_B, B_24H)
    wr(seq, REG_A, A_DEFAULT)
    rd(seq, REG_C).run(machine.agent)


def test_register_d_valid_ram_and_time(rtc: Machine) -> None:
    """Register D bit 7 (VRT) reads 1 while the clock has power; bits 6-0 read 0."""
    (d,) = rd(PortSeq(), REG_D).run(rtc.agent)
    assert d == 0x80, f"register D: expected 0x80 (VRT), observed {d:#04x}"


DAY_OF_WEEK, DAY, MONTH, YEAR = 0x06, 0x07, 0x08, 0x09


def set_time(seq: PortSeq, b: int, hour: int, minute: int, sec: int) -> PortSeq:
    """SET, the new mode, then every time and calendar byte (the data sheet's initialization:
    all of them, in the new format), then SET clear. Date: Monday 1 June 2026 (day-of-week
    2, day 1, month 6, year 26 -- the same in BCD and binary)."""
    wr(seq, REG_B, B_SET | b)
    for reg, value in ((SEC, sec), (MIN, minute), (HOUR, hour), (DAY_OF_WEEK, 2), (DAY, 1), (MONTH, 6), (YEAR, 0x26 if not b & B_DM_BINARY else 26)):
        wr(seq, reg, value)
    return wr(seq, REG_B, b)


def test_binary_24h_time_reads_back(rtc: Machine) -> None:
    """Register B DM=1 (binary), 24/12=1: the time written while SET=1 reads back in binary."""
    seq = set_time(PortSeq(), B_DM_BINARY | B_24H, 13, 45, 10)
    for reg in (HOUR, MIN, SEC, REG_B):
        rd(seq, reg)
    hour, minute, sec, b = seq.run(rtc.agent)
    assert (hour, minute) == (13, 45), f"binary 24 h: wrote 13:45, read {hour}:{minute}"
    assert 10 <= sec <= 12, f"binary seconds: wrote 10, read {sec} a moment later"
    assert b == B_DM_BINARY | B_24H, f"register B: wrote {B_DM_BINARY | B_24H:#04x}, read {b:#04x}"


def test_bcd_12h_pm_hour_reads_back(rtc: Machine) -> None:
    """Register B DM=0 (BCD), 24/12=0 (12 h): hours are BCD 1-12 with bit 7 = PM; 11:30 PM
    is 0x91 and reads back so."""
    seq = set_time(PortSeq(), 0, 0x91, 0x30, 0x20)
    for reg in (HOUR, MIN):
        rd(seq, reg)
    hour, minute = seq.run(rtc.agent)
    assert (hour, minute) == (0x91, 0x30), f"BCD 12 h: wrote 0x91:0x30 (11:30 PM), read {hour:#04x}:{minute:#04x}"


def test_clock_runs_after_set_clears(rtc: Machine) -> None:
    """Update cycle: with SET clear the clock advances once a second; 23:59:59 binary 24 h
    becomes 00:00:00 (the hour rolls over), seen within 1.5 s."""
    seq = set_time(PortSeq(), B_DM_BINARY | B_24H, 23, 59, 59).delay(1_500_000)
    for reg in (HOUR, MIN, SEC):
        rd(seq, reg)
    hour, minute, sec = seq.run(rtc.agent)
    assert (hour, minute) == (0, 0) and sec <= 1, f"1.5 s after 23:59:59: expected 00:00:00 or :01, read {hour}:{minute}:{sec}"


def count_periodic_flags(rtc: Machine, rate_select: int, b: int, window_ms: int) -> int:
    seq = wr(PortSeq(), REG_A, 0x20 | rate_select)
    wr(seq, REG_B, b)
    rd(seq, REG_C)
    seq.out(INDEX, REG_C).count(DATA, C_PF, window_ms)
    _, flags = seq.run(rtc.agent, timeout=15.0)
    return flags


@pytest.mark.parametrize(("rate_select", "period_ms"), [(0x0D, 125), (0x0F, 500)])
def test_periodic_interrupt_rate(rtc: Machine, rate_select: int, period_ms: int) -> None:
    """Register A RS3-0 with the 32.768 kHz divider: 1101 -> 125 ms, 1111 -> 500 ms; with
    PIE set each period sets PF and IRQF (register C bits 6, 7), which a read of C clears.
    Counted over 2 s by reading C back to back: periods +-1 for the window's two edges.
    (IRQ8 is masked at the IOAPIC and the 8259: the line's pulses reach nobody.)"""
    window_ms = 2000
    flags = count_periodic_flags(rtc, rate_select, B_PIE | B_24H, window_ms)
    expected = window_ms // period_ms
    assert expected - 1 <= flags <= expected + 1, (
        f"rate select {rate_select:#x} ({period_ms} ms): {flags} PF flags in {window_ms} ms, expected {expected} +-1")


def test_periodic_flag_set_without_pie(rtc: Machine) -> None:
    """Register C PF: "set to a 1 independent of the state of the PIE bit" -- the divider
    tap sets it with periodic interrupts disabled too (8 Hz over 1 s: 8 +-1)."""
    flags = count_periodic_flags(rtc, 0x0D, B_24H, 1000)
    assert 7 <= flags <= 9, f"PF flags at 8 Hz over 1 s with PIE clear: expected 8 +-1, observed {flags}"
