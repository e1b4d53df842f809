"""Interrupt lines as devices see them: a level that goes up and down.

Devices never call KVM directly; they hold an IrqLine. The x86 backend maps it to
KVM_IRQ_LINE on a GSI (the in-kernel PIC/IOAPIC turn level changes into edges or levels as
the guest programmed them); tests plug in a RecordingIrq.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


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
