"""16550A register semantics (PC16550D datasheet), without KVM."""

from __future__ import annotations

import pytest
from god.devices import serial as S
from god.devices.irq import RecordingIrq
from god.devices.serial import Uart16550

RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7


class FakeScheduler:
    def __init__(self) -> None:
        self.timers: list = []

    def call_later(self, delay, fn):
        from god.devices.eventloop import Timer
        t = Timer(delay, fn)
        self.timers.append(t)
        return t

    def fire(self) -> None:
        ts, self.timers = self.timers, []
        for t in ts:
            if not t.cancelled:
                t.fn()


@pytest.fixture
def u():
    out = bytearray()
    irq = RecordingIrq()
    sched = FakeScheduler()
    dev = Uart16550(irq, out.extend, sched)
    dev.out, dev.line, dev.sched = out, irq, sched  # type: ignore[attr-defined]
    return dev


def w(u, off, v):
    u.write(off, 1, v)


def r(u, off):
    return u.read(off, 1)


def test_reset_state(u):
    assert r(u, IER) == 0
    assert r(u, IIR) == 0x01          # no interrupt pending, FIFOs off
    assert r(u, LSR) == 0x60          # THRE | TEMT, no data
    assert r(u, MSR) & 0xF0 == 0xB0   # DCD, DSR, CTS asserted by the host side
    assert not u.line.level


def test_thr_transmits_to_host(u):
    for c in b"hi\n":
        w(u, THR, c)
    assert bytes(u.out) == b"hi\n"
    assert r(u, LSR) & 0x60 == 0x60


def test_scratch_register(u):
    w(u, SCR, 0x5A)
    assert r(u, SCR) == 0x5A


def test_dlab_divisor_latch(u):
    w(u, IER, 0x00)
    w(u, LCR, 0x83)                   # DLAB, 8N1
    w(u, DLL, 0x0C)
    w(u, DLM, 0x00)                   # 9600 baud
    assert r(u, DLL) == 0x0C and r(u, DLM) == 0
    assert u.divisor == 12
    w(u, LCR, 0x03)
    assert r(u, IER) == 0             # IER is back at offset 1
    assert u.out == b""               # DLL writes are not transmitted
    assert u.char_time() == pytest.approx(10 * 12 / 115200)


def test_rx_and_data_ready_interrupt(u):
    w(u, IER, S.IER_RDI)
    assert not u.line.level
    u.feed(b"a")
    assert u.line.level
    assert r(u, IIR) == 0x04          # received data available
    assert r(u, LSR) & 1
    assert r(u, RBR) == ord("a")
    assert not u.line.level and r(u, IIR) == 0x01
    assert not r(u, LSR) & 1


def test_non_fifo_flow_control_loses_nothing(u):
    u.feed(b"abc")                    # only one byte fits the RBR; the rest waits
    assert [r(u, RBR) for _ in range(3)] == list(b"abc")
    assert not r(u, LSR) & S.LSR_OE


def test_thre_interrupt_set_by_ier_and_cleared_by_iir_read(u):
    w(u, IER, S.IER_THRI)
    assert u.line.level and r(u, IIR) == 0x02
    assert not u.line.level           # reading IIR acknowledged THRE
    assert r(u, IIR) == 0x01
    w(u, THR, ord("z"))               # next character: THR empty again -> interrupt
    assert u.line.level


def test_iir_priorities(u):
    w(u, MCR, S.MCR_LOOP)             # loopback lets us make an overrun
    w(u, IER, 0x0F)
    w(u, THR, 1)
    w(u, THR, 2)                      # RBR full (no FIFO): overrun
    # Line status (OE) outranks received data, which outranks THRE and modem status.
    assert r(u, IIR) == 0x06
    assert r(u, LSR) & S.LSR_OE
    assert r(u, IIR) == 0x04          # now data available
    assert r(u, RBR) == 1
    assert r(u, IIR) == 0x02          # THR empty
    assert r(u, IIR) in (0x00, 0x01)  # then modem status (if deltas) or nothing


def test_modem_status_interrupt_lowest(u):
    w(u, IER, S.IER_MSI)
    w(u, MCR, S.MCR_LOOP)             # loopback drops all modem inputs: deltas
    assert u.line.level and r(u, IIR) == 0x00
    msr = r(u, MSR)
    assert msr & 0x0F and msr & 0xF0 == 0
    assert r(u, MSR) & 0x0F == 0      # deltas cleared by reading
    assert not u.line.level


def test_loopback_data_and_modem_lines(u):
    w(u, MCR, S.MCR_LOOP | S.MCR_RTS | S.MCR_DTR | S.MCR_OUT1 | S.MCR_OUT2)
    msr = r(u, MSR)
    assert msr & 0xF0 == 0xF0         # CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2
    w(u, MCR, S.MCR_LOOP | S.MCR_RTS)
    msr = r(u, MSR)
    assert msr & 0xF0 == S.MSR_CTS
    assert msr & S.MSR_TERI           # RI trailing edge
    assert msr & S.MSR_DDSR and msr & S.MSR_DDCD
    w(u, THR, 0x42)
    assert u.out == b""               # looped back, not sent to the host
    assert r(u, LSR) & 1 and r(u, RBR) == 0x42
    u.feed(b"h")                      # host input is disconnected in loopback
    assert not r(u, LSR) & 1
    w(u, MCR, 0)
    assert r(u, MSR) & 0xF0 == 0xB0


def test_fifo_mode_trigger_level_and_timeout(u):
    w(u, FCR, 0x81 | 0x06)            # enable, clear both, trigger 8
    assert r(u, IIR) & 0xC0 == 0xC0   # FIFOs enabled
    w(u, IER, S.IER_RDI)
    u.feed(b"1234")                   # below the trigger: no RDA yet
    assert not u.line.level
    u.sched.fire()                    # 4 character times later: character timeout
    assert u.line.level and r(u, IIR) == 0xCC
    assert r(u, RBR) == ord("1")      # reading resets the timeout
    assert not u.line.level
    u.feed(b"56789")                  # 8 in the FIFO: trigger level reached
    assert u.line.level and r(u, IIR) == 0xC4
    assert bytes(r(u, RBR) for _ in range(8)) == b"23456789"
    assert not u.line.level


def test_fifo_holds_16_and_flow_controls_the_rest(u):
    w(u, FCR, 0x01)
    u.feed(bytes(range(40)))
    assert len(u.rx) == 16
    assert [r(u, RBR) for _ in range(40)] == list(range(40))


def test_fcr_clear_rx_and_fifo_toggle(u):
    w(u, FCR, 0x01)
    w(u, MCR, S.MCR_LOOP)
    for c in b"abc":
        w(u, THR, c)
    w(u, FCR, 0x03)                   # clear RX FIFO
    assert not r(u, LSR) & 1
    w(u, THR, 0x55)
    w(u, FCR, 0x00)                   # disabling the FIFO empties it too
    assert not r(u, LSR) & 1
    assert r(u, IIR) & 0xC0 == 0


def test_fifo_overrun_in_loopback(u):
    w(u, FCR, 0x01)
    w(u, MCR, S.MCR_LOOP)
    for c in range(17):
        w(u, THR, c)
    lsr = r(u, LSR)
    assert lsr & S.LSR_OE and lsr & 1
    assert not r(u, LSR) & S.LSR_OE   # cleared by the read
