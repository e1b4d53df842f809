"""god's MC146818 RTC interrupts against the Motorola MC146818A datasheet: "Register A"
(UIP, DV2-DV0, RS3-RS0 and the table "Periodic Interrupt Rate and Square-Wave Output
Frequency"), "Register B" (SET, PIE, AIE, UIE), "Register C" (IRQF, PF, AF, UF; read
clears), "Interrupts", "Update Cycle" (UIP high 244 us before the 1984 us update). Time is a
fake clock; the scheduler is the test."""

from __future__ import annotations

from god.devices.cmos import Cmos
from god.devices.irq import RecordingIrq

T0 = 1_700_000_000.25  # a quarter past a second boundary (UTC)


class Rig:
    def __init__(self) -> None:
        self.now = T0
        self.irq = RecordingIrq()
        self.rtc = Cmos(64 << 20, clock=lambda: self.now, irq=self.irq)

    def wr(self, reg: int, v: int) -> None:
        self.rtc.write(0, 1, reg)
        self.rtc.write(1, 1, v)

    def rd(self, reg: int) -> int:
        self.rtc.write(0, 1, reg)
        return self.rtc.read(1, 1)

    def at(self, t: float) -> None:
        self.now = t
        self.rtc.poll()


def test_periodic_flag_at_the_rate_select_period():
    """Register A RS3-RS0 = 0110: periodic interrupt every 976.5625 us (1024 Hz); PF is set
    each period, IRQF (and IRQ 8) only with PIE; reading register C clears the flags."""
    r = Rig()
    r.wr(0x0A, 0x26)
    r.wr(0x0B, 0x02 | 0x40)         # 24 h, PIE
    assert not r.irq.level
    r.at(T0 + 0.001)                # past one 976.5625 us boundary
    assert r.irq.level
    assert r.rd(0x0C) == 0x80 | 0x40
    assert not r.irq.level and r.rd(0x0C) == 0


def test_rate_select_table():
    """Table 'Periodic Interrupt Rate': RS 0011 = 122.070 us, 1111 = 500 ms, 0001 = 3.90625
    ms (the 32.768 kHz time base)."""
    from god.devices.cmos import periodic_s
    assert abs(periodic_s(3) - 122.0703125e-6) < 1e-12
    assert periodic_s(15) == 0.5
    assert periodic_s(1) == 3.90625e-3 and periodic_s(0) is None


def test_flags_set_without_their_enable_bits():
    """Register C: PF, AF and UF are set by their events independent of the enables; IRQF
    stays 0 and no interrupt is raised."""
    r = Rig()
    r.wr(0x0A, 0x2F)                # 500 ms periodic
    r.at(T0 + 1.0)                  # crosses a second boundary: an update too
    assert r.rd(0x0C) == 0x40 | 0x10
    assert r.irq.raises == 0


def test_update_ended_interrupt_once_a_second():
    """Register B UIE: UF is set at the end of each update cycle (once per second)."""
    r = Rig()
    r.wr(0x0B, 0x02 | 0x10)
    r.at(T0 + 0.5)
    assert not r.irq.level
    r.at(T0 + 0.76)                 # the next second boundary
    assert r.irq.level and r.rd(0x0C) & 0x90 == 0x90  # PF too: the 1024 Hz default runs


def test_alarm_interrupt_with_dont_care():
    """Alarm registers (1, 3, 5): AF is set at the update where the time matches; a value
    with the two high bits set (C0-FF) matches any value."""
    r = Rig()
    r.wr(0x0B, 0x02 | 0x04 | 0x20)  # 24 h, binary, AIE
    target = int(T0) + 3
    sec = target % 60
    r.wr(0x01, sec)
    r.wr(0x03, 0xFF)
    r.wr(0x05, 0xC0)
    r.at(T0 + 1.0)
    assert not r.irq.level
    r.at(T0 + 3.0)
    assert r.irq.level and r.rd(0x0C) & 0xA0 == 0xA0


def test_uip_window_before_the_update():
    """Register A UIP: 1 from 244 us before the update through the 1984 us update cycle;
    0 otherwise."""
    r = Rig()
    r.now = int(T0) + 1 - 0.001     # 1 ms before the second boundary
    assert r.rd(0x0A) & 0x80
    r.now = int(T0) + 1 - 0.003     # 3 ms before: outside 2.228 ms
    assert not r.rd(0x0A) & 0x80


def test_set_bit_stops_updates_and_clears_uie():
    """Register B SET=1: the update cycle is inhibited (no UF, UIP 0) and UIE is cleared."""
    r = Rig()
    r.wr(0x0B, 0x02 | 0x10)
    r.wr(0x0B, 0x80 | 0x02 | 0x10)
    assert r.rd(0x0B) & 0x10 == 0
    r.now = int(T0) + 1 - 0.001
    assert not r.rd(0x0A) & 0x80
    r.at(T0 + 2.0)
    assert r.rd(0x0C) & 0x10 == 0


def test_divider_reset_stops_everything():
    """Register A DV2-DV0 = 11x holds the divider in reset: no periodic flag, no updates."""
    r = Rig()
    r.wr(0x0A, 0x66)
    r.at(T0 + 2.0)
    assert r.rd(0x0C) == 0


def test_enabling_pie_with_pf_pending_raises_irq():
    """IRQF = PF.PIE + AF.AIE + UF.UIE: enabling PIE while PF is set asserts IRQ at once."""
    r = Rig()
    r.wr(0x0A, 0x26)
    r.at(T0 + 0.01)
    assert not r.irq.level
    r.wr(0x0B, 0x02 | 0x40)
    assert r.irq.level
