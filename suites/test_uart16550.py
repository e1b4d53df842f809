"""16550A UART register semantics on the console's COM1, checked in loopback mode (National
Semiconductor / TI PC16550D data sheet: 8.4 LCR and the divisor latch, 8.6 IIR and its
priority table, 8.5 FCR trigger levels, 8.7 LSR, 8.8 MCR loopback, "FIFO interrupt mode
operation" for the character timeout).

COM1 is the agent's own channel, so each check is one ``uart_seq``: the agent waits until its
last reply has left the transmitter, runs the sequence with interrupts off, and restores the
divisor, LCR, FCR, MCR and IER and drains the receiver before it answers. Loopback (MCR bit
4) keeps the test bytes off the wire. The divisor is set to 96 (1200 baud) so that four
character times, the timeout, are ~33 ms: long enough to read IIR before it fires even on a
loaded host.
"""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.ioseq import PortSeq

from . import device_state
from .x86_platform import COM1

# Each uart_seq puts COM1 back as it found it: the checks share a guest (vmm_shared; the
# shared guest's health check between them shows the agent still answers on COM1).
pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("mmio", "portseq"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.uart16550)]

RBR = THR = DLL = COM1
IER = DLM = COM1 + 1
IIR = FCR = COM1 + 2
LCR, MCR, LSR = COM1 + 3, COM1 + 4, COM1 + 5
LSR_DR, LSR_OE, LSR_THRE = 0x01, 0x02, 0x20
MCR_LOOP = 0x10 | 0x0B  # loopback, OUT2, RTS, DTR
IIR_NONE, IIR_THRE, IIR_RDA, IIR_RLS, IIR_TIMEOUT = 0x01, 0x02, 0x04, 0x06, 0x0C
IER_RDA, IER_THRE, IER_RLS = 0x01, 0x02, 0x04


def loopback(divisor: int = 96, fcr: int = 0x07) -> PortSeq:
    """Quiet, loopback, 8N1 at the given divisor, FIFOs as ``fcr`` says (reset both)."""
    seq = PortSeq().out(IER, 0).out(MCR, MCR_LOOP).out(LCR, 0x80).out(DLL, divisor & 0xFF).out(DLM, divisor >> 8)
    return seq.out(LCR, 0x03).out(FCR, fcr).read(IIR)  # this IIR read is dropped by the caller


def send(seq: PortSeq, value: int) -> PortSeq:
    """Write THR once it is empty (THRE); waits for it, so its poll result is a value too."""
    return seq.poll(LSR, LSR_THRE, LSR_THRE, 100).out(THR, value)


def run(machine: Machine, seq: PortSeq) -> list[int]:
    return seq.run(machine.agent, console_uart=True)


def test_divisor_latch_round_trip(machine: Machine) -> None:
    """8.4: with LCR bit 7 (DLAB) set, offsets 0 and 1 are the divisor latch (DLL, DLM);
    with DLAB clear offset 1 is IER again."""
    seq = PortSeq().out(IER, 0).out(LCR, 0x83).out(DLL, 0x34).out(DLM, 0x12).read(DLL).read(DLM)
    seq.out(LCR, 0x03).read(IER)
    dll, dlm, ier = run(machine, seq)
    assert (dll, dlm) == (0x34, 0x12), f"divisor latch: wrote 0x1234, read DLM:DLL {dlm:#04x}:{dll:#04x}"
    assert ier == 0, f"IER with DLAB clear after writing the divisor: expected 0, observed {ier:#04x}"


def test_thre_interrupt_when_enabled_with_thr_empty(machine: Machine) -> None:
    """8.6: THRE is an interrupt source whenever ETBEI (IER bit 1) is set and THR is empty,
    including the moment ETBEI is enabled over an empty THR; reading IIR when THRE is the
    source clears it (IIR then shows no interrupt)."""
    seq = loopback().poll(LSR, LSR_THRE, LSR_THRE, 100).out(IER, IER_THRE).read(IIR).read(IIR)
    _, _, first, second = run(machine, seq)
    assert first & 0x0F == IIR_THRE, f"IIR right after ETBEI with THR empty: expected 0x2 (THRE), observed {first:#04x}"
    assert second & 0x0F == IIR_NONE, f"IIR read again: THRE must be cleared by the first read, observed {second:#04x}"


