"""Interrupt lines as devices see them: a level that goes up and down.

Devices never call KVM directly; they hold an IrqLine. With `--irqchip kernel` the x86
backend maps it to KVM_IRQ_LINE on a GSI (the in-kernel PIC/IOAPIC turn level changes into
edges or levels as the guest programmed them); with `--irqchip split` it is a GsiLine into
god's own IsaIrqRouter (8259 pair + IOAPIC); tests plug in a RecordingIrq.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from god.devices.ioapic import Ioapic
    from god.devices.pic import DualPic


class IrqLine(Protocol):
    def set_level(self, level: bool) -> None: ...


class KvmIrqLine:
    """A GSI of the in-kernel irqchip. Only changes reach KVM: an ioctl per exit is costly."""

    def __init__(self, irq_line: Callable[[int, int], None], gsi: int) -> None:
        self._irq_line = irq_line
        self.gsi = gsi
        self.level = False

    def set_level(self, level: bool) -> None:
        if level != self.level:
            self.level = level
            self._irq_line(self.gsi, 1 if level else 0)


class IrqSink(Protocol):
    def set_irq(self, pin: int, level: bool) -> object: ...


class IsaIrqRouter:
    """The PC's wiring of interrupt requests: GSI n < 16 (ISA IRQ n) reaches 8259 input n
    and IOAPIC pin n, GSI 16-23 the IOAPIC only (what god's MP table tells the guest).
    ISA IRQ 2 does not exist on a PC (the master's IR2 is the cascade): it reaches the
    IOAPIC only."""

    def __init__(self, pic: DualPic | None, ioapic: Ioapic | None) -> None:
        self.pic, self.ioapic = pic, ioapic
        self._pic_only: set[int] = set()  # GSIs whose last pulse only the 8259 took

    def set_irq(self, gsi: int, level: bool) -> None:
        if self.pic is not None and gsi < 16 and gsi != 2:
            self.pic.set_irq(gsi, level)
        if self.ioapic is not None:
            self.ioapic.set_irq(gsi, level)


    def pulse(self, gsi: int) -> bool:
        """One edge request (the PIT); True if the 8259 or the IOAPIC took it."""
        pic_took = ioapic_took = False
        if self.pic is not None and gsi < 16 and gsi != 2:
            self.pic.set_irq(gsi, True)
            pic_took = self.pic.accepts(gsi)
            self.pic.set_irq(gsi, False)
        if self.ioapic is not None:
            ioapic_took = self.ioapic.pulse(gsi)
        if pic_took and not ioapic_took:
            self._pic_only.add(gsi)
        else:
            self._pic_only.discard(gsi)
        return pic_took or ioapic_took

    def pulse_withdrawn(self, gsi: int) -> bool:
        """The last pulse on gsi went to the 8259 alone, which no longer requests it: its
        input was masked or the chip re-initialised (ICW1) before the CPU's INTA, so no
        acknowledgement will come for it (an IOAPIC pulse is an MSI already at the LAPIC)."""
        # Unlocked: the PIT asks under its own lock, which the 8259's INTA path takes second.
        return gsi in self._pic_only and self.pic is not None and not self.pic.accepts_unlocked(gsi)


class GsiLine:
    """A GSI of god's own interrupt controllers (split irqchip); only changes propagate."""

    def __init__(self, router: IrqSink, gsi: int) -> None:
        self.router = router
        self.gsi = gsi
        self.level = False

    def set_level(self, level: bool) -> None:
        if level != self.level:
            self.level = level
            self.router.set_irq(self.gsi, level)


class RecordingIrq:
    """An IrqLine for tests: remembers the level and every change."""

    def __init__(self) -> None:
        self.level = False
        self.changes: list[bool] = []

    def set_level(self, level: bool) -> None:
        if level != self.level:
            self.level = level
            self.changes.append(level)

    @property
    def raises(self) -> int:
        return sum(1 for c in self.changes if c)
