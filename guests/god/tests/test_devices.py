"""Bus, exit port, CMOS/RTC and i8042 semantics, without KVM."""

from __future__ import annotations

import calendar
import random
import time

import pytest
from god.devices.bus import Bus, BusError
from god.devices.cmos import Cmos, timegm
from god.devices.exitport import ExitPort
from god.devices.i8042 import I8042
from god.devices.irq import RecordingIrq


class Mem:
    def __init__(self) -> None:
        self.regs: dict[int, int] = {}

    def read(self, offset, size):
        return self.regs.get(offset, 0)

    def write(self, offset, size, value):
        self.regs[offset] = value


def test_bus_dispatches_with_offsets():
    bus = Bus("mmio", 1 << 48)
    a, b = Mem(), Mem()
    bus.register(0x1000, 0x100, a)
    bus.register(0x2000, 0x10, b)
    bus.write(0x1004, 4, 0xDEADBEEF)
    bus.write(0x200F, 1, 7)
    assert a.regs == {4: 0xDEADBEEF} and b.regs == {15: 7}
    assert bus.read(0x1004, 2) == 0xBEEF  # truncated to the access size


def test_bus_unassigned_reads_all_ones_and_ignores_writes():
    bus = Bus("pio", 0x10000)
    seen = []
    bus.trace = seen.append
    for size in (1, 2, 4, 8):
        assert bus.read(0x2F8, size) == (1 << (8 * size)) - 1
    bus.write(0xCF8, 4, 0x80000000)
    assert bus.unassigned[0x2F8] == 4 and bus.unassigned[0xCF8] == 1
    assert len(seen) == 2  # first access per address only


def test_bus_rejects_overlaps_and_bad_ranges():
    bus = Bus("mmio", 0x10000)
    bus.register(0x100, 0x100, Mem())
    for base, size in ((0x80, 0x81), (0x1FF, 1), (0x150, 4)):
        with pytest.raises(BusError):
            bus.register(base, size, Mem())
    with pytest.raises(BusError):
        bus.register(0xFFFF, 2, Mem())
    bus.register(0x200, 1, Mem())  # adjacent is fine
    bus.unregister(0x100)
    assert bus.find(0x150) is None


def test_exit_port_statuses():
    got = []
    port = ExitPort(got.append)
    port.write(0, 1, 0)
    port.write(0, 1, 1)
    port.write(0, 4, 0x41)
    assert got == [1, 3, 0x83]


def test_cmos_time_bcd_and_binary():
    now = calendar.timegm((2026, 11, 21, 13, 45, 56, 0, 0, 0))
    c = Cmos(128 << 20, clock=lambda: now)

    def rd(reg):
        c.write(0, 1, reg)
        return c.read(1, 1)
    assert (rd(0), rd(2), rd(4), rd(7), rd(8), rd(9), rd(0x32)) == (0x56, 0x45, 0x13, 0x21, 0x11, 0x26, 0x20)
    assert rd(0x0A) & 0x80 == 0 and rd(0x0D) == 0x80
    c.write(0, 1, 0x0B)
    c.write(1, 1, 0x06)  # binary, 24 h
    assert (rd(0), rd(4), rd(9)) == (56, 13, 26)
    c.write(0, 1, 0x0B)
    c.write(1, 1, 0x04)  # binary, 12 h: 13:xx is 1 PM
    assert rd(4) == 0x81


def test_cmos_guest_sets_time_with_set_bit():
    now = [1_000_000_000.0]
    c = Cmos(64 << 20, clock=lambda: now[0])
    c.write(0, 1, 0x0B); c.write(1, 1, 0x82)          # SET, BCD, 24 h
    for reg, val in ((0, 0x00), (2, 0x30), (4, 0x12), (7, 0x01), (8, 0x02), (9, 0x30), (0x32, 0x20)):
        c.write(0, 1, reg); c.write(1, 1, val)
    c.write(0, 1, 0x0B); c.write(1, 1, 0x02)          # release SET
    now[0] += 5
    c.write(0, 1, 0)
    assert c.read(1, 1) == 0x05
    c.write(0, 1, 9)
    assert c.read(1, 1) == 0x30


def _stdlib_timegm(*t: int) -> int | None:
    try:
        return calendar.timegm((*t, 0, 0, 0))
    except ValueError:
        return None


def _own_timegm(*t: int) -> int | None:
    try:
        return timegm(*t)
    except ValueError:
        return None