def test_iir_priority_rda_over_thre(machine: Machine) -> None:
    """8.6 priority: received data available (level 2) outranks THR empty (level 3); once
    RBR is read the THRE source shows."""
    seq = loopback()
    send(seq, 0x41).poll(LSR, LSR_DR, LSR_DR, 100).poll(LSR, 0x40, 0x40, 100)
    seq.out(IER, IER_RDA | IER_THRE).read(IIR).read(RBR).read(IIR)
    values = run(machine, seq)
    rda, byte, thre = values[-3:]
    assert byte == 0x41, f"loopback byte: sent 0x41, read {byte:#04x}"
    assert rda & 0x0F == IIR_RDA, f"IIR with data and THR empty: expected 0x4 (RDA first), observed {rda:#04x}"
    assert thre & 0x0F == IIR_THRE, f"IIR after reading RBR: expected 0x2 (THRE), observed {thre:#04x}"


def test_overrun_is_line_status_first(machine: Machine) -> None:
    """8.7 LSR bit 1 (OE), 16450 mode (FIFOs off): a second character arriving before RBR
    was read overruns it. 8.6: receiver line status (level 1) outranks everything; reading
    LSR clears OE and that source."""
    seq = loopback(fcr=0x00)
    send(seq, 0x11).poll(LSR, LSR_DR, LSR_DR, 100)
    send(seq, 0x22).delay(20_000)  # no LSR read here: reading LSR clears OE
    seq.out(IER, IER_RDA | IER_RLS).read(IIR).read(LSR).read(LSR).read(IIR)
    *_, iir, lsr, lsr_again, iir_after = run(machine, seq)
    assert lsr & LSR_OE, f"LSR after two bytes with RBR unread: OE (bit 1) expected, observed {lsr:#04x}"
    assert iir & 0x0F == IIR_RLS, f"IIR with an overrun pending: expected 0x6 (line status), observed {iir:#04x}"
    assert not lsr_again & LSR_OE, f"LSR read again: OE must clear on read, observed {lsr_again:#04x}"
    assert iir_after & 0x0F == IIR_RDA, f"IIR after LSR was read: expected 0x4 (data still there), observed {iir_after:#04x}"


@pytest.mark.parametrize(("fcr", "trigger"), [(0x47, 4), (0x87, 8), (0xC7, 14)])
def test_fifo_trigger_level(machine: Machine, fcr: int, trigger: int) -> None:
    """8.5 FCR bits 7-6: the receiver FIFO raises RDA once it holds the trigger level (1, 4,
    8, 14 bytes); one byte short of it, and within four character times, nothing is pending."""
    seq = loopback(fcr=fcr)
    seq.repeat(THR, 0x30, trigger - 1)  # the transmit FIFO holds 16: no THRE wait needed
    seq.poll(LSR, 0x40, 0x40, 100).out(IER, IER_RDA).read(IIR)
    send(seq, 0x7E).poll(LSR, 0x40, 0x40, 100).read(IIR)
    values = run(machine, seq)
    below, at = values[-3], values[-1]
    assert below & 0x0F == IIR_NONE, f"IIR with {trigger - 1} bytes, trigger {trigger}: expected 0x1 (none), observed {below:#04x}"
    assert at & 0x0F == IIR_RDA, f"IIR with {trigger} bytes, trigger {trigger}: expected 0x4 (RDA), observed {at:#04x}"
    assert at & 0xC0 == 0xC0, f"IIR bits 7-6 with FIFOs on: expected 0b11, observed {at:#04x}"


def test_character_timeout(machine: Machine) -> None:
    """FIFO interrupt mode: with fewer bytes than the trigger level in the FIFO and no
    character in or out for four character times (~33 ms at 1200 baud), IIR shows the
    character timeout (0xc with FIFOs on); reading RBR clears it."""
    seq = loopback(fcr=0xC7)  # trigger 14
    send(seq, 0x55).poll(LSR, 0x40, 0x40, 100).out(IER, IER_RDA).delay(100_000).read(IIR).read(RBR).read(IIR)
    *_, timeout, byte, after = run(machine, seq)
    assert byte == 0x55
    assert timeout & 0x0F == IIR_TIMEOUT, f"IIR 100 ms after one byte (trigger 14): expected 0xc (timeout), observed {timeout:#04x}"
    assert after & 0x0F == IIR_NONE, f"IIR after the FIFO was emptied: expected 0x1, observed {after:#04x}"
