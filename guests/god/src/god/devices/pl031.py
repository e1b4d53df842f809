"""An Arm PrimeCell Real Time Clock (PL031), after its Technical Reference Manual (ARM DDI
0224, chapter 3 "Programmers Model"): a 32-bit seconds counter the guest reads as wall time.

  0x000 RTCDR   data: the counter (read-only)     0x004 RTCMR  match
  0x008 RTCLR   load: sets the counter             0x00C RTCCR  control (bit 0 start)
  0x010 RTCIMSC interrupt mask (bit 0)             0x014 RTCRIS raw interrupt status
  0x018 RTCMIS  masked status                      0x01C RTCICR interrupt clear
  0xFE0-0xFEC   RTCPeriphID0-3 = 0x31 0x10 0x14 0x00 (part 0x031, designer 0x41 'A')
  0xFF0-0xFFC   RTCPCellID0-3  = 0x0D 0xF0 0x05 0xB1

The counter is the host's clock (UTC seconds, as Linux's rtc-pl031 expects) plus the offset
the last RTCLR write set. The interrupt (RTCINTR) is raised when the counter reaches RTCMR;
god arms a timer on its event loop for that second. As on QEMU's model the counter always
runs: RTCCR reads 1 and writing 0 does not stop it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from god.devices.eventloop import Scheduler, Timer
from god.devices.irq import IrqLine

SIZE = 0x1000
DR, MR, LR, CR, IMSC, RIS, MIS, ICR = 0x000, 0x004, 0x008, 0x00C, 0x010, 0x014, 0x018, 0x01C
PERIPH_ID = (0x31, 0x10, 0x14, 0x00)
PCELL_ID = (0x0D, 0xF0, 0x05, 0xB1)
MASK32 = 0xFFFFFFFF


class Pl031:
    def __init__(self, irq: IrqLine, scheduler: Scheduler | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.irq, self.scheduler, self.clock = irq, scheduler, clock
        self._lock = threading.RLock()
        self.offset = 0          # counter = int(clock()) + offset (mod 2^32)
        self.mr = 0
        self.imsc = self.ris = 0
        self._timer: Timer | None = None

    def counter(self) -> int:
        return (int(self.clock()) + self.offset) & MASK32

    def _update(self) -> None:
        self.irq.set_level(bool(self.ris & self.imsc))

    def _arm(self) -> None:
        """A timer for the second the counter reaches MR (if a scheduler is wired)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.scheduler is None:
            return
        now = self.clock()
        ahead = (self.mr - self.counter()) & MASK32 or (1 << 32)
        delay = ahead - (now - int(now))
        self._timer = self.scheduler.call_later(max(delay, 0.0), self._match)

    def _match(self) -> None:
        with self._lock:
            self._timer = None
            ahead = (self.mr - self.counter()) & MASK32
            if ahead == 0 or ahead > 1 << 31:  # reached (or just passed: the timer was late)
                self.ris |= 1
                self._update()
            else:  # early (wall and monotonic clocks drift apart): wait for the second
                self._arm()

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            reg = offset & ~3
            value = self._read(reg) >> (8 * (offset & 3))
            return value & ((1 << (8 * size)) - 1)

    def _read(self, reg: int) -> int:
        if reg == DR:
            return self.counter()
        if reg == MR:
            return self.mr
        if reg == LR:
            return self.counter()  # QEMU too: the load register reads the current count
        if reg == CR:
            return 1
        if reg == IMSC:
            return self.imsc
        if reg == RIS:
            return self.ris
        if reg == MIS:
            return self.ris & self.imsc
        if 0xFE0 <= reg <= 0xFEC:
            return PERIPH_ID[(reg - 0xFE0) // 4]
        if 0xFF0 <= reg <= 0xFFC:
            return PCELL_ID[(reg - 0xFF0) // 4]
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset & 3:
            return
        with self._lock:
            value &= MASK32
            if offset == MR:
                self.mr = value
                self._arm()
            elif offset == LR:
                self.offset = (value - int(self.clock())) & MASK32
                self._arm()
            elif offset == IMSC:
                self.imsc = value & 1
            elif offset == ICR:
                self.ris &= ~(value & 1)
            # DR, RIS, MIS and the IDs are read-only; CR: the counter always runs
            self._update()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
