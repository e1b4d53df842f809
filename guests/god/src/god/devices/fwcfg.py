"""QEMU's firmware configuration device (docs/specs/fw_cfg.rst), the x86 I/O-port interface:
selector at 0x510 (16-bit write, little-endian), data at 0x511 (8-bit reads). No DMA
interface (FW_CFG_ID bit 1 clear, nothing at 0x514).

Items: signature "QEMU" (0x0000), ID (0x0001), UUID (0x0002, zeros), RAM_SIZE (0x0003),
NB_CPUS (0x0005), MAX_CPUS (0x000f: QEMU's -smp maxcpus, the bound for hot-plugged CPUs),
the file directory (0x0019, big-endian) and the files
from 0x0020 on (etc/e820). As in QEMU, selecting a key god lacks reads as zeros, and so does
reading past an item's end; data-port writes are ignored (as QEMU >= 2.4 does).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

SELECTOR_PORT, DATA_PORT = 0x510, 0x511
PORT_BASE, PORT_SIZE = 0x510, 2
FW_CFG_SIGNATURE, FW_CFG_ID, FW_CFG_UUID, FW_CFG_RAM_SIZE = 0x00, 0x01, 0x02, 0x03
FW_CFG_NB_CPUS, FW_CFG_MAX_CPUS, FW_CFG_FILE_DIR, FW_CFG_FILE_FIRST = 0x05, 0x0F, 0x19, 0x20
FW_CFG_WRITE_CHANNEL, FW_CFG_ARCH_LOCAL = 0x4000, 0x8000
ID_TRADITIONAL = 1 << 0
FILE_NAME_MAX = 56
E820_ENTRY = struct.Struct("<QQI")  # QEMU's struct e820_entry, packed (20 bytes)


def file_dir(files: list[tuple[str, int, int]]) -> bytes:
    """FWCfgFiles: count (BE32), then {size BE32, select BE16, reserved, name[56]} each."""
    out = struct.pack(">I", len(files))
    for name, size, select in files:
        raw = name.encode()
        if len(raw) >= FILE_NAME_MAX:
            raise ValueError(f"fw_cfg file name {name!r} too long")
        out += struct.pack(">IHH56s", size, select, 0, raw)
    return out


def e820_file(memory_map: list[tuple[int, int, int]]) -> bytes:
    return b"".join(E820_ENTRY.pack(addr, size, typ) for addr, size, typ in memory_map)


class FwCfg:
    def __init__(self, ram_bytes: int, cpus: int, max_cpus: int,
                 memory_map: list[tuple[int, int, int]],
                 trace: Callable[[str], None] | None = None) -> None:
        files = {"etc/e820": e820_file(memory_map)}
        self.items: dict[int, bytes] = {
            FW_CFG_SIGNATURE: b"QEMU",
            FW_CFG_ID: struct.pack("<I", ID_TRADITIONAL),
            FW_CFG_UUID: bytes(16),
            FW_CFG_RAM_SIZE: struct.pack("<Q", ram_bytes),
            FW_CFG_NB_CPUS: struct.pack("<H", cpus),
            FW_CFG_MAX_CPUS: struct.pack("<H", max_cpus),
        }
        listing = []
        for i, (name, data) in enumerate(sorted(files.items())):
            self.items[FW_CFG_FILE_FIRST + i] = data
            listing.append((name, len(data), FW_CFG_FILE_FIRST + i))
        self.items[FW_CFG_FILE_DIR] = file_dir(listing)
        self.trace = trace
        self.selector = 0
        self.offset = 0
        self._unknown_seen: set[int] = set()

    def _current(self) -> bytes:
        # Bit 14 (write channel) does not change which item is read.
        data = self.items.get(self.selector & ~FW_CFG_WRITE_CHANNEL)
        if data is None:
            if self.trace and self.selector not in self._unknown_seen:
                self._unknown_seen.add(self.selector)
                self.trace(f"fw_cfg key {self.selector:#06x} is not provided (reads as zeros)")
            return b""
        return data

    def read(self, offset: int, size: int) -> int:
        if size != 1:  # QEMU accepts only byte reads on the I/O ports
            if self.trace:
                self.trace(f"fw_cfg {size}-byte read at {PORT_BASE + offset:#x} (only 1-byte reads)")
            return (1 << (8 * size)) - 1
        data = self._current()
        value = data[self.offset] if self.offset < len(data) else 0
        if self.offset < len(data):
            self.offset += 1
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 2:  # the selector, whichever of the two ports it is written at (as QEMU)
            self.selector, self.offset = value & 0xFFFF, 0
            self._current()
        elif size != 1 and self.trace:
            self.trace(f"fw_cfg {size}-byte write at {PORT_BASE + offset:#x} ignored")
        # 1-byte writes go to the data register: ignored since QEMU 2.4
