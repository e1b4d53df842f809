"""ACPI fixed-hardware registers at the FADT's port blocks (ACPI 6.5 section 4.8):
PM1a event block (PM1_STS, PM1_EN; 4.8.3.1), PM1a control block (PM1_CNT; 4.8.3.2) and the
power-management timer (PM_TMR; 4.8.3.3), laid out as QEMU's pc machine does at 0x600.

The PM timer is a free-running 24-bit counter at 3.579545 MHz, read from the host's monotonic
clock, so it never stops or jumps with vCPU scheduling. god raises no SCI: PM1_STS bits are
write-one-to-clear but never set, and enabling an event in PM1_EN is traced as unsupported.
Writing SLP_TYP=S5 with SLP_EN to PM1_CNT is the OS powering off (\\_S5 in the DSDT).
"""

from __future__ import annotations

import time
from collections.abc import Callable

PM_TIMER_HZ = 3_579_545
PM_TIMER_MASK = (1 << 24) - 1  # TMR_VAL_EXT clear in the FADT: a 24-bit counter
R_PM1_STS, R_PM1_EN, R_PM1_CNT, R_PM_TMR = 0, 2, 4, 8
SIZE = 12
PM1_CNT_SCI_EN = 1 << 0        # always set: SMI_CMD is 0, the machine is always in ACPI mode
PM1_CNT_SLP_TYP_SHIFT, PM1_CNT_SLP_TYP_MASK = 10, 0x7 << 10
PM1_CNT_SLP_EN = 1 << 13       # write-only, reads as 0


def pm_timer_ticks(ns: int) -> int:
    return (ns * PM_TIMER_HZ // 1_000_000_000) & PM_TIMER_MASK


class AcpiPm:
    def __init__(self, on_sleep: Callable[[int], None], s5_type: int,
                 trace: Callable[[str], None] | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.on_sleep, self.s5_type = on_sleep, s5_type
        self.trace, self.clock_ns = trace, clock_ns
        self.pm1_en = 0
        self.pm1_cnt = PM1_CNT_SCI_EN

    def _dword(self, base: int) -> int:
        if base == R_PM1_STS:
            return self.pm1_en << 16           # PM1_STS reads 0: no event is ever pending
        if base == R_PM1_CNT:
            return self.pm1_cnt
        return pm_timer_ticks(self.clock_ns())  # PM_TMR; bits 31:24 read 0

    def read(self, offset: int, size: int) -> int:
        base = offset & ~3
        shift = 8 * (offset - base)
        value = self._dword(base) >> shift
        if shift + 8 * size > 32:  # an access spanning two registers
            value |= self._dword(base + 4) << (32 - shift)
        return value & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            self._write_byte(offset + i, (value >> (8 * i)) & 0xFF)

    def _write_byte(self, offset: int, byte: int) -> None:
        if offset in (R_PM1_EN, R_PM1_EN + 1):
            shift = 8 * (offset - R_PM1_EN)
            self.pm1_en = (self.pm1_en & ~(0xFF << shift)) | (byte << shift)
            if byte and self.trace:
                self.trace(f"ACPI PM1_EN = {self.pm1_en:#06x}: god raises no SCI for fixed events")
        elif offset in (R_PM1_CNT, R_PM1_CNT + 1):
            shift = 8 * (offset - R_PM1_CNT)
            cnt = (self.pm1_cnt & ~(0xFF << shift)) | (byte << shift)
            self.pm1_cnt = (cnt & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN
            slp_typ = (cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT
            if cnt & PM1_CNT_SLP_EN:
                if slp_typ == self.s5_type:
                    self.on_sleep(slp_typ)
                elif self.trace:
                    self.trace(f"ACPI PM1_CNT: sleep type {slp_typ} is not supported (only S5)")
        # PM1_STS is write-one-to-clear and never set; PM_TMR is read-only
