"""An Arm PrimeCell UART (PL011), as described by its Technical Reference Manual
(ARM DDI 0183, "PrimeCell UART (PL011) r1p5 Technical Reference Manual", chapter 3
"Programmers Model"). The interface is the one god's other devices have: registers
behind read/write(offset, size), an IrqLine for UARTINTR, bytes to a tx callback, host
input through feed(). No KVM here.

Registers (offsets from the base, table 3-1):

  0x000 DR      data (read: bits 7:0 data, 11:8 OE BE PE FE of that character)
  0x004 RSR/ECR receive status (read) / error clear (write)
  0x018 FR      flags: RI TXFE RXFF TXFF RXFE BUSY DCD DSR CTS (bits 8..0)
  0x020 ILPR    IrDA low-power counter   0x024 IBRD  integer baud divisor (16 bits)
  0x028 FBRD    fractional divisor (6)   0x02C LCR_H line control (FEN = bit 4)
  0x030 CR      control (reset 0x0300: TXE|RXE)
  0x034 IFLS    FIFO trigger levels (reset 0x12: 1/2 full both ways)
  0x038 IMSC    interrupt mask set/clear  0x03C RIS raw status  0x040 MIS masked status
  0x044 ICR     interrupt clear (write 1 to clear)   0x048 DMACR DMA control
  0xFE0-0xFEC   UARTPeriphID0-3 = 0x11 0x10 0x14 0x00 (part 0x011, designer 0x41 'A',
                revision 1: the 16-entry FIFO revisions)
  0xFF0-0xFFC   UARTPCellID0-3 = 0x0D 0xF0 0x05 0xB1

Modelling choices (what real hardware does over time happens at once here):
- Transmission is instantaneous: the byte reaches the host at the DR write, so the TX FIFO
  is always empty (FR.TXFE=1, TXFF=0, BUSY=0) and the TX interrupt, which the TRM asserts
  when the TX FIFO is at or below its trigger level, is raised by each write (it is cleared
  by ICR.TXIC or, per the TRM, by filling the FIFO above the level, which cannot happen).
- Like QEMU's model, DR writes are transmitted whether or not CR.UARTEN/TXE are set
  (firmware leaves the UART enabled on real boards; earlycon and bare-metal guests rely on
  it); with CR.LBE (loopback) the byte goes to the receive FIFO instead of the host.
- Host input is flow-controlled (as god's 16550): bytes wait in a host queue and enter the
  RX FIFO (16 entries with LCR_H.FEN, a 1-byte holding register without) as room appears,
  so only loopback can overrun (RSR.OE, RIS.OERIS; the FIFO keeps its contents).
- Receive timeout (RTRIS) is asserted when data is in the RX FIFO after a receive (the 32
  idle bit periods pass at once) and drops when the FIFO is emptied or by ICR.RTIC.
- No line: framing, parity and break errors never happen; modem inputs are inactive.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from god.devices.irq import IrqLine

SIZE = 0x1000

DR, RSR_ECR, FR, ILPR, IBRD, FBRD, LCR_H, CR, IFLS = (
    0x000, 0x004, 0x018, 0x020, 0x024, 0x028, 0x02C, 0x030, 0x034)
IMSC, RIS, MIS, ICR, DMACR = 0x038, 0x03C, 0x040, 0x044, 0x048
PERIPH_ID = (0x11, 0x10, 0x14, 0x00)    # 0xFE0..0xFEC
PCELL_ID = (0x0D, 0xF0, 0x05, 0xB1)     # 0xFF0..0xFFC

# FR bits
FR_CTS, FR_DSR, FR_DCD, FR_BUSY = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FR_RXFE, FR_TXFF, FR_RXFF, FR_TXFE, FR_RI = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
# RSR / DR error bits (RSR bits 3:0 = DR bits 11:8)
RSR_FE, RSR_PE, RSR_BE, RSR_OE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
# LCR_H
LCR_H_FEN = 1 << 4
# CR
CR_UARTEN, CR_LBE, CR_TXE, CR_RXE = 1 << 0, 1 << 7, 1 << 8, 1 << 9
CR_RESET = CR_TXE | CR_RXE
# interrupt bits (IMSC/RIS/MIS/ICR)
INT_RI, INT_CTS, INT_DCD, INT_DSR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
INT_RX, INT_TX, INT_RT, INT_FE, INT_PE, INT_BE, INT_OE = (
    1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 10)
INT_ALL = (1 << 11) - 1

FIFO_DEPTH = 16
IFLS_RESET = 0x12
# IFLS level field (3 bits) -> FIFO fill that triggers: 1/8, 1/4, 1/2, 3/4, 7/8 (TRM 3.3.11)
TRIGGER_EIGHTHS = {0: 1, 1: 2, 2: 4, 3: 6, 4: 7}


def trigger_level(field: int) -> int:
    """Entries of a 16-entry FIFO at the IFLS field value (reserved values act as 1/2)."""
    return FIFO_DEPTH * TRIGGER_EIGHTHS.get(field, 4) // 8


class Pl011:
    def __init__(self, irq: IrqLine, tx: Callable[[bytes], None]) -> None:
        self.irq = irq
        self.tx = tx
        self._lock = threading.RLock()
        self.rx: deque[int] = deque()          # entries: data | error bits << 8
        self.host_pending: deque[int] = deque()
        self.rsr = 0
        self.ilpr = self.ibrd = self.fbrd = self.lcr_h = 0
        self.cr = CR_RESET
        self.ifls = IFLS_RESET
        self.imsc = self.ris = self.dmacr = 0

    # --- host side ---------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes typed by the host (any thread)."""
        with self._lock:
            if self.cr & CR_LBE:
                return  # loopback disconnects the receiver from the line
            self.host_pending.extend(data)
            self._refill()
            self._update()

    # --- model -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return FIFO_DEPTH if self.lcr_h & LCR_H_FEN else 1

    def _receive(self, byte: int) -> bool:
        """One character into the RX FIFO; False (overrun) if it is full."""
        if len(self.rx) >= self.depth:
            self.rsr |= RSR_OE
            self.ris |= INT_OE
            return False
        self.rx.append(byte)
        self.ris |= INT_RT
        return True

    def _refill(self) -> None:
        while self.host_pending and len(self.rx) < self.depth:
            self._receive(self.host_pending.popleft())

    def _update(self) -> None:
        """RX level interrupt from the fill, then UARTINTR = any masked interrupt."""
        rx_level = trigger_level((self.ifls >> 3) & 7) if self.lcr_h & LCR_H_FEN else 1
        if len(self.rx) >= rx_level:
            self.ris |= INT_RX
        else:
            self.ris &= ~INT_RX
        if not self.rx:
            self.ris &= ~INT_RT
        self.irq.set_level(bool(self.ris & self.imsc))

    def _flags(self) -> int:
        fr = FR_TXFE
        if not self.rx:
            fr |= FR_RXFE
        if len(self.rx) >= self.depth:
            fr |= FR_RXFF
        return fr

    # --- guest side --------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        with self._lock:
            shift = 8 * (offset & 3)
            return (self._read(offset & ~3) >> shift) & ((1 << (8 * size)) - 1)

    def _read(self, reg: int) -> int:
        if reg == DR:
            value = self.rx.popleft() if self.rx else 0
            self._refill()
            self._update()
            return value
        if reg == RSR_ECR:
            return self.rsr
        if reg == FR:
            return self._flags()
        if reg == ILPR:
            return self.ilpr
        if reg == IBRD:
            return self.ibrd
        if reg == FBRD:
            return self.fbrd
        if reg == LCR_H:
            return self.lcr_h
        if reg == CR:
            return self.cr
        if reg == IFLS:
            return self.ifls
        if reg == IMSC:
            return self.imsc
        if reg == RIS:
            return self.ris
        if reg == MIS:
            return self.ris & self.imsc
        if reg == DMACR:
            return self.dmacr
        if 0xFE0 <= reg <= 0xFEC:
            return PERIPH_ID[(reg - 0xFE0) // 4]
        if 0xFF0 <= reg <= 0xFFC:
            return PCELL_ID[(reg - 0xFF0) // 4]
        return 0  # ICR is write-only; reserved and test registers read as zero

    def write(self, offset: int, size: int, value: int) -> None:
        if offset & 3:
            return  # registers are word-aligned; a stray sub-word write is ignored
        with self._lock:
            self._write(offset, value)
            self._update()

    def _write(self, reg: int, value: int) -> None:
        if reg == DR:
            byte = value & 0xFF
            if self.cr & CR_LBE:
                self._receive(byte)
            else:
                self.tx(bytes((byte,)))
            self.ris |= INT_TX  # the TX FIFO is empty again: at or below any trigger level
        elif reg == RSR_ECR:
            self.rsr = 0  # any write clears FE PE BE OE
        elif reg == ILPR:
            self.ilpr = value & 0xFF
        elif reg == IBRD:
            self.ibrd = value & 0xFFFF
        elif reg == FBRD:
            self.fbrd = value & 0x3F
        elif reg == LCR_H:
            self.lcr_h = value & 0xFF
            self._refill()
        elif reg == CR:
            self.cr = value & 0xFFFF
        elif reg == IFLS:
            self.ifls = value & 0x3F
        elif reg == IMSC:
            self.imsc = value & INT_ALL
        elif reg == ICR:
            self.ris &= ~(value & INT_ALL)
        elif reg == DMACR:
            self.dmacr = value & 0x7
        # FR, RIS, MIS and the ID registers are read-only
