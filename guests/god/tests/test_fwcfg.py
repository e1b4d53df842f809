"""god's fw_cfg (devices/fwcfg.py) against QEMU's docs/specs/fw_cfg.rst ("Guest-side Hardware
Interface"), driven through the port bus exactly as a guest's in/out instructions reach it."""

from __future__ import annotations

import struct

from god.boot import layout as L
from god.devices.bus import Bus
from god.devices.fwcfg import FwCfg

SELECTOR, DATA = 0x510, 0x511
MEM = 256 << 20


def machine(trace: list[str] | None = None) -> Bus:
    bus = Bus("port I/O", 0x10000)
    bus.register(0x510, 2, FwCfg(MEM, 3, 8, L.memory_map(MEM), trace.append if trace is not None else None))
    return bus


def read_item(bus: Bus, key: int, n: int) -> bytes:
    """Select (16-bit write, little-endian, to 0x510), then n byte reads from 0x511."""
    base, dev = bus.lookup(SELECTOR)
    dev.write(SELECTOR - base, 2, key)
    return bytes(dev.read(DATA - base, 1) for _ in range(n))


def test_signature_reads_qemu() -> None:
    """"Signature (Key 0x0000)": reading four bytes gives the characters QEMU."""
    assert read_item(machine(), 0x0000, 4) == b"QEMU"


def test_id_has_the_traditional_interface_bit_and_no_dma() -> None:
    """"FW_CFG_ID": 32-bit LE; bit 0 traditional interface always set; bit 1 DMA (not
    implemented, so clear)."""
    ident = struct.unpack("<I", read_item(machine(), 0x0001, 4))[0]
    assert ident & 1 and not ident & 2


def test_cpu_count_and_ram_size() -> None:
    """QEMU's generic keys: FW_CFG_RAM_SIZE 0x03 (u64 LE), NB_CPUS 0x05 and MAX_CPUS 0x0f
    (u16 LE), as hw/nvram/fw_cfg.c fills them."""
    bus = machine()
    assert struct.unpack("<Q", read_item(bus, 0x03, 8))[0] == MEM
    assert struct.unpack("<H", read_item(bus, 0x05, 2))[0] == 3
    assert struct.unpack("<H", read_item(bus, 0x0F, 2))[0] == 8


def test_selecting_resets_the_offset_and_reads_past_the_end_are_zero() -> None:
    """"Setting the selector register will cause the data offset to be set to zero";
    "After the data offset has passed the end ... any reads will return a data value of 0x00"."""
    bus = machine()
    assert read_item(bus, 0, 2) == b"QE"
    assert read_item(bus, 0, 6) == b"QEMU\0\0"


def test_file_directory_is_big_endian_and_lists_etc_e820() -> None:
    """"File Directory (Key 0x0019)": count BE32, then 64-byte entries {size BE32, select BE16,
    reserved, name[56]}; the file's selector reads its bytes (etc/e820: QEMU's packed
    e820_entry {u64 addr, u64 len, u32 type}, little-endian)."""
    bus = machine()
    count = struct.unpack(">I", read_item(bus, 0x19, 4))[0]
    assert 1 <= count < 64, f"file count {count:#x} (big-endian?)"
    raw = read_item(bus, 0x19, 4 + 64 * count)[4:]
    files = {}
    for i in range(count):
        size, select, _ = struct.unpack_from(">IHH", raw, 64 * i)
        name = raw[64 * i + 8:64 * i + 64].split(b"\0")[0].decode()
        files[name] = (size, select)
    assert "etc/e820" in files
    size, select = files["etc/e820"]
    assert select >= 0x20 and size % 20 == 0
    e820 = read_item(bus, select, size)
    entries = [struct.unpack_from("<QQI", e820, 20 * i) for i in range(size // 20)]
    assert entries == L.memory_map(MEM)
    ram = sum(s for _, s, t in entries if t == 1)
    assert ram <= MEM


def test_unknown_key_reads_zeros_and_is_traced() -> None:
    """A key QEMU would not have either reads as zeros (fw_cfg_read with an invalid entry);
    god names it once under --trace-unassigned."""
    trace: list[str] = []
    bus = machine(trace)
    assert read_item(bus, 0x1234, 4) == b"\0\0\0\0"
    assert len(trace) == 1 and "0x1234" in trace[0]


def test_data_writes_are_ignored_and_wide_reads_float() -> None:
    """"As of QEMU v2.4, writes to the fw_cfg data register are no longer supported, and will
    be ignored"; the I/O data register is 8-bit wide, so a 4-byte read is not a data read."""
    bus = machine()
    _, dev = bus.lookup(SELECTOR)
    dev.write(0, 2, 0)
    dev.write(1, 1, 0x41)
    assert dev.read(1, 4) == 0xFFFFFFFF
    assert bytes(dev.read(1, 1) for _ in range(4)) == b"QEMU"
