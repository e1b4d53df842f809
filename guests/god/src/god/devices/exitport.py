"""An exit port compatible with QEMU's isa-debug-exit (iobase 0xf4).

Writing value v makes the VMM exit with status (v << 1) | 1, QEMU's encoding: statuses from
the guest are always odd, so they never collide with the VMM's own (even) error statuses.
"""

from __future__ import annotations

from collections.abc import Callable

EXIT_PORT = 0xF4


def guest_status(value: int) -> int:
    """The process exit status for a value the guest reports: QEMU's (v << 1) | 1, as 8
    bits. Also used for arm64 guests' PSCI SYSTEM_RESET2 vendor exits (god.arch.aarch64)."""
    return ((value << 1) | 1) & 0xFF


class ExitPort:
    def __init__(self, on_exit: Callable[[int], None]) -> None:
        self._on_exit = on_exit
        self.value: int | None = None

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1  # isa-debug-exit is write-only; reads float high

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value
        self._on_exit(guest_status(value))
