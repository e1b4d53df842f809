"""MC146818 CMOS RTC at ports 0x70 (index, bit 7 = NMI mask) and 0x71 (data), on IRQ 8.

What Linux reads at boot: the time registers (BCD or binary per register B, 12/24 h),
register D's valid-RAM bit, and the memory-size bytes the PC BIOS leaves in CMOS RAM. The
clock follows the host's UTC plus an offset that the guest sets by writing the time
registers (with or without register B's SET bit).

Interrupts (Motorola MC146818A datasheet, "Interrupts" and registers A-C): the update cycle
runs at every second boundary of the guest clock (not while SET is 1 or the divider is held
in reset, DV = 11x); UIP (register A bit 7) reads 1 during the UPDATE_WINDOW_S (244 us + the
1984 us update) before it. At the end of each update UF is set, and AF when the seconds,
minutes and hours equal the alarm registers (1, 3, 5; a value 0xC0-0xFF is "don't care").
PF is set at the periodic rate chosen by RS3-RS0 (register A bits 3:0, table "Periodic
Interrupt Rate": RS 1, 2 = 3.90625, 7.8125 ms; RS n >= 3 = 2^(n-1)/32768 s). Flags are set
whatever the enables; IRQF (register C bit 7) = PF.PIE + AF.AIE + UF.UIE drives IRQ 8, and
reading register C returns the flags and clears them all (the IRQ goes low). Setting SET
clears UIE. A timer on the event loop runs only while an enabled interrupt can still fire.
Divider values other than 010 (32.768 kHz) and 11x (reset) are not modelled (warning once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from god.devices.diag import QUIET, Diag
from god.devices.eventloop import Scheduler, Timer
from god.devices.irq import IrqLine

CMOS_BASE = 0x70
RTC_IRQ = 8

REG_SEC, REG_MIN, REG_HOUR, REG_WDAY, REG_MDAY, REG_MON, REG_YEAR = 0, 2, 4, 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
REG_CENTURY = 0x32
B_SET, B_PIE, B_AIE, B_UIE, B_24H, B_BINARY = 0x80, 0x40, 0x20, 0x10, 0x02, 0x04
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
A_UIP = 0x80
REG_SEC_ALARM, REG_MIN_ALARM, REG_HOUR_ALARM = 1, 3, 5
DV_NORMAL = 0x20       # register A bits 6:4 = 010: 32.768 kHz time base
UPDATE_WINDOW_S = (244 + 1984) / 1e6
MAX_SECONDS_SCANNED = 3600  # alarm matching after a long gap looks at the last hour only


def periodic_s(rs: int) -> float | None:
    """Periodic interrupt period for RS3-RS0 with the 32.768 kHz time base (None: off)."""
    if rs == 0:
        return None
    return (1 << (rs + 6 if rs < 3 else rs - 1)) / 32768
TIME_REGS = (REG_SEC, REG_MIN, REG_HOUR, REG_MDAY, REG_MON, REG_YEAR, REG_CENTURY)


def timegm(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """Seconds since the epoch of a UTC date and time (proleptic Gregorian), as
    calendar.timegm: ValueError unless 1 <= year <= 9999 and 1 <= month <= 12; day, hour,
    minute and second are not range-checked (day 30 of February is 1 or 2 March). Not
    calendar.timegm itself: calendar imports datetime, ~3 ms of god's start-up."""
    if not 1 <= year <= 9999 or not 1 <= month <= 12:
        raise ValueError(f"year {year} or month {month} is out of range")
    # days_from_civil (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms"): years
    # start in March, so a leap day is the last day of its year.
    y = year - 1 if month <= 2 else year
    era, yoe = divmod(y, 400)
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1    # day of the March-based year
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy           # day of the 400-year era
    days = era * 146097 + doe - 719468                      # 719468: 0000-03-01 to 1970-01-01
    return ((days * 24 + hour) * 60 + minute) * 60 + second


def _bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _unbcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0x0F)


