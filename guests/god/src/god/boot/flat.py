"""A flat binary copied to an address and entered there: for tiny test programs.

mode 16: real mode, CS = addr >> 4 (so addr should be 16-byte aligned and below 1 MiB).
mode 32: protected mode, flat segments, paging off.
mode 64: long mode with an identity map of the low 4 GiB, RSP = 0x9f000.
"""

from __future__ import annotations

from god.boot import layout as L
from god.boot.common import BootInputs
from god.boot.cpu import EntryState
from god.boot.errors import LoaderError
from god.memory import GuestMemory, GuestMemoryError


def load_flat(mem: GuestMemory, inp: BootInputs, addr: int, mode: int) -> EntryState:
    if mode == 16 and addr + len(inp.kernel) > 0x100000:
        raise LoaderError("a 16-bit flat binary must lie below 1 MiB")
    try:
        mem.write(addr, inp.kernel)
    except GuestMemoryError as e:
        raise LoaderError(f"flat binary does not fit at {addr:#x}: {e}") from e
    if mode == 16:
        return EntryState("real16", addr & 0xF, {"rsp": 0xFFF0}, cs_base=addr & ~0xF)
    if mode == 32:
        return EntryState("prot32", addr, {"rsp": L.FLAT_STACK_TOP})
    if mode == 64:
        return EntryState("long64", addr, {"rsp": L.FLAT_STACK_TOP})
    raise LoaderError(f"flat mode must be 16, 32 or 64, not {mode}")
