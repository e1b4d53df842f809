"""What every loader receives and shares: the boot inputs and module placement."""

from __future__ import annotations

from god.boot import layout as L
from god.boot.errors import LoaderError
from god.memory import GuestMemory, GuestMemoryError

# Plain classes, not dataclasses: god's start-up time (see god/machine.py).


class Module:
    """An initrd or multiboot module: its bytes and the string the kernel sees for it."""
    __slots__ = ("cmdline", "data")

    def __init__(self, data: bytes, cmdline: str = "") -> None:
        self.data = data
        self.cmdline = cmdline


class BootInputs:
    __slots__ = ("cmdline", "kernel", "kernel_path", "mem_bytes", "modules")

    def __init__(self, kernel: bytes, cmdline: str = "", modules: list[Module] | None = None,
                 mem_bytes: int = 128 << 20, kernel_path: str = "") -> None:
        self.kernel = kernel
        self.cmdline = cmdline
        self.modules: list[Module] = [] if modules is None else modules
        self.mem_bytes = mem_bytes
        # as given to `god run`: multiboot's argv[0] (boot/multiboot.py)
        self.kernel_path = kernel_path


def write_cmdline(mem: GuestMemory, cmdline: str, limit: int = L.CMDLINE_MAX) -> int:
    raw = cmdline.encode() + b"\0"
    if len(raw) > limit:
        raise LoaderError(f"command line is {len(raw)} bytes; the limit is {limit}")
    mem.write(L.CMDLINE_ADDR, raw)
    return L.CMDLINE_ADDR


def place_top(mem: GuestMemory, data: bytes, floor: int, ceiling: int) -> int:
    """Put data page-aligned as high as possible below ceiling (as QEMU places an initrd)."""
    low_end = min(ceiling, mem.regions[0].end)
    addr = L.align_down(low_end - len(data), L.PAGE)
    if addr < floor:
        raise LoaderError(f"{len(data)} bytes of initrd/modules do not fit between "
                          f"{floor:#x} and {low_end:#x}; give more --mem")
    try:
        mem.write(addr, data)
    except GuestMemoryError as e:
        raise LoaderError(str(e)) from e
    return addr


class StringArea:
    """Strings for boot info (module names, loader name) after the command line."""

    def __init__(self, mem: GuestMemory, start: int, end: int) -> None:
        self.mem, self.pos, self.end = mem, start, end

    def add(self, s: str) -> int:
        raw = s.encode() + b"\0"
        if self.pos + len(raw) > self.end:
            raise LoaderError("boot strings do not fit in the command-line area")
        addr = self.pos
        self.mem.write(addr, raw)
        self.pos += len(raw)
        return addr
