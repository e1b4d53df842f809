"""god's 8254 PIT against the Intel 8254 datasheet (order 231164-005): "Control Word Format",
"Counter Latch Command", "Read-Back Command", "Status Byte", "Mode Definitions", "Gate";
and port 61h of the PC (IBM PC/AT technical reference: bit 0 timer 2 gate, bit 5 timer 2
output). Time is a fake clock; the input clock is 1.193182 MHz."""

from __future__ import annotations

from god.devices.pit import PIT_HZ, Pit

NS = 1_000_000_000


def ticks_ns(n: int) -> int:
    """Time of the n-th input clock, rounded up so that n full clocks have passed."""
    return -(-n * NS // PIT_HZ)


class Rig:
    def __init__(self, acked: bool = False, taken: bool = True) -> None:
        self.now = 1_000_000_000
        self.pulses: list[int] = []
        self.taken = taken
        self.pit = Pit(self._pulse, clock=lambda: self.now, acked=acked)

    def _pulse(self) -> bool:
        self.pulses.append(self.now)
        return self.taken

    def out(self, port: int, v: int) -> None:
        if port == 0x61:
            self.pit.port_b.write(0, 1, v)
        else:
            self.pit.write(port - 0x40, 1, v)

    def inp(self, port: int) -> int:
        if port == 0x61:
            return self.pit.port_b.read(0, 1)
        return self.pit.read(port - 0x40, 1)

    def advance(self, ticks: int) -> None:
        self.now += ticks_ns(ticks)

    def word(self, port: int) -> int:
        lo = self.inp(port)
        return lo | self.inp(port) << 8


def test_counter_latch_holds_the_count_until_read():
    """Counter Latch Command: the count is latched at the command and held until read (or the
    counter is reprogrammed); a second latch before the read is ignored."""
    r = Rig()
    r.out(0x43, 0x34)               # ch0, LSB then MSB, mode 2
    r.out(0x40, 0xE8)
    r.out(0x40, 0x03)               # 1000
    r.advance(100)
    r.out(0x43, 0x00)
    r.advance(300)
    r.out(0x43, 0x00)               # ignored: still latched
    assert r.word(0x40) == 900


def test_lsb_then_msb_access():
    """Control Word RW=11: read/write least significant byte first, then most significant."""
    r = Rig()
    r.out(0x43, 0xB0)               # ch2, LSB/MSB, mode 0
    r.out(0x42, 0x34)
    r.out(0x42, 0x12)
    r.out(0x61, 0x01)               # gate 2 high: counting
    r.out(0x43, 0x80)
    assert r.word(0x42) == 0x1234


def test_lsb_only_and_msb_only():
    """Control Word RW=01 / RW=10: only that byte is read or written (the other is 0)."""
    r = Rig()
    r.out(0x43, 0x14)               # ch0, LSB only, mode 2
    r.out(0x40, 0x80)
    r.advance(16)
    r.out(0x43, 0x00)
    assert r.inp(0x40) == 0x70
    r.out(0x43, 0x24)               # MSB only
    r.out(0x40, 0x02)               # 0x200
    r.out(0x43, 0x00)
    assert r.inp(0x40) == 0x02


def test_status_byte_and_null_count():
    """Status Byte: bit 7 OUT, bit 6 NULL COUNT (1 from a control word or count write until
    the count is loaded), bits 5:0 the programmed RW, mode and BCD. Mode 2's OUT starts
    high."""
    r = Rig()
    r.out(0x43, 0x34)
    r.out(0x43, 0xE2)               # read-back: status of ch0 (COUNT# = 1)
    assert r.inp(0x40) == 0x80 | 0x40 | 0x34
    r.out(0x40, 0x10)
    r.out(0x40, 0x00)
    r.out(0x43, 0xE2)
    assert r.inp(0x40) == 0x80 | 0x34


def test_read_back_count_and_status_status_first():
    """Read-Back Command with COUNT# = STATUS# = 0: the first read returns the status, then
    the count."""
    r = Rig()
    r.out(0x43, 0x30)               # ch0 mode 0
    r.out(0x40, 0x00)
    r.out(0x40, 0x01)               # 256
    r.advance(6)
    r.out(0x43, 0xC2)
    assert r.inp(0x40) == 0x30      # OUT low (counting), count loaded
    assert r.word(0x40) == 250


def test_mode0_out_low_until_terminal_count():
    """Mode 0: OUT goes low on the control word, stays low while counting, goes high at
    terminal count; the counter then keeps counting down (wraps)."""
    r = Rig()
    r.out(0x43, 0x30)
    r.out(0x43, 0xE2)
    assert r.inp(0x40) & 0x80 == 0
    r.out(0x40, 100)
    r.out(0x40, 0)
    r.advance(99)
    r.out(0x43, 0xE2)
    assert r.inp(0x40) & 0x80 == 0
    r.advance(1)
    r.out(0x43, 0xE2)
    assert r.inp(0x40) & 0x80
    r.advance(10)
    r.out(0x43, 0x00)
    assert r.word(0x40) == 0x10000 - 10


def test_mode0_first_byte_stops_counting():
    """Mode 0: writing the first byte of a new count disables counting."""
    r = Rig()
    r.out(0x43, 0x30)
    r.out(0x40, 0x00)
    r.out(0x40, 0x10)
    r.advance(16)
    r.out(0x40, 0x00)               # first byte of a new count
    r.advance(500)
    r.out(0x43, 0x00)
    assert r.word(0x40) == 0x0FF0


def test_mode2_out_low_for_one_clock_per_period():
    """Mode 2 (rate generator): OUT high, low for one clock when the count reaches 1, then
    reloaded."""
    r = Rig()
    r.out(0x43, 0x34)
    r.out(0x40, 10)
    r.out(0x40, 0)
    outs = []
    for _ in range(12):
        r.out(0x43, 0xE2)
        outs.append(r.inp(0x40) >> 7)
        r.advance(1)
    assert outs == [1] * 9 + [0] + [1] * 2


def test_mode3_square_wave():
    """Mode 3: OUT high for the first half of the count and low for the second (N/2 each for
    even N)."""
    r = Rig()
    r.out(0x43, 0x36)
    r.out(0x40, 8)
    r.out(0x40, 0)
    outs = []
    for _ in range(8):
        r.out(0x43, 0xE2)
        outs.append(r.inp(0x40) >> 7)
        r.advance(1)
    assert outs == [1, 1, 1, 1, 0, 0, 0, 0]


def test_mode4_strobe():
    """Mode 4: OUT high, low for one clock after the count expires."""
    r = Rig()
    r.out(0x43, 0x38)
    r.out(0x40, 5)
    r.out(0x40, 0)
    outs = []
    for _ in range(7):
        r.out(0x43, 0xE2)
        outs.append(r.inp(0x40) >> 7)
        r.advance(1)
    assert outs == [1, 1, 1, 1, 1, 0, 1]


def test_mode2_new_count_waits_for_the_period_end():
    """Mode 2: a new count written while counting does not affect the current period; it is
    loaded at the end of it."""
    r = Rig()
    r.out(0x43, 0x34)
    r.out(0x40, 100)
    r.out(0x40, 0)
    r.advance(30)
    r.out(0x40, 50)
    r.out(0x40, 0)
    r.out(0x43, 0x00)
    assert r.word(0x40) == 70
    r.advance(80)                   # 10 clocks into the 50-clock period
    r.out(0x43, 0x00)
    assert r.word(0x40) == 40


def test_bcd_counting():
    """Control Word BCD=1: the count is 4 decades; 0100h means 100 clocks and reads back in
    BCD."""
    r = Rig()
    r.out(0x43, 0x31)               # mode 0, BCD
    r.out(0x40, 0x00)
    r.out(0x40, 0x01)
    r.advance(11)
    r.out(0x43, 0x00)
    assert r.word(0x40) == 0x0089


def test_count_zero_is_65536():
    """Count register 0 = 2^16 in binary counting."""
    r = Rig()
    r.out(0x43, 0x34)
    r.out(0x40, 0)
    r.out(0x40, 0)
    r.advance(1)
    r.out(0x43, 0x00)
    assert r.word(0x40) == 0xFFFF


def test_channel2_gate_and_out_on_port_61():
    """Port 61h bit 0 is timer 2's GATE and bit 5 its OUT; 8254 Gate: in mode 0 a low gate
    disables counting."""
    r = Rig()
    r.out(0x43, 0xB0)               # ch2 mode 0
    r.out(0x42, 50)
    r.out(0x42, 0)
    r.advance(100)                  # gate low: paused
    assert r.inp(0x61) & 0x21 == 0
    r.out(0x61, 0x01)
    r.advance(49)
    assert r.inp(0x61) & 0x20 == 0
    r.advance(1)
    assert r.inp(0x61) & 0x21 == 0x21


def test_mode1_triggered_by_gate_edge():
    """Mode 1 (hardware retriggerable one-shot): OUT goes low on the clock after the gate's
    rising edge and high at terminal count."""
    r = Rig()
    r.out(0x43, 0xB2)               # ch2 mode 1
    r.out(0x42, 20)
    r.out(0x42, 0)
    assert r.inp(0x61) & 0x20       # OUT high until triggered
    r.out(0x61, 0x01)
    r.advance(10)
    assert r.inp(0x61) & 0x20 == 0
    r.advance(10)
    assert r.inp(0x61) & 0x20


def test_irq0_one_pulse_per_period():
    """Mode 2 on channel 0: one rising OUT edge (an IRQ0 request) per period."""
    r = Rig()
    r.out(0x43, 0x34)
    r.out(0x40, 0x9C)
    r.out(0x40, 0x2E)               # 11932: ~100 Hz
    for _ in range(50):
        r.advance(11932 // 10)
        r.pit.poll(r.now)
    assert len(r.pulses) == 4       # 50 * 1193 clocks = 5 periods minus a bit


def test_lost_ticks_reinjected_after_each_ack():
    """god's lost-tick policy (module docstring): ticks due while the last is unacknowledged
    are held back and sent one per acknowledgement."""
    r = Rig(acked=True)
    r.out(0x43, 0x34)
    r.out(0x40, 100)
    r.out(0x40, 0)
    r.advance(500)                  # 5 periods without a poll
    r.pit.poll(r.now)
    r.pit.poll(r.now)
    assert len(r.pulses) == 1
    for _ in range(4):
        r.pit.ack()
        r.pit.poll(r.now)
    assert len(r.pulses) == 5 and r.pit.backlog == 0


def test_masked_ticks_are_lost():
    """A tick no controller takes is lost with the held-back ones (the real part's OUT edge
    on a masked input is gone)."""
    r = Rig(acked=True, taken=False)
    r.out(0x43, 0x34)
    r.out(0x40, 100)
    r.out(0x40, 0)
    r.advance(300)
    r.pit.poll(r.now)
    assert len(r.pulses) == 1 and r.pit.backlog == 0


def test_control_port_reads_ff():
    """Control Word Register: write only (a read is a no-operation, the bus floats)."""
    assert Rig().inp(0x43) == 0xFF


def test_tick_withdrawn_by_its_controller_releases_the_next():
    """god's lost-tick policy (module docstring): a tick the only controller that took it no
    longer requests (is_withdrawn) is not waited for: the next one goes out at the next poll,
    not after ACK_TIMEOUT_NS."""
    r = Rig(acked=True)
    withdrawn = False
    r.pit.is_withdrawn = lambda: withdrawn
    r.out(0x43, 0x34)
    r.out(0x40, 100)
    r.out(0x40, 0)
    r.advance(100)
    r.pit.poll(r.now)
    r.advance(100)
    r.pit.poll(r.now)
    assert len(r.pulses) == 1           # held back: the first is unacknowledged
    withdrawn = True
    r.pit.poll(r.now)
    assert len(r.pulses) == 2 and r.pit.withdrawn == 1 and r.pit.ack_timeouts == 0


def test_pit_tick_left_with_a_masked_8259_is_withdrawn():
    """8259A datasheet, OCW1: a set IMR bit inhibits its IR input, so a request latched but
    masked before the INTA never reaches the CPU (Linux's check_timer masks IRQ0 at the 8259,
    then tests the IOAPIC pin). The router reports the PIT's last tick as withdrawn then;
    one the IOAPIC also took is not (it is an MSI already at the LAPIC)."""
    from god.devices.irq import IsaIrqRouter
    from god.devices.pic import DualPic

    pic = DualPic()
    for port, v in ((0, 0x11), (1, 0x20), (1, 0x04), (1, 0x01), (1, 0xFE)):  # ICW1-4, OCW1: IR0 only
        pic.write_port(0, port, v)
    router = IsaIrqRouter(pic, None)
    assert router.pulse(0) and not router.pulse_withdrawn(0)    # latched, unmasked: INTA will come
    pic.write_port(0, 1, 0xFF)                                    # OCW1: mask IR0
    assert router.pulse_withdrawn(0)
