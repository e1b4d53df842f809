"""MC146818 CMOS RTC at ports 0x70 (index, bit 7 = NMI mask) and 0x71 (data).

What Linux reads at boot: the time registers (BCD or binary per register B, 12/24 h), the
UIP bit of register A (never set here: we have no update cycle to collide with), register D's
valid-RAM bit, and the memory-size bytes the PC BIOS leaves in CMOS RAM. The clock follows
the host's UTC plus an offset that the guest sets by writing the time registers (with or
without register B's SET bit). Periodic, alarm and update interrupts (IRQ 8) are not
modelled: register C always reads 0.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections.abc import Callable

CMOS_BASE = 0x70

REG_SEC, REG_MIN, REG_HOUR, REG_WDAY, REG_MDAY, REG_MON, REG_YEAR = 0, 2, 4, 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
REG_CENTURY = 0x32
B_SET, B_24H, B_BINARY = 0x80, 0x02, 0x04
TIME_REGS = (REG_SEC, REG_MIN, REG_HOUR, REG_MDAY, REG_MON, REG_YEAR, REG_CENTURY)


def _bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _unbcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0x0F)


class Cmos:
    def __init__(self, mem_below_4g: int, mem_above_4g: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.offset = 0.0  # guest time - host time, seconds
        self.index = 0
        self.nmi_disabled = False
        self.ram = bytearray(128)
        self.ram[REG_A] = 0x26  # 32.768 kHz time base, 1024 Hz rate (the BIOS default)
        self.ram[REG_B] = B_24H
        self.ram[REG_D] = 0x80  # VRT: battery good, RAM valid
        self._latched: dict[int, int] | None = None  # time while SET is held
        self._lock = threading.Lock()
        # Memory sizes in the PC BIOS layout (some loaders and old kernels read them).
        self.ram[0x15:0x17] = (640).to_bytes(2, "little")  # base memory, KiB
        ext_kib = min(max(mem_below_4g - (1 << 20), 0) >> 10, 0xFFFF)
        self.ram[0x17:0x19] = ext_kib.to_bytes(2, "little")
        self.ram[0x30:0x32] = ext_kib.to_bytes(2, "little")
        above16 = min(max(mem_below_4g - (16 << 20), 0) >> 16, 0xFFFF)
        self.ram[0x34:0x36] = above16.to_bytes(2, "little")
        self.ram[0x5B:0x5E] = min(mem_above_4g >> 16, 0xFFFFFF).to_bytes(3, "little")

    def _now_fields(self) -> dict[int, int]:
        t = time.gmtime(self.clock() + self.offset)
        return {REG_SEC: t.tm_sec, REG_MIN: t.tm_min, REG_HOUR: t.tm_hour,
                REG_WDAY: (t.tm_wday + 1) % 7 + 1, REG_MDAY: t.tm_mday, REG_MON: t.tm_mon,
                REG_YEAR: t.tm_year % 100, REG_CENTURY: t.tm_year // 100}

    def _encode(self, reg: int, v: int) -> int:
        b = self.ram[REG_B]
        pm = 0
        if reg == REG_HOUR and not b & B_24H:
            pm = 0x80 if v >= 12 else 0
            v = v % 12 or 12
        return (v if b & B_BINARY else _bcd(v)) | pm

    def _decode(self, reg: int, raw: int) -> int:
        b = self.ram[REG_B]
        if reg == REG_HOUR and not b & B_24H:
            pm = raw & 0x80
            v = raw & 0x7F
            v = v if b & B_BINARY else _unbcd(v)
            return (v % 12) + (12 if pm else 0)
        return raw if b & B_BINARY else _unbcd(raw)

    def _set_time(self, fields: dict[int, int]) -> None:
        year = fields[REG_CENTURY] * 100 + fields[REG_YEAR]
        try:
            guest = calendar.timegm((year, max(fields[REG_MON], 1), max(fields[REG_MDAY], 1),
                                     fields[REG_HOUR], fields[REG_MIN], fields[REG_SEC], 0, 0, 0))
        except (ValueError, OverflowError):
            return  # a nonsense date leaves the clock alone
        self.offset = guest - int(self.clock())

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset == 0:
                return 0xFF  # the index register is write-only on a PC
            reg = self.index
            if reg in TIME_REGS or reg == REG_WDAY:
                fields = self._latched if self._latched is not None else self._now_fields()
                return self._encode(reg, fields[reg])
            if reg == REG_A:
                return self.ram[REG_A] & 0x7F  # UIP (bit 7) never set
            if reg == REG_C:
                return 0  # no interrupt flags: periodic/alarm/update IRQs not modelled
            return self.ram[reg]

    def write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            value &= 0xFF
            if offset == 0:
                self.index = value & 0x7F
                self.nmi_disabled = bool(value & 0x80)
                return
            reg = self.index
            if reg in TIME_REGS or reg == REG_WDAY:
                fields = self._latched if self._latched is not None else self._now_fields()
                fields[reg] = self._decode(reg, value)
                if self._latched is None:
                    self._set_time(fields)
                return
            if reg == REG_B:
                if value & B_SET and self._latched is None:
                    self._latched = self._now_fields()  # freeze while the guest sets time
                elif not value & B_SET and self._latched is not None:
                    self.ram[REG_B] = value
                    self._set_time(self._latched)
                    self._latched = None
                self.ram[REG_B] = value
                return
            if reg in (REG_C, REG_D):
                return  # read-only
            self.ram[reg] = value
