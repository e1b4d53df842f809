"""A 16550A UART (National Semiconductor PC16550D datasheet semantics).

Registers at offsets 0..7 of the base (0x3f8 for COM1):

  0  RBR (read) / THR (write); DLL when LCR.DLAB=1
  1  IER; DLM when LCR.DLAB=1
  2  IIR (read) / FCR (write)
  3  LCR   4  MCR   5  LSR   6  MSR   7  SCR

Transmission is instantaneous (the byte goes to the host at the THR write), so THRE and
TEMT are always set. Host input is flow-controlled like QEMU's chardev: bytes wait in a host
queue and enter the receiver only when the RBR/FIFO has room, so a slow guest loses nothing;
overrun (LSR.OE) can therefore only happen in loopback mode. Interrupt priorities follow
the datasheet's IIR table: line status > received data > character timeout > THR empty >
modem status. Like QEMU, MCR.OUT2 does not gate the interrupt line (on a PC it is a board
feature, and guests tested on QEMU may not set it).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from god.devices.eventloop import Scheduler, Timer
from god.devices.irq import IrqLine

COM1_BASE, COM1_IRQ = 0x3F8, 4

# IER
IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 0x01, 0x02, 0x04, 0x08
# IIR identification values
IIR_NO_INT, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IIR_FIFO_ENABLED = 0xC0
# FCR
FCR_ENABLE, FCR_CLEAR_RX, FCR_CLEAR_TX = 0x01, 0x02, 0x04
# LCR
LCR_DLAB = 0x80
# MCR
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
# LSR
LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI, LSR_THRE, LSR_TEMT = 1, 2, 4, 8, 0x10, 0x20, 0x40
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI
# MSR
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 1, 2, 4, 8
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80

FIFO_SIZE = 16
TRIGGER_LEVELS = (1, 4, 8, 14)
BASE_CLOCK_BAUD = 115200  # 1.8432 MHz / 16


class Uart16550:
    def __init__(self, irq: IrqLine, tx: Callable[[bytes], None],
                 scheduler: Scheduler | None = None) -> None:
        self.irq = irq
        self.tx = tx
        self.scheduler = scheduler
        self._lock = threading.RLock()
        self.dll, self.dlm = 0x01, 0x00  # 115200 baud, QEMU's reset value
        self.ier = 0
        self.lcr = 0
        self.mcr = MCR_OUT2
        self.scr = 0
        self.fcr = 0
        self.lsr_errors = 0
        self.msr = MSR_DCD | MSR_DSR | MSR_CTS  # a host is "connected"
        self.rx: deque[int] = deque()
        self.host_pending: deque[int] = deque()  # flow control: waits for room in the FIFO
        self.thri_pending = False
        self.timeout_pending = False
        self._timeout_timer: Timer | None = None
        self.last_rbr = 0

    # --- helpers -----------------------------------------------------------------------
    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    @property
    def rx_capacity(self) -> int:
        return FIFO_SIZE if self.fifo_enabled else 1

    @property
    def trigger_level(self) -> int:
        return TRIGGER_LEVELS[self.fcr >> 6] if self.fifo_enabled else 1

    @property
    def divisor(self) -> int:
        return (self.dlm << 8) | self.dll

    def char_time(self) -> float:
        """Seconds per character: start + data + parity + stop bits at the current baud."""
        bits = 1 + (5 + (self.lcr & 3)) + (1 if self.lcr & 0x08 else 0) + (2 if self.lcr & 4 else 1)
        return bits * max(self.divisor, 1) / BASE_CLOCK_BAUD

    def _iir_id(self) -> int:
        if self.ier & IER_RLSI and self.lsr_errors:
            return IIR_RLSI
        if self.ier & IER_RDI:
            if self.rx and len(self.rx) >= self.trigger_level:
                return IIR_RDI
            if self.rx and self.timeout_pending:
                return IIR_CTI
        if self.ier & IER_THRI and self.thri_pending:
            return IIR_THRI
        if self.ier & IER_MSI and self.msr & 0x0F:
            return IIR_MSI
        return IIR_NO_INT

    def _update_irq(self) -> None:
        self.irq.set_level(self._iir_id() != IIR_NO_INT)

    def _arm_timeout(self) -> None:
        """Character timeout: data below the trigger level for 4 character times."""
        if self._timeout_timer is not None:
            self._timeout_timer.cancel()
            self._timeout_timer = None
        self.timeout_pending = False
        if self.fifo_enabled and self.rx and len(self.rx) < self.trigger_level:
            if self.scheduler is None:
                self.timeout_pending = True  # no clock: time out at once rather than never
            else:
                self._timeout_timer = self.scheduler.call_later(4 * self.char_time(),
                                                                self._timeout_fired)

    def _timeout_fired(self) -> None:
        with self._lock:
            self._timeout_timer = None
            if self.rx:
                self.timeout_pending = True
                self._update_irq()

    def _receive(self, byte: int) -> bool:
        """One byte into the receiver; False (and OE) if there is no room."""
        if len(self.rx) >= self.rx_capacity:
            self.lsr_errors |= LSR_OE
            return False
        self.rx.append(byte)
        return True

    def _refill(self) -> None:
        moved = False
        while self.host_pending and len(self.rx) < self.rx_capacity:
            self.rx.append(self.host_pending.popleft())
            moved = True
        if moved:
            self._arm_timeout()

    def _loopback_msr(self) -> None:
        m = self.mcr
        new = ((MSR_CTS if m & MCR_RTS else 0) | (MSR_DSR if m & MCR_DTR else 0) |
               (MSR_RI if m & MCR_OUT1 else 0) | (MSR_DCD if m & MCR_OUT2 else 0))
        old = self.msr & 0xF0
        delta = 0
        if (old ^ new) & MSR_CTS:
            delta |= MSR_DCTS
        if (old ^ new) & MSR_DSR:
            delta |= MSR_DDSR
        if old & MSR_RI and not new & MSR_RI:
            delta |= MSR_TERI  # trailing edge of RI only
        if (old ^ new) & MSR_DCD:
            delta |= MSR_DDCD
        self.msr = new | (self.msr & 0x0F) | delta

    # --- host side ---------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes typed by the host into the console (any thread)."""
        with self._lock:
            if self.mcr & MCR_LOOP:
                return  # in loopback the receiver is disconnected from the line
            self.host_pending.extend(data)
            self._refill()
            self._update_irq()

    # --- guest side --------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        with self._lock:
            return self._read(offset)

    def _read(self, offset: int) -> int:
        if offset == 0:
            if self.lcr & LCR_DLAB:
                return self.dll
            if self.rx:
                self.last_rbr = self.rx.popleft()
            self._refill()
            self._arm_timeout()
            self._update_irq()
            return self.last_rbr
        if offset == 1:
            return self.dlm if self.lcr & LCR_DLAB else self.ier
        if offset == 2:
            iid = self._iir_id()
            if iid == IIR_THRI:
                self.thri_pending = False  # reading IIR acknowledges THR empty
                self._update_irq()
            return iid | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)
        if offset == 3:
            return self.lcr
        if offset == 4:
            return self.mcr
        if offset == 5:
            lsr = LSR_THRE | LSR_TEMT | self.lsr_errors | (LSR_DR if self.rx else 0)
            if self.lsr_errors:
                self.lsr_errors = 0  # error bits clear on LSR read
                self._update_irq()
            return lsr
        if offset == 6:
            msr = self.msr
            if msr & 0x0F:
                self.msr &= 0xF0  # delta bits clear on MSR read
                self._update_irq()
            return msr
        if offset == 7:
            return self.scr
        return 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            self._write(offset, value & 0xFF)

    def _write(self, offset: int, v: int) -> None:
        if offset == 0:
            if self.lcr & LCR_DLAB:
                self.dll = v
                return
            self.thri_pending = False
            self._update_irq()
            if self.mcr & MCR_LOOP:
                self._receive(v)
                self._arm_timeout()
            else:
                self.tx(bytes((v,)))
            self.thri_pending = True  # transmitted at once: THR is empty again
            self._update_irq()
        elif offset == 1:
            if self.lcr & LCR_DLAB:
                self.dlm = v
                return
            old = self.ier
            self.ier = v & 0x0F
            if self.ier & IER_THRI and not old & IER_THRI:
                self.thri_pending = True  # enabling ETBEI with THR empty interrupts at once
            self._update_irq()
        elif offset == 2:
            if (v ^ self.fcr) & FCR_ENABLE:
                self.rx.clear()  # toggling FIFO mode resets both FIFOs
            elif v & FCR_CLEAR_RX:
                self.rx.clear()
            self.fcr = v & 0xC9
            self._refill()
            self._arm_timeout()
            self._update_irq()
        elif offset == 3:
            self.lcr = v
        elif offset == 4:
            was_loop = self.mcr & MCR_LOOP
            self.mcr = v & 0x1F
            if self.mcr & MCR_LOOP:
                self._loopback_msr()
            elif was_loop:
                self.msr = MSR_DCD | MSR_DSR | MSR_CTS
                self._refill()
            self._update_irq()
        elif offset == 5:
            pass  # LSR is read-only (factory test mode not modelled)
        elif offset == 6:
            pass  # MSR is read-only
        elif offset == 7:
            self.scr = v
