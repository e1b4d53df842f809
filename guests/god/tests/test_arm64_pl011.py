"""god.devices.pl011 against the PrimeCell UART (PL011) Technical Reference Manual (ARM DDI
0183), chapter 3 "Programmers Model": register reset values (table 3-1), the flag register
(3.3.3), the interrupt registers (3.3.12-3.3.15, 3.4), FIFO trigger levels (3.3.11) and the
identification registers (3.3.16-3.3.17). The model is driven through its register
interface only; the expected values are the TRM's."""

from __future__ import annotations

import pytest
from god.devices import pl011 as P
from god.devices.irq import RecordingIrq

# TRM bit positions, written here from the manual (not imported from the model)
FR_BUSY, FR_RXFE, FR_TXFF, FR_RXFF, FR_TXFE = 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
RXIM, TXIM, RTIM, OEIM = 1 << 4, 1 << 5, 1 << 6, 1 << 10
LCR_H_FEN = 1 << 4
CR_UARTEN, CR_LBE, CR_TXE, CR_RXE = 1, 1 << 7, 1 << 8, 1 << 9


@pytest.fixture
def uart():
    out = bytearray()
    irq = RecordingIrq()
    u = P.Pl011(irq, out.extend)
    u.out, u.line = out, irq
    return u


def rd(u, off):
    return u.read(off, 4)


def wr(u, off, v):
    u.write(off, 4, v)


def test_reset_values_table_3_1(uart):
    assert rd(uart, 0x018) & (FR_RXFE | FR_TXFE | FR_TXFF | FR_RXFF | FR_BUSY) == FR_RXFE | FR_TXFE
    assert rd(uart, 0x030) == 0x0300          # UARTCR: TXE and RXE set, UART disabled
    assert rd(uart, 0x034) == 0x12            # UARTIFLS: 1/2 full both ways
    assert rd(uart, 0x038) == 0               # UARTIMSC: all masked
    assert rd(uart, 0x02C) == 0 and rd(uart, 0x024) == 0 and rd(uart, 0x028) == 0
    assert rd(uart, 0x048) == 0               # UARTDMACR
    assert rd(uart, 0x040) == 0 and not uart.line.level


def test_identification_registers_3_3_16(uart):
    """UARTPeriphID0-3: part number 0x011, designer 0x41 (ARM), revision; UARTPCellID0-3:
    0x0D 0xF0 0x05 0xB1 (the PrimeCell identification)."""
    periph = [rd(uart, 0xFE0 + 4 * i) for i in range(4)]
    pcell = [rd(uart, 0xFF0 + 4 * i) for i in range(4)]
    part = periph[0] | (periph[1] & 0xF) << 8
    designer = (periph[1] >> 4) | (periph[2] & 0xF) << 4
    assert (part, designer) == (0x011, 0x41)
    assert pcell == [0x0D, 0xF0, 0x05, 0xB1]


def test_transmit_and_tx_interrupt(uart):
    """Writing DR transmits; the TX interrupt asserts when the TX FIFO is at or below its
    trigger level (3.4.3) and is cleared by ICR.TXIC; UARTINTR follows MIS."""
    for b in b"hi":
        wr(uart, 0x000, b)
    assert bytes(uart.out) == b"hi"
    assert rd(uart, 0x03C) & TXIM and not rd(uart, 0x040) & TXIM and not uart.line.level
    wr(uart, 0x038, TXIM)
    assert rd(uart, 0x040) == TXIM and uart.line.level
    wr(uart, 0x044, TXIM)
    assert rd(uart, 0x03C) & TXIM == 0 and not uart.line.level
    assert rd(uart, 0x018) & FR_TXFE and not rd(uart, 0x018) & (FR_TXFF | FR_BUSY)


def test_receive_without_fifo_one_char_holding_register(uart):
    """FIFOs disabled (LCR_H.FEN=0): a 1-byte holding register; RXRIS with one character,
    FR.RXFF when it is full; the rest waits (god's flow control) and nothing is lost."""
    wr(uart, 0x038, RXIM)
    uart.feed(b"ab")
    fr = rd(uart, 0x018)
    assert not fr & FR_RXFE and fr & FR_RXFF
    assert rd(uart, 0x03C) & RXIM and uart.line.level
    assert rd(uart, 0x000) == ord("a")
    assert rd(uart, 0x000) == ord("b")
    assert rd(uart, 0x018) & FR_RXFE and not rd(uart, 0x03C) & RXIM and not uart.line.level


@pytest.mark.parametrize("field,level", [(0, 2), (1, 4), (2, 8), (3, 12), (4, 14)])
def test_rx_trigger_levels_3_3_11(uart, field, level):
    """RXIFLSEL b000..b100: 1/8, 1/4, 1/2, 3/4, 7/8 of the 16-entry FIFO."""
    wr(uart, 0x02C, LCR_H_FEN)
    wr(uart, 0x034, field << 3)
    uart.feed(bytes(level - 1))
    assert not rd(uart, 0x03C) & RXIM
    assert rd(uart, 0x03C) & RTIM  # data waiting below the level: the receive timeout
    uart.feed(b"x")
    assert rd(uart, 0x03C) & RXIM


def test_fifo_full_flag_and_timeout_cleared_by_emptying(uart):
    wr(uart, 0x02C, LCR_H_FEN)
    wr(uart, 0x038, RTIM)
    uart.feed(bytes(range(20)))
    assert rd(uart, 0x018) & FR_RXFF
    got = [rd(uart, 0x000) & 0xFF for _ in range(20)]
    assert got == list(range(20))  # flow control: the 4 beyond the FIFO were not dropped
    assert rd(uart, 0x018) & FR_RXFE
    assert not rd(uart, 0x03C) & RTIM and not uart.line.level


def test_loopback_overrun_sets_oe_and_ecr_clears(uart):
    """CR.LBE routes TX to RX; a character arriving at a full FIFO is an overrun: RSR.OE and
    OERIS (3.3.2, 3.4.3); any write to ECR clears the error bits; ICR.OEIC the interrupt."""
    wr(uart, 0x030, CR_UARTEN | CR_TXE | CR_RXE | CR_LBE)
    wr(uart, 0x038, OEIM)
    wr(uart, 0x000, 0x41)
    wr(uart, 0x000, 0x42)  # no FIFO: the holding register is full
    assert uart.out == b""
    assert rd(uart, 0x004) & 0x8 and rd(uart, 0x03C) & OEIM and uart.line.level
    assert rd(uart, 0x000) & 0xFF == 0x41  # FIFO contents stay valid on overrun
    wr(uart, 0x004, 0)
    assert rd(uart, 0x004) == 0
    wr(uart, 0x044, OEIM)
    assert not uart.line.level


def test_register_widths_and_read_only(uart):
    wr(uart, 0x024, 0x1_2345)
    wr(uart, 0x028, 0xFF)
    assert rd(uart, 0x024) == 0x2345 and rd(uart, 0x028) == 0x3F  # IBRD 16 bits, FBRD 6
    wr(uart, 0x018, 0)   # FR is read-only
    wr(uart, 0x03C, 0x7FF)  # RIS is read-only
    assert rd(uart, 0x018) & FR_TXFE and rd(uart, 0x03C) == 0


def test_byte_access_to_flag_register(uart):
    """Linux's earlycon polls FR with byte or word loads: both see TXFF clear."""
    assert uart.read(0x018, 1) & FR_TXFF == 0
    assert uart.read(0x018, 1) == rd(uart, 0x018) & 0xFF