class Cmos:
    def __init__(self, mem_below_4g: int, mem_above_4g: int = 0,
                 clock: Callable[[], float] = time.time, irq: IrqLine | None = None,
                 scheduler: Scheduler | None = None, diag: Diag = QUIET) -> None:
        self.clock = clock
        self.irq = irq
        self.scheduler = scheduler
        self.diag = diag
        self.flags = 0          # register C: PF, AF, UF
        self._last = clock()    # interrupt sources evaluated up to here (host time)
        self._timer: Timer | None = None
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
            guest = timegm(year, max(fields[REG_MON], 1), max(fields[REG_MDAY], 1),
                           fields[REG_HOUR], fields[REG_MIN], fields[REG_SEC])
        except ValueError:
            return  # a nonsense date leaves the clock alone
        self.offset = guest - int(self.clock())

    # --- interrupts ----------------------------------------------------------------------
    def _running(self) -> bool:
        return not self.ram[REG_B] & B_SET and (self.ram[REG_A] & 0x60) != 0x60

    def _alarm_matches(self, t: float) -> bool:
        g = time.gmtime(t)
        for reg, v in ((REG_SEC_ALARM, g.tm_sec), (REG_MIN_ALARM, g.tm_min),
                       (REG_HOUR_ALARM, g.tm_hour)):
            alarm = self.ram[reg]
            if alarm & 0xC0 != 0xC0 and alarm != self._encode(reg - 1, v):
                return False
        return True

    def _advance(self, now: float) -> None:
        """Set the flags of every event between the last evaluation and now."""
        last, self._last = self._last, now
        if now <= last:
            return
        period = periodic_s(self.ram[REG_A] & 0x0F)
        if period is not None and (self.ram[REG_A] & 0x60) != 0x60 \
                and int(now / period) > int(last / period):
            self.flags |= C_PF
        if self._running():
            g0, g1 = int(last + self.offset), int(now + self.offset)
            if g1 > g0:
                self.flags |= C_UF
                for s in range(max(g0 + 1, g1 - MAX_SECONDS_SCANNED), g1 + 1):
                    if self._alarm_matches(s):
                        self.flags |= C_AF
                        break

    def _irqf(self) -> bool:
        b = self.ram[REG_B]
        return bool((self.flags & C_PF and b & B_PIE) or (self.flags & C_AF and b & B_AIE)
                    or (self.flags & C_UF and b & B_UIE))

    def _update_irq(self) -> None:
        """Drive IRQ 8 and keep a timer only while an enabled source can still raise it."""
        level = self._irqf()
        if self.irq is not None:
            self.irq.set_level(level)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        b = self.ram[REG_B]
        if level or self.scheduler is None or not b & (B_PIE | B_AIE | B_UIE):
            return
        now = self.clock()
        delays = []
        period = periodic_s(self.ram[REG_A] & 0x0F)
        if b & B_PIE and period is not None:
            delays.append(period - (now % period))
        if b & (B_AIE | B_UIE) and self._running():
            g = now + self.offset
            delays.append(1.0 - (g % 1.0))
        if delays:
            self._timer = self.scheduler.call_later(min(delays) + 1e-6, self._on_timer)

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._advance(self.clock())
            self._update_irq()

    def poll(self) -> None:
        """Evaluate the interrupt sources now (the timer does this; tests call it)."""
        self._on_timer()

    # --- ports ---------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset == 0:
                return 0xFF  # the index register is write-only on a PC
            reg = self.index
            if reg in TIME_REGS or reg == REG_WDAY:
                fields = self._latched if self._latched is not None else self._now_fields()
                return self._encode(reg, fields[reg])
            if reg == REG_A:
                uip = 0
                if self._running() and (self.clock() + self.offset) % 1.0 >= 1.0 - UPDATE_WINDOW_S:
                    uip = A_UIP
                return (self.ram[REG_A] & 0x7F) | uip
            if reg == REG_C:
                self._advance(self.clock())
                v = self.flags | (C_IRQF if self._irqf() else 0)
                self.flags = 0
                self._update_irq()
                return v
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
            if reg in (REG_A, REG_B):
                self._advance(self.clock())  # events so far count under the old settings
            if reg == REG_B:
                if value & B_SET:
                    value &= ~B_UIE  # SET clears UIE (datasheet, register B)
                if value & B_SET and self._latched is None:
                    self._latched = self._now_fields()  # freeze while the guest sets time
                elif not value & B_SET and self._latched is not None:
                    self.ram[REG_B] = value
                    self._set_time(self._latched)
                    self._latched = None
                self.ram[REG_B] = value
                self._update_irq()
                return
            if reg == REG_A:
                dv = value & 0x70
                if dv != DV_NORMAL and dv & 0x60 != 0x60:
                    self.diag.unmodelled(f"rtc-dv-{dv:#x}", f"RTC register A divider DV="
                                         f"{dv >> 4:03b} (only 010, 32.768 kHz, and 11x reset)")
                self.ram[REG_A] = value & 0x7F  # UIP is read-only
                self._update_irq()
                return
            if reg in (REG_C, REG_D):
                self.diag.reserved(f"rtc-ro-{reg}", f"RTC write of {value:#04x} to read-only "
                                   f"register {'C' if reg == REG_C else 'D'}: ignored")
                return
            self.ram[reg] = value
