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

    def set_irq(self, gsi: int, level: bool) -> None:
        if self.pic is not None and gsi < 16 and gsi != 2:
            self.pic.set_irq(gsi, level)
        if self.ioapic is not None:
            self.ioapic.set_irq(gsi, level)


    def pulse(self, gsi: int) -> bool:
        """One edge request (the PIT); True if the 8259 or the IOAPIC took it."""
        taken = False
        if self.pic is not None and gsi < 16 and gsi != 2:
            self.pic.set_irq(gsi, True)
            taken = self.pic.accepts(gsi)
            self.pic.set_irq(gsi, False)
        if self.ioapic is not None:
            taken = self.ioapic.pulse(gsi) or taken
        return taken


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
