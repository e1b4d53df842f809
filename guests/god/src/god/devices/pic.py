"""A pair of Intel 8259A programmable interrupt controllers (datasheet 231468-003, Dec 1988),
master at ports 0x20/0x21 and slave at 0xA0/0xA1 on the master's IR2, as on a PC, plus the
edge/level control registers (ELCR) at 0x4D0/0x4D1 of the PIIX/EISA chipsets.

Modelled (datasheet "Programming the 8259A"): the initialization sequence ICW1-ICW4 (ICW1
resets IMR, ISR, the priority rotation and the special mask mode; ICW2 gives the vector base
T7-T3; ICW3 the cascade wiring; ICW4 auto-EOI, special fully nested mode), OCW1 (IMR), OCW2
(non-specific, specific and rotating EOIs, rotate in auto-EOI mode, set priority), OCW3 (read
IRR or ISR at the even port, poll command, special mask mode), priority resolution with
rotation, edge triggering with the level remembered per pin (an edge sets IRR; IRR stays set
until INTA), level triggering from ICW1.LTIM or the ELCR bit, and the spurious IR7 answer when
the request went away before INTA. The master's INT output goes to the BSP's LINT0 (the
machine turns it into KVM_INTERRUPT when the local APIC accepts ExtINT).

Not modelled (a `god:` warning once): the 8080/8085 call mode (ICW4.uPM = 0) and buffered
mode (vectors are still delivered 8086-style). ELCR bits for IRQ 0, 1, 2, 8 and 13 are
reserved (they stay 0) and traced with --trace-unassigned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from god.devices.diag import QUIET, Diag

MASTER_BASE, SLAVE_BASE, ELCR_BASE = 0x20, 0xA0, 0x4D0
CASCADE_IRQ = 2
ELCR_MASKS = (0xF8, 0xDE)  # IRQ 0,1,2 and 8,13 are always edge (PIIX ELCR1/ELCR2)

ICW1_IC4, ICW1_SNGL, ICW1_LTIM, ICW1_INIT = 0x01, 0x02, 0x08, 0x10
ICW4_UPM, ICW4_AEOI, ICW4_BUF, ICW4_SFNM = 0x01, 0x02, 0x08, 0x10
OCW3_SELECT = 0x08
OCW3_RIS, OCW3_RR, OCW3_POLL, OCW3_SMM, OCW3_ESMM = 0x01, 0x02, 0x04, 0x20, 0x40


class _Chip:
    def __init__(self, name: str, diag: Diag) -> None:
        self.name = name
        self.diag = diag
        self.irr = self.isr = self.imr = 0
        self.level_in = 0       # current input levels (edge detection)
        self.elcr = 0
        self.base = 0
        self.icw1 = 0
        self.icw4 = 0
        self.init_step = 0      # 0: operational; 2, 3, 4: next ICW expected
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.rotate_aeoi = False
        self.priority_add = 0   # the IR with the highest priority
        self.cascade = 0        # ICW3

    def level_triggered(self, irq: int) -> bool:
        return bool(self.icw1 & ICW1_LTIM) or bool(self.elcr >> irq & 1)

    def set_input(self, irq: int, level: bool) -> None:
        bit = 1 << irq
        if self.level_triggered(irq):
            self.irr = (self.irr | bit) if level else (self.irr & ~bit)
        elif level and not self.level_in & bit:
            self.irr |= bit
        self.level_in = (self.level_in | bit) if level else (self.level_in & ~bit)

    def _highest(self, mask: int) -> int:
        """Priority level (0 = highest) of the highest-priority bit in mask, 8 if none."""
        for p in range(8):
            if mask & (1 << ((p + self.priority_add) & 7)):
                return p
        return 8

    def pending(self, sfnm_cascade: bool = False) -> int:
        """The IR that INT asks the CPU to serve, or -1 (IRR vs IMR vs ISR, by priority)."""
        req = self.irr & ~self.imr
        p = self._highest(req)
        if p == 8:
            return -1
        isr = self.isr & ~self.imr if self.special_mask else self.isr
        if sfnm_cascade:
            isr &= ~(1 << CASCADE_IRQ)  # a slave request may nest within another slave's
        return (p + self.priority_add) & 7 if p < self._highest(isr) else -1

    def ack(self, irq: int) -> None:
        bit = 1 << irq
        if self.icw4 & ICW4_AEOI:
            if self.rotate_aeoi:
                self.priority_add = (irq + 1) & 7
        else:
            self.isr |= bit
        if not self.level_triggered(irq):
            self.irr &= ~bit

    def _eoi_highest(self, rotate: bool) -> None:
        p = self._highest(self.isr)
        if p < 8:
            irq = (p + self.priority_add) & 7
            self.isr &= ~(1 << irq)
            if rotate:
                self.priority_add = (irq + 1) & 7

    def write_command(self, v: int) -> None:
        if v & ICW1_INIT:
            self.icw1 = v
            self.init_step = 2
            self.imr = self.isr = 0
            self.irr &= self.elcr          # the edge-sense latches reset
            self.level_in &= self.elcr
            self.priority_add = 0
            self.special_mask = self.read_isr = self.poll = self.rotate_aeoi = False
            if not v & ICW1_IC4:
                self.icw4 = 0
            if v & ICW1_SNGL:
                self.diag.unmodelled(f"pic-sngl-{self.name}", f"8259 {self.name} ICW1 {v:#04x}: "
                                     "single mode (god's PICs are always cascaded)")
            return
        if v & OCW3_SELECT:
            if v & 0x80:
                self.diag.reserved(f"pic-ocw3-{self.name}", f"8259 {self.name} OCW3 {v:#04x}: "
                                   "bit 7 must be 0")
            if v & OCW3_RR:
                self.read_isr = bool(v & OCW3_RIS)
            self.poll = bool(v & OCW3_POLL)
            if v & OCW3_ESMM:
                self.special_mask = bool(v & OCW3_SMM)
            return
        cmd, level = v >> 5, v & 7
        if cmd == 0b001:
            self._eoi_highest(False)
        elif cmd == 0b011:
            self.isr &= ~(1 << level)
        elif cmd == 0b101:
            self._eoi_highest(True)
        elif cmd == 0b111:
            self.isr &= ~(1 << level)
            self.priority_add = (level + 1) & 7
        elif cmd == 0b110:
            self.priority_add = (level + 1) & 7
        elif cmd in (0b100, 0b000):
            self.rotate_aeoi = cmd == 0b100
        # 0b010: no operation

    def write_data(self, v: int) -> None:
        if self.init_step == 2:
            self.base = v & 0xF8
            self.init_step = 3 if not self.icw1 & ICW1_SNGL else (4 if self.icw1 & ICW1_IC4 else 0)
        elif self.init_step == 3:
            self.cascade = v
            self.init_step = 4 if self.icw1 & ICW1_IC4 else 0
        elif self.init_step == 4:
            self.icw4 = v
            self.init_step = 0
            if not v & ICW4_UPM:
                self.diag.unmodelled(f"pic-upm-{self.name}", f"8259 {self.name} ICW4 {v:#04x}: "
                                     "8080/8085 mode (uPM=0); vectors are delivered 8086-style")
            if v & ICW4_BUF:
                self.diag.reserved(f"pic-buf-{self.name}", f"8259 {self.name} ICW4 {v:#04x}: "
                                   "buffered mode has no effect in a VM")
        else:
            self.imr = v

    def read_command(self) -> int:
        return self.isr if self.read_isr else self.irr


class DualPic:
    """Master + slave 8259A. set_irq(0..15, level) drives the ISA IRQ inputs."""

    def __init__(self, on_int: Callable[[bool], None] | None = None, diag: Diag = QUIET) -> None:
        self.on_ack: Callable[[int], None] | None = None  # ISA IRQ handed out by INTA/poll
        self.master = _Chip("master", diag)
        self.slave = _Chip("slave", diag)
        self.diag = diag
        self.on_int = on_int
        self.output = False
        self._lock = threading.RLock()
        self.master_port = _Port(self, 0)
        self.slave_port = _Port(self, 1)
        self.elcr_port = _Elcr(self)

    def _chip(self, n: int) -> _Chip:
        return self.slave if n else self.master

    def _update(self) -> None:
        sfnm = bool(self.master.icw4 & ICW4_SFNM)
        self.master.set_input(CASCADE_IRQ, self.slave.pending(sfnm) >= 0)
        out = self.master.pending(sfnm) >= 0
        if out != self.output:
            self.output = out
            if self.on_int is not None:
                self.on_int(out)

    def set_irq(self, irq: int, level: bool) -> None:
        with self._lock:
            if irq < 8:
                self.master.set_input(irq, level)
            else:
                self.slave.set_input(irq - 8, level)
            self._update()

    def acknowledge(self) -> int:
        """The INTA cycle: the vector the CPU gets (IR7's vector when nothing is pending)."""
        with self._lock:
            sfnm = bool(self.master.icw4 & ICW4_SFNM)
            irq = self.master.pending(sfnm)
            if irq < 0:
                vector = self.master.base | 7  # spurious: ISR untouched
            elif irq == CASCADE_IRQ:
                self.master.ack(irq)
                sirq = self.slave.pending(sfnm)
                if sirq < 0:
                    vector = self.slave.base | 7
                else:
                    self.slave.ack(sirq)
                    vector = self.slave.base | sirq
                    self._acked(8 + sirq)
            else:
                self.master.ack(irq)
                vector = self.master.base | irq
                self._acked(irq)
            self._update()
            return vector

    def _acked(self, irq: int) -> None:
        if self.on_ack is not None:
            self.on_ack(irq)

    def accepts(self, irq: int) -> bool:
        """Whether a request on irq is latched and unmasked (it will reach the CPU)."""
        with self._lock:
            return self.accepts_unlocked(irq)

    def accepts_unlocked(self, irq: int) -> bool:
        """accepts() without the lock, for a caller that holds a lock the 8259's INTA path
        takes after its own (the PIT's): a snapshot that may be one register write old."""
        chip, bit = (self.master, 1 << irq) if irq < 8 else (self.slave, 1 << (irq - 8))
        ok = bool(chip.irr & bit) and not chip.imr & bit
        if irq >= 8:
            ok = ok and not self.master.imr & (1 << CASCADE_IRQ)
        return ok

    def _poll(self, n: int) -> int:
        """OCW3 poll: the read is the INTA (bit 7 = request, bits 2:0 = the IR)."""
        chip = self._chip(n)
        chip.poll = False
        sfnm = bool(self.master.icw4 & ICW4_SFNM)
        irq = chip.pending(sfnm)
        if irq < 0:
            return 0
        chip.ack(irq)
        self._acked(irq + 8 * n)
        self._update()
        return 0x80 | irq

    def read_port(self, n: int, offset: int) -> int:
        with self._lock:
            chip = self._chip(n)
            if chip.poll:
                return self._poll(n)
            return chip.read_command() if offset == 0 else chip.imr

    def write_port(self, n: int, offset: int, value: int) -> None:
        with self._lock:
            chip = self._chip(n)
            if offset == 0:
                chip.write_command(value & 0xFF)
            else:
                chip.write_data(value & 0xFF)
            self._update()


class _Port:
    def __init__(self, pic: DualPic, n: int) -> None:
        self.pic, self.n = pic, n

    def read(self, offset: int, size: int) -> int:
        return self.pic.read_port(self.n, offset)

    def write(self, offset: int, size: int, value: int) -> None:
        self.pic.write_port(self.n, offset, value)


class _Elcr:
    def __init__(self, pic: DualPic) -> None:
        self.pic = pic

    def read(self, offset: int, size: int) -> int:
        with self.pic._lock:
            v = 0
            for i in range(min(size, 2 - offset)):
                v |= self.pic._chip(offset + i).elcr << (8 * i)
            return v

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(min(size, 2 - offset)):
            self._write1(offset + i, (value >> (8 * i)) & 0xFF)

    def _write1(self, offset: int, value: int) -> None:
        with self.pic._lock:
            chip = self.pic._chip(offset)
            mask = ELCR_MASKS[offset]
            if value & ~mask & 0xFF:
                self.pic.diag.reserved(f"elcr-{offset}", f"ELCR{offset + 1} write {value:#04x}: "
                                       f"bits {value & ~mask & 0xFF:#04x} are reserved (edge only)")
            chip.elcr = value & mask
            for irq in range(8):  # re-latch each input under its new trigger mode
                bit = 1 << irq
                if chip.level_triggered(irq):
                    chip.irr = (chip.irr & ~bit) | (chip.level_in & bit)
            self.pic._update()
