"""god.devices.pl031 against the PrimeCell RTC (PL031) Technical Reference Manual (ARM DDI
0224), chapter 3: RTCDR counts seconds, RTCLR loads it, RTCMR raises RTCINTR when the count
reaches it (RTCRIS bit 0, masked by RTCIMSC, cleared by RTCICR), identification registers.
The clock is a fake the test advances; the expected values are the TRM's."""

from __future__ import annotations

from god.devices.eventloop import Scheduler, Timer
from god.devices.irq import RecordingIrq
from god.devices.pl031 import Pl031


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ManualScheduler(Scheduler):
    def __init__(self, clock: Clock) -> None:
        self.clock, self.timers = clock, []

    def call_later(self, delay, fn):
        t = Timer(self.clock.t + delay, fn)
        self.timers.append(t)
        return t

    def advance(self, seconds: float) -> None:
        self.clock.t += seconds
        for t in [t for t in self.timers if not t.cancelled and t.when <= self.clock.t]:
            self.timers.remove(t)
            t.fn()


def make(t0: float = 1_700_000_000.25):
    clock = Clock(t0)
    sched = ManualScheduler(clock)
    irq = RecordingIrq()
    return Pl031(irq, sched, clock), sched, irq


def test_counter_is_wall_seconds_and_load_sets_it():
    rtc, sched, _ = make()
    assert rtc.read(0x000, 4) == 1_700_000_000
    sched.advance(2)
    assert rtc.read(0x000, 4) == 1_700_000_002
    rtc.write(0x008, 4, 100)              # RTCLR
    assert rtc.read(0x000, 4) == 100
    sched.advance(3)
    assert rtc.read(0x000, 4) == 103
    rtc.write(0x000, 4, 5)                # RTCDR is read-only
    assert rtc.read(0x000, 4) == 103


def test_match_interrupt_masked_then_raised_and_cleared():
    rtc, sched, irq = make()
    rtc.write(0x008, 4, 1000)
    rtc.write(0x004, 4, 1002)             # RTCMR
    sched.advance(1)
    assert rtc.read(0x014, 4) == 0
    sched.advance(1)
    assert rtc.read(0x014, 4) == 1 and rtc.read(0x018, 4) == 0 and not irq.level  # masked
    rtc.write(0x010, 4, 1)                # RTCIMSC
    assert rtc.read(0x018, 4) == 1 and irq.level
    rtc.write(0x01C, 4, 1)                # RTCICR
    assert rtc.read(0x014, 4) == 0 and not irq.level


def test_control_and_identification():
    rtc, _, _ = make()
    assert rtc.read(0x00C, 4) & 1         # the RTC is running
    periph = [rtc.read(0xFE0 + 4 * i, 4) for i in range(4)]
    assert periph[0] | (periph[1] & 0xF) << 8 == 0x031
    assert (periph[1] >> 4) | (periph[2] & 0xF) << 4 == 0x41
    assert [rtc.read(0xFF0 + 4 * i, 4) for i in range(4)] == [0x0D, 0xF0, 0x05, 0xB1]
