"""Intel 8254 programmable interval timer (datasheet 231164-005, Sept 1993) at ports
0x40-0x43, clocked at 1.193182 MHz from the host's time.monotonic_ns(), plus the PC's
system control port B at 0x61 (channel 2's gate in bit 0, its OUT in bit 5).

Counters are computed from the time the count was loaded, never ticked by a thread: a read
gives the datasheet's value at that instant. Modelled: the control word (channel, RW mode
LSB/MSB/LSB-then-MSB, modes 0-5 with 6/7 as 2/3, BCD), the counter latch command, the
read-back command (count and/or status, several channels at once; a latched value is held
until read and a second latch before the read is ignored), the status byte (OUT, NULL
COUNT, RW, mode, BCD), gates (channel 0 and 1 tied high; channel 2 from port 0x61: low
pauses modes 0 and 4, forces OUT high and reloads on the rising edge in modes 2 and 3, and
its rising edge triggers modes 1 and 5), a new count in modes 2/3 taking effect at the end
of the current period, and OUT per mode (section "Mode definitions").

IRQ0: channel 0's OUT drives ISA IRQ 0 (the machine routes it to 8259 IR0 and IOAPIC pin
0, as god's MP table says). Each rising edge of OUT is delivered as a pulse (line up, then
down) by a timer thread, so an edge-triggered controller sees one request per period.

Lost-tick policy ("reinject", as KVM's in-kernel PIT does by default). A tick is not sent
while the previous one is still unacknowledged: the machine calls ack() when the guest EOIs
the vector of IOAPIC pin 0 (KVM exits on that EOI because god marks pin 0's KVM route as
needing it) or when the 8259 hands out IR0 (INTA). Ticks that fall due meanwhile - the
guest had interrupts off, its vCPU was descheduled on a loaded host, god's timer thread
woke late - are held back and sent one per acknowledgement, so the guest counts every
tick. At most MAX_BACKLOG_NS worth of ticks (and at most MAX_BACKLOG) are held back; beyond
that the excess is coalesced (dropped), so a guest stopped for long gets no storm. A tick
unacknowledged for ACK_TIMEOUT_NS is presumed lost and the next one is sent, and so at once is
one the only controller that took it no longer requests (8259 input masked or the chip
re-initialised before the CPU's INTA: is_withdrawn). A tick that no
controller takes (masked at the PIC and the IOAPIC) is lost with the backlog, as on the real
part. Without acknowledgements (acked=False) held-back ticks are spaced CATCHUP_FRACTION of a
period apart (at least CATCHUP_MIN_NS).

Not modelled (a `god:` warning once): the PC speaker (port 0x61 bit 1 only reads back).
Reserved values (read-back with bit 0 set, BCD digits above 9, a count of 1 in mode 2 or
of 1 in mode 3) get the datasheet's behaviour where it has one and a trace with
--trace-unassigned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from god.devices.diag import QUIET, Diag

PIT_BASE, PIT_PORTS = 0x40, 4
PORT_B = 0x61
PIT_HZ = 1_193_182
NS = 1_000_000_000
PIT_IRQ = 0
REFRESH_NS = 15_085  # port 0x61 bit 4 toggles with every DRAM refresh request (15.085 us)

RW_LATCH, RW_LSB, RW_MSB, RW_WORD = 0, 1, 2, 3
CATCHUP_FRACTION = 4
CATCHUP_MIN_NS = 200_000
MAX_BACKLOG_NS = NS
MAX_BACKLOG = 1000
ACK_TIMEOUT_NS = 200_000_000
NUDGE_MIN_NS, NUDGE_MAX_NS = 100_000, 2_000_000
RENUDGE_MIN_NS, RENUDGE_MAX_NS = 1_000_000, 10_000_000


def _from_bcd(v: int) -> tuple[int, bool]:
    digits = [(v >> s) & 0xF for s in (0, 4, 8, 12)]
    return sum(d * 10 ** i for i, d in enumerate(digits)), all(d <= 9 for d in digits)


def _to_bcd(v: int) -> int:
    return sum(((v // 10 ** i) % 10) << (4 * i) for i in range(4))


class Channel:
    def __init__(self, index: int, gate: bool) -> None:
        self.index = index
        self.mode = 0
        self.rw = RW_WORD
        self.bcd = False
        self.count_reg = 0           # the last count written (raw, BCD if bcd)
        self.n = 0x10000             # the count in clock ticks
        self.load_ns: int | None = None  # counting since (None: waiting for a count/trigger)
        self.paused_ticks: int | None = None  # modes 0/4 with the gate low
        self.gate = gate
        self.out_idle = True         # OUT while not counting
        self.null_count = True
        self.write_msb_next = False
        self.write_lsb = 0
        self.read_msb_next = False
        self.latched: list[int] = []  # bytes still to be read from a count latch
        self.status_latched: int | None = None
        self.pending: tuple[int, int] | None = None  # (n, switch_ns) for modes 2/3
        self.edges = 0               # IRQ edges delivered since load_ns
        self.hold_low = False        # mode 0 between the two bytes of a new count

    @property
    def modulus(self) -> int:
        return 10000 if self.bcd else 0x10000

    def ticks(self, now: int) -> int:
        if self.paused_ticks is not None:
            return self.paused_ticks
        assert self.load_ns is not None
        return (now - self.load_ns) * PIT_HZ // NS

    def settle(self, now: int) -> None:
        """Apply a mode 2/3 count written mid-period once that period is over."""
        if self.pending is not None and now >= self.pending[1]:
            self.n, start = self.pending
            self.pending = None
            self.load_ns, self.edges, self.null_count = start, 0, False

    def count(self, now: int) -> int:
        """The counting element's value now (what a latch captures)."""
        self.settle(now)
        if self.load_ns is None:
            return self.count_reg if not self.bcd else _from_bcd(self.count_reg)[0]
        d, n = self.ticks(now), self.n
        if self.mode == 2:
            v = n - d % n
        elif self.mode == 3:
            v = n - (2 * d) % n
        else:
            v = (n - d) % self.modulus
        return v % self.modulus

    def out(self, now: int) -> bool:
        self.settle(now)
        if self.load_ns is None:
            return self.out_idle
        if self.hold_low:
            return False
        if self.mode in (2, 3) and not self.gate:
            return True
        d, n = self.ticks(now), self.n
        if self.mode in (0, 1):
            return d >= n
        if self.mode == 2:
            return d % n != n - 1
        if self.mode == 3:
            return d % n < (n + 1) // 2
        return d != n  # modes 4, 5: one clock low at terminal count

    def edge_tick(self, k: int) -> int | None:
        """Clock tick (since load) of OUT's k-th rising edge (k >= 1), None if none."""
        if self.mode in (2, 3):
            return k * self.n
        if k > 1:
            return None
        if self.mode in (0, 1):
            return self.n
        return self.n + 1  # modes 4, 5

    def edge_ns(self, k: int) -> int | None:
        if self.load_ns is None or self.paused_ticks is not None:
            return None
        if self.mode in (2, 3) and not self.gate:
            return None
        t = self.edge_tick(k)
        if t is None:
            return None
        return self.load_ns + -(-t * NS // PIT_HZ)

    def status(self, now: int) -> int:
        mode = self.mode
        return (0x80 if self.out(now) else 0) | (0x40 if self.null_count else 0) | \
            self.rw << 4 | mode << 1 | int(self.bcd)


class Pit:
    def __init__(self, pulse: Callable[[], bool] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, diag: Diag = QUIET,
                 acked: bool = False) -> None:
        """pulse() sends one IRQ0 edge and says whether a controller took it; with acked=True
        the machine calls ack() when the guest has taken the tick (EOI or INTA)."""
        self.pulse_irq = pulse
        self.acked = acked
        self.clock = clock
        self.diag = diag
        self.channels = [Channel(0, True), Channel(1, True), Channel(2, False)]
        self.speaker_data = False
        self.port_b_low = 0          # bits 2 and 3 of port 0x61 (parity/IOCHK enables)
        self._cond = threading.Condition(threading.RLock())
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.delivered = 0           # IRQ0 pulses sent
        self.coalesced = 0           # ticks dropped by the lost-tick policy
        self.ack_timeouts = 0        # ticks never acknowledged within ACK_TIMEOUT_NS
        self.withdrawn = 0           # ticks the controller dropped before the CPU took them
        # True when the unacknowledged tick can no longer be taken (masked at the 8259 that
        # alone held it): waiting ACK_TIMEOUT_NS for it would stall IRQ0 for nothing.
        self.is_withdrawn: Callable[[], bool] | None = None
        self._hold_until = 0         # no catch-up tick before this (ns)
        self.backlog = 0             # ticks due but not delivered yet
        # Called once when a tick is due while the last is unacknowledged: lets the machine
        # make a deferred EOI exit surface (see god.irqchip).
        self.nudge: Callable[[], None] | None = None
        self._nudge_at = 0
        self._in_flight_ns: int | None = None  # a delivered tick not yet acknowledged
        self.port_b = _PortB(self)

    # --- ports 0x40-0x43 --------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        v = 0
        for i in range(size):
            v |= self._read1(offset + i) << (8 * i) if offset + i < PIT_PORTS else 0xFF << (8 * i)
        return v

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            if offset + i < PIT_PORTS:
                self._write1(offset + i, (value >> (8 * i)) & 0xFF)

    def _read1(self, port: int) -> int:
        with self._cond:
            if port == 3:
                self.diag.reserved("pit-read-43", "PIT read of the write-only control port "
                                   "0x43: 0xff (3-state)")
                return 0xFF
            now = self.clock()
            ch = self.channels[port]
            if ch.status_latched is not None:
                v, ch.status_latched = ch.status_latched, None
                return v
            if ch.latched:
                return ch.latched.pop(0)
            c = ch.count(now)
            if ch.bcd:
                c = _to_bcd(c)
            if ch.rw == RW_LSB:
                return c & 0xFF
            if ch.rw == RW_MSB:
                return (c >> 8) & 0xFF
            ch.read_msb_next = not ch.read_msb_next
            return (c >> 8) & 0xFF if not ch.read_msb_next else c & 0xFF

    def _latch_count(self, ch: Channel, now: int) -> None:
        if ch.latched:
            return  # latched and not yet read: a second latch is ignored
        c = ch.count(now)
        if ch.bcd:
            c = _to_bcd(c)
        lo, hi = c & 0xFF, (c >> 8) & 0xFF
        ch.latched = [lo] if ch.rw == RW_LSB else [hi] if ch.rw == RW_MSB else [lo, hi]
        ch.read_msb_next = False

    def _write1(self, port: int, v: int) -> None:
        with self._cond:
            now = self.clock()
            if port == 3:
                self._control(v, now)
            else:
                self._write_count(self.channels[port], v, now)
            self._cond.notify_all()

    def _control(self, v: int, now: int) -> None:
        sc, rw = v >> 6, (v >> 4) & 3
        if sc == 3:  # read-back
            if v & 1:
                self.diag.reserved("pit-readback-d0", f"PIT read-back command {v:#04x}: bit 0 "
                                   "is reserved (must be 0)")
            for ch in self.channels:
                if v & (2 << ch.index):
                    if not v & 0x20:
                        self._latch_count(ch, now)
                    if not v & 0x10 and ch.status_latched is None:
                        ch.status_latched = ch.status(now)
            return
        ch = self.channels[sc]
        if rw == RW_LATCH:
            self._latch_count(ch, now)
            return
        mode = (v >> 1) & 7
        if mode > 5:
            mode -= 4  # x10 and x11 are modes 2 and 3
        ch.mode, ch.rw, ch.bcd = mode, rw, bool(v & 1)
        ch.load_ns = ch.paused_ticks = ch.pending = None
        ch.hold_low = False
        ch.out_idle = mode != 0  # mode 0: OUT low after the control word; others high
        ch.null_count = True
        ch.write_msb_next = ch.read_msb_next = False
        ch.latched, ch.status_latched = [], None
        if ch.index == 0:
            self.backlog, self._in_flight_ns, self._hold_until = 0, None, 0

    def _write_count(self, ch: Channel, v: int, now: int) -> None:
        if ch.rw == RW_WORD and not ch.write_msb_next:
            ch.write_lsb = v
            ch.write_msb_next = True
            if ch.mode == 0:  # writing the first byte stops the count; OUT goes low
                ch.out_idle = False
                if ch.load_ns is not None and ch.paused_ticks is None:
                    ch.paused_ticks = ch.ticks(now)
                ch.hold_low = True
            return
        if ch.rw == RW_WORD:
            raw = ch.write_lsb | v << 8
            ch.write_msb_next = False
        elif ch.rw == RW_LSB:
            raw = v
        else:
            raw = v << 8
        self._load(ch, raw, now)

    def _load(self, ch: Channel, raw: int, now: int) -> None:
        ch.settle(now)
        if ch.bcd:
            n, ok = _from_bcd(raw)
            if not ok:
                self.diag.reserved(f"pit-bcd-{ch.index}", f"PIT channel {ch.index}: count "
                                   f"{raw:#06x} is not BCD")
        else:
            n = raw
        n = n or ch.modulus
        if (ch.mode == 2 and n == 1) or (ch.mode == 3 and n == 1):
            self.diag.reserved(f"pit-count1-{ch.index}", f"PIT channel {ch.index}: count 1 is "
                               f"illegal in mode {ch.mode}")
            n = 2
        ch.count_reg = raw
        ch.null_count = True
        if ch.mode in (2, 3) and ch.load_ns is not None and ch.gate:
            # A new count takes effect at the end of the current period.
            d = ch.ticks(now)
            end_tick = (d // ch.n + 1) * ch.n
            ch.pending = (n, ch.load_ns + -(-end_tick * NS // PIT_HZ))
            return
        ch.n = n
        if ch.mode in (1, 5):
            ch.out_idle = True  # waits for the gate's rising edge
            ch.load_ns = None
            return
        self._start(ch, now)

    def _start(self, ch: Channel, now: int) -> None:
        ch.load_ns, ch.edges, ch.null_count, ch.hold_low = now, 0, False, False
        ch.paused_ticks = None
        if not ch.gate and ch.mode in (0, 4):
            ch.paused_ticks = 0

    def set_gate(self, index: int, level: bool) -> None:
        with self._cond:
            now = self.clock()
            ch = self.channels[index]
            ch.settle(now)
            rising = level and not ch.gate
            falling = ch.gate and not level
            if ch.mode in (0, 4) and ch.load_ns is not None:
                if falling:
                    ch.paused_ticks = ch.ticks(now)
                elif rising and ch.paused_ticks is not None:
                    ch.load_ns = now - ch.paused_ticks * NS // PIT_HZ
                    ch.paused_ticks = None
            ch.gate = level
            if rising and ch.mode in (1, 2, 3, 5) and (ch.load_ns is not None or ch.mode in (1, 5)):
                self._start(ch, now)  # trigger (1, 5) or reload (2, 3)
            self._cond.notify_all()

    # --- IRQ0 -------------------------------------------------------------------------------
    def _edges_due(self, ch: Channel, now: int) -> int:
        """How many OUT rising edges have happened since the count was loaded."""
        first = ch.edge_ns(1)
        if first is None or first > now:
            return 0
        if ch.mode in (2, 3):
            return ch.ticks(now) // ch.n
        return 1

    def _due(self, now: int) -> tuple[bool, int | None]:
        """(deliver a pulse now?, when to look again) under the lost-tick policy."""
        ch = self.channels[0]
        ch.settle(now)
        due = self._edges_due(ch, now)
        if due > ch.edges:
            self.backlog += due - ch.edges
            ch.edges = due
        period_ns = max(ch.n * NS // PIT_HZ, 1)
        bound = max(1, min(MAX_BACKLOG, MAX_BACKLOG_NS // period_ns))
        if self.backlog > bound:
            self.coalesced += self.backlog - bound
            self.backlog = bound
        nxt = ch.edge_ns(ch.edges + 1)
        if nxt is None and ch.pending is not None:
            nxt = ch.pending[1]
        if self._in_flight_ns is not None and now - self._in_flight_ns >= ACK_TIMEOUT_NS:
            self._in_flight_ns = None  # never acknowledged: presume it lost
            self.ack_timeouts += 1
        elif self._in_flight_ns is not None and self.is_withdrawn is not None and self.is_withdrawn():
            self._in_flight_ns = None
            self.withdrawn += 1
        if self._in_flight_ns is not None and self.nudge is not None:
            # The first one early, so that the acknowledgement is usually in by the next
            # edge; then again every RENUDGE (a nudge that lands before the guest took the
            # tick is used up by that wake-up, and the EOI exit is held back again).
            if now >= self._nudge_at:
                self.nudge()
                self._nudge_at = now + min(max(period_ns // 2, RENUDGE_MIN_NS), RENUDGE_MAX_NS)
            nxt = self._nudge_at if nxt is None else min(nxt, self._nudge_at)
        if self.backlog == 0:
            return False, nxt
        if self._in_flight_ns is not None:  # wait for the guest to take the last one
            limit = self._in_flight_ns + ACK_TIMEOUT_NS
            return False, limit if nxt is None else min(nxt, limit)
        if now < self._hold_until:
            return False, self._hold_until
        self.backlog -= 1
        if self.acked:
            self._in_flight_ns = now
            self._nudge_at = now + min(max(period_ns // 4, NUDGE_MIN_NS), NUDGE_MAX_NS)
        elif self.backlog:
            self._hold_until = now + max(period_ns // CATCHUP_FRACTION, CATCHUP_MIN_NS)
            nxt = self._hold_until if nxt is None else min(nxt, self._hold_until)
        return True, nxt

    def ack(self, send_next: bool = False) -> None:
        """The guest took the last tick (EOI of its vector, or the 8259's INTA). With
        send_next (a caller holding no device lock) a held-back tick goes out from this
        thread at once; otherwise the timer thread is woken for it."""
        with self._cond:
            if self._in_flight_ns is None:
                return
            self._in_flight_ns = None
            if not self.backlog:
                return
            if not send_next:
                self._cond.notify_all()
                return
            fire, _ = self._due(self.clock())
            self._cond.notify_all()  # the thread recomputes its deadline
        if fire:
            self._pulse()

    def poll(self, now: int) -> int | None:
        """Deliver what is due at `now`; returns the next deadline (tests drive this)."""
        with self._cond:
            fire, nxt = self._due(now)
        if fire:
            self._pulse()
        return nxt

    def _pulse(self) -> None:
        self.delivered += 1
        taken = self.pulse_irq() if self.pulse_irq is not None else False
        if not taken:  # masked everywhere: the tick is lost, as on the real part
            with self._cond:
                self._in_flight_ns = None
                self.coalesced += self.backlog
                self.backlog = 0

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="god-pit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                fire, nxt = self._due(self.clock())
                if not fire:
                    self._cond.wait(None if nxt is None else max(0, nxt - self.clock()) / NS)
                    continue
            self._pulse()


class _PortB:
    """Port 0x61 (NMI status and control): bit 0 timer 2 gate, bit 1 speaker data, bits 2-3
    parity/IOCHK check enables (read back), bit 4 refresh toggle, bit 5 timer 2 OUT."""

    def __init__(self, pit: Pit) -> None:
        self.pit = pit

    def read(self, offset: int, size: int) -> int:
        p = self.pit
        with p._cond:
            now = p.clock()
            ch2 = p.channels[2]
            v = int(ch2.gate) | int(p.speaker_data) << 1 | p.port_b_low
            v |= ((now // REFRESH_NS) & 1) << 4
            v |= int(ch2.out(now)) << 5
            return v

    def write(self, offset: int, size: int, value: int) -> None:
        p = self.pit
        value &= 0xFF
        if value & 2 and not p.speaker_data:
            p.diag.unmodelled("pc-speaker", "port 0x61 bit 1: PC speaker enabled (no sound)")
        p.speaker_data = bool(value & 2)
        p.port_b_low = value & 0x0C
        p.set_gate(2, bool(value & 1))
