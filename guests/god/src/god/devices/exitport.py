"""An exit port compatible with QEMU's isa-debug-exit (iobase 0xf4).

Writing value v makes the VMM exit with status (v << 1) | 1, QEMU's encoding: statuses from
the guest are always odd, so they never collide with the VMM's own (even) error statuses.
"""

from __future__ import annotations

from collections.abc import Callable

EXIT_PORT = 0xF4


class ExitPort:
    def __init__(self, on_exit: Callable[[int], None]) -> None:
        self._on_exit = on_exit
        self.value: int | None = None

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1  # isa-debug-exit is write-only; reads float high

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value
        self._on_exit(((value << 1) | 1) & 0xFF)
