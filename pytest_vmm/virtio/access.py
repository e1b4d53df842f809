"""What the driver needs from a machine: guest-RAM bytes, one device's registers, a place
for rings and buffers. Implemented over the guest agent (AgentMemory, AgentRegisters) and,
in unit tests, over a bytearray (BytesMemory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pytest_vmm.agent.client import AgentClient

class Memory(Protocol):
    """Guest-physical memory as the device sees it."""

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def fill(self, addr: int, n: int, byte: int = 0) -> None:
        """``n`` bytes of ``byte`` (rings and buffers cleared before the device may use them)."""
        ...


class Registers(Protocol):
    """One device's register window, offsets from its base."""

    def read(self, offset: int, width: int = 4) -> int: ...

    def write(self, offset: int, value: int, width: int = 4) -> None: ...


class BytesMemory:
    """Memory over a bytearray starting at guest-physical ``base`` (unit tests, models)."""

    def __init__(self, size: int, base: int = 0) -> None:
        self.base = base
        self.data = bytearray(size)

    def _off(self, addr: int, n: int) -> int:
        off = addr - self.base
        if off < 0 or off + n > len(self.data):
            raise ValueError(f"guest access {addr:#x}+{n} outside {self.base:#x}+{len(self.data):#x}")
        return off

    def read(self, addr: int, n: int) -> bytes:
        off = self._off(addr, n)
        return bytes(self.data[off : off + n])

    def write(self, addr: int, data: bytes) -> None:
        off = self._off(addr, len(data))
        self.data[off : off + len(data)] = data

    def fill(self, addr: int, n: int, byte: int = 0) -> None:
        self.write(addr, bytes([byte]) * n)


class AgentMemory:
    """Guest RAM through the agent's ``mrd``/``mwr`` (hex lines of up to MEM_CHUNK bytes)."""

    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent

    def read(self, addr: int, n: int) -> bytes:
        return self.agent.mem_read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self.agent.mem_write(addr, data)

    def fill(self, addr: int, n: int, byte: int = 0) -> None:
        self.agent.mem_fill(addr, n, byte)


class AgentRegisters:
    """A device's MMIO registers through the agent's exact-width ``rd``/``wr``."""

    def __init__(self, agent: AgentClient, base: int) -> None:
        self.agent = agent
        self.base = base

    def read(self, offset: int, width: int = 4) -> int:
        return self.agent.mmio_read(self.base + offset, width)

    def write(self, offset: int, value: int, width: int = 4) -> None:
        self.agent.mmio_write(self.base + offset, width, value)


@dataclass
class Arena:
    """Bump allocator over a DMA area; ``mark``/``release`` free everything after a point."""

    start: int
    end: int

    def __post_init__(self) -> None:
        self.next = self.start

    def alloc(self, size: int, align: int = 16) -> int:
        addr = (self.next + align - 1) & ~(align - 1)
        if addr + max(size, 1) > self.end:
            raise MemoryError(f"DMA area {self.start:#x}..{self.end:#x} exhausted ({size} bytes asked)")
        self.next = addr + max(size, 1)
        return addr

    def mark(self) -> int:
        return self.next

    def release(self, mark: int) -> None:
        self.next = mark