def test_cmos_timegm_matches_calendar():
    """cmos.timegm (no calendar/datetime import at start-up) agrees with calendar.timegm:
    every day of 1968-2104 and of the 400-year cycle's edges, random dates over the whole
    range, and the out-of-range values a guest can write (day 0..45, year 0 and > 9999,
    month 13+, hour/minute/second past their range), including which ones raise."""
    cases = [(y, m, d, 12, 34, 56) for y in (*range(1968, 2105), 1, 4, 100, 1600, 1700, 1900,
                                              2000, 2400, 9999)
             for m in range(1, 13) for d in range(1, 32)]
    rng = random.Random(1234)
    cases += [(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 31), rng.randint(0, 23),
               rng.randint(0, 59), rng.randint(0, 59)) for _ in range(20000)]
    cases += [(rng.randint(0, 25755), rng.randint(0, 165), rng.randint(0, 165),
               rng.randint(0, 165), rng.randint(0, 165), rng.randint(0, 165)) for _ in range(20000)]
    cases += [(y, m, d, h, 0, 0) for y in (0, 1, 1970, 9999, 10000) for m in (0, 1, 2, 12, 13)
              for d in (0, 1, 28, 29, 30, 31, 45) for h in (0, 24, 99)]
    for t in cases:
        assert _own_timegm(*t) == _stdlib_timegm(*t), t


def test_cmos_nonsense_date_leaves_the_clock_alone():
    now = [1_000_000_000.0]
    c = Cmos(64 << 20, clock=lambda: now[0])
    c.write(0, 1, 0x0B); c.write(1, 1, 0x82)          # SET, BCD, 24 h
    c.write(0, 1, 8); c.write(1, 1, 0x13)             # month 13
    c.write(0, 1, 0x0B); c.write(1, 1, 0x02)          # release SET
    assert c.offset == 0.0


def test_cmos_memory_size_and_nmi_bit():
    c = Cmos(128 << 20)
    c.write(0, 1, 0x80 | 0x34)  # NMI disable bit must not change the index
    assert c.nmi_disabled
    lo = c.read(1, 1)
    c.write(0, 1, 0x35)
    assert (c.read(1, 1) << 8 | lo) == (128 - 16) * 16  # 64 KiB blocks above 16 MiB
    assert c.read(0, 1) == 0xFF


def test_i8042_probe_sequence_as_linux_does():
    resets = []
    kbd = RecordingIrq()
    k = I8042(lambda: resets.append(1), kbd)
    assert k.read(4, 1) & 0x01 == 0           # output buffer empty
    k.write(4, 1, 0xAA)                       # self test
    assert k.read(4, 1) & 0x01 and k.read(0, 1) == 0x55
    k.write(4, 1, 0x20)                       # read command byte
    ctr = k.read(0, 1)
    k.write(4, 1, 0x60)
    k.write(0, 1, ctr & ~0x03)                # write command byte: IRQs off
    k.write(4, 1, 0x20)
    assert k.read(0, 1) == ctr & ~0x03
    k.write(4, 1, 0xD3)                       # AUX loopback test
    k.write(0, 1, 0x5A)
    assert k.read(4, 1) & 0x21 == 0x21 and k.read(0, 1) == 0x5A
    k.write(4, 1, 0xAB)
    assert k.read(0, 1) == 0x00
    assert not resets


def test_i8042_reset_line():
    resets = []
    k = I8042(lambda: resets.append(1))
    k.write(4, 1, 0xFE)
    assert resets == [1]
    k.write(4, 1, 0xD1)
    k.write(0, 1, 0x02)                       # output port with bit 0 low
    assert resets == [1, 1]
    k.write(4, 1, 0xFF)                       # pulse nothing
    assert resets == [1, 1]


def test_i8042_keyboard_irq_when_enabled():
    kbd = RecordingIrq()
    k = I8042(lambda: None, kbd)
    k.write(4, 1, 0xD2)                       # loop a byte through the keyboard buffer
    k.write(0, 1, 0x1C)
    assert kbd.level                          # CTR bit 0 set by default
    assert k.read(0, 1) == 0x1C and not kbd.level


def test_eventloop_timer_and_reader():
    import os

    from god.devices.eventloop import EventLoop
    loop = EventLoop()
    loop.start()
    hits = []
    r, w = os.pipe()
    loop.add_reader(r, lambda: hits.append(os.read(r, 10)))
    t0 = time.monotonic()
    loop.call_later(0.05, lambda: hits.append(time.monotonic() - t0))
    os.write(w, b"hi")
    deadline = time.monotonic() + 2
    while len(hits) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    os.close(r); os.close(w)
    assert hits[0] == b"hi" and hits[1] >= 0.05
