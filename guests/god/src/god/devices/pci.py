"""PCI configuration mechanism #1 with one host bridge at 00:00.0, and the PC's reset
control register at 0xcf9 (which sits inside the 0xcf8 dword on Intel chipsets).

PCI Local Bus Specification 3.0, section 3.2.2.3.2: CONFIG_ADDRESS at 0xcf8 is latched only by
a full dword write (bit 31 enable, bus 23:16, device 15:11, function 10:8, register 7:2); any
other access to 0xcf8-0xcfb is ordinary I/O. CONFIG_DATA at 0xcfc-0xcff carries the selected
dword when enabled, in any width at any byte offset. A function that does not exist answers
as a master abort: reads all ones, writes dropped (section 6.1, vendor ID 0xFFFF).

The host bridge is QEMU q35's: Intel 82G33/P35 MCH, 8086:29c0, class 06/00/00 (host bridge).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

CONFIG_ADDRESS, CONFIG_DATA, RESET_CONTROL = 0xCF8, 0xCFC, 0xCF9
PORT_BASE, PORT_SIZE = 0xCF8, 8
ENABLE = 1 << 31
HOST_VENDOR, HOST_DEVICE = 0x8086, 0x29C0
CLASS_BRIDGE, SUBCLASS_HOST = 0x06, 0x00
CMD_IO, CMD_MEMORY, CMD_MASTER = 1 << 0, 1 << 1, 1 << 2
RCR_SYS_RST, RCR_RST_CPU = 1 << 1, 1 << 2  # reset control register (ICH9 13.7.5)
MAX_TRACED_ABSENT = 8


def decode(address: int) -> tuple[int, int, int, int]:
    """CONFIG_ADDRESS -> (bus, device, function, dword-aligned register)."""
    return (address >> 16) & 0xFF, (address >> 11) & 0x1F, (address >> 8) & 0x7, address & 0xFC


class HostBridge:
    """A type-0 header with no BARs; the command register and the latency timer are writable."""

    def __init__(self) -> None:
        cfg = bytearray(256)
        struct.pack_into("<HHHH", cfg, 0, HOST_VENDOR, HOST_DEVICE, CMD_MEMORY | CMD_MASTER, 0)
        cfg[0x08:0x0C] = bytes([0, 0, SUBCLASS_HOST, CLASS_BRIDGE])  # rev, prog-if, sub, class
        struct.pack_into("<HH", cfg, 0x2C, 0x1AF4, 0x1100)  # subsystem: QEMU's default
        self.config = cfg
        self.writable = {0x04: 0x07, 0x0D: 0xFF}  # offset -> writable bits

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            mask = self.writable.get(offset + i, 0)
            if mask:
                b = (value >> (8 * i)) & 0xFF
                self.config[offset + i] = (self.config[offset + i] & ~mask) | (b & mask)


class PciHost:
    """Ports 0xcf8-0xcff."""

    def __init__(self, on_reset: Callable[[], None],
                 trace: Callable[[str], None] | None = None) -> None:
        self.address = 0
        self.functions: dict[tuple[int, int, int], HostBridge] = {(0, 0, 0): HostBridge()}
        self.rcr = 0
        self.on_reset, self.trace = on_reset, trace
        self._absent_seen: set[tuple[int, int, int]] = set()

    def _target(self) -> tuple[HostBridge | None, int]:
        bus, dev, fn, reg = decode(self.address)
        f = self.functions.get((bus, dev, fn))
        if f is None and self.trace and len(self._absent_seen) < MAX_TRACED_ABSENT \
                and (bus, dev, fn) not in self._absent_seen:
            self._absent_seen.add((bus, dev, fn))
            more = " (further absent functions not reported)" \
                if len(self._absent_seen) == MAX_TRACED_ABSENT else ""
            self.trace(f"PCI config access to absent function {bus:02x}:{dev:02x}.{fn} "
                       f"(reads all ones){more}")
        return f, reg

    def read(self, offset: int, size: int) -> int:
        port = PORT_BASE + offset
        if port < CONFIG_DATA:
            if port == CONFIG_ADDRESS and size == 4:
                return self.address
            if port == RESET_CONTROL and size == 1:
                return self.rcr
            return (1 << (8 * size)) - 1  # ordinary I/O that nothing decodes
        if not self.address & ENABLE:
            return (1 << (8 * size)) - 1
        f, reg = self._target()
        if f is None:
            return (1 << (8 * size)) - 1
        return f.read(reg + (port - CONFIG_DATA), size)

    def write(self, offset: int, size: int, value: int) -> None:
        port = PORT_BASE + offset
        if port < CONFIG_DATA:
            if port == CONFIG_ADDRESS and size == 4:
                self.address = value & 0x80FFFFFC  # bits 30:24 reserved, 1:0 read as 0
            elif port == RESET_CONTROL and size == 1:
                self.rcr = value & RCR_SYS_RST
                if value & RCR_RST_CPU:
                    self.on_reset()
            return
        if not self.address & ENABLE:
            return
        f, reg = self._target()
        if f is not None:
            f.write(reg + (port - CONFIG_DATA), size, value)
