"""god's PCI host bridge (devices/pci.py) against the PCI Local Bus Specification 3.0,
section 3.2.2.3.2 (configuration mechanism #1) and section 6.1 (configuration header)."""

from __future__ import annotations

from god.devices.pci import PciHost

ADDR, DATA = 0xCF8, 0xCFC


class Ports:
    def __init__(self) -> None:
        self.resets = 0
        self.trace: list[str] = []
        self.dev = PciHost(self._reset, self.trace.append)

    def _reset(self) -> None:
        self.resets += 1

    def out(self, port: int, size: int, value: int) -> None:
        self.dev.write(port - 0xCF8, size, value)

    def inp(self, port: int, size: int) -> int:
        return self.dev.read(port - 0xCF8, size)

    def cfg_read(self, bus: int, dev: int, fn: int, reg: int, size: int = 4) -> int:
        self.out(ADDR, 4, (1 << 31) | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xFC))
        return self.inp(DATA + (reg & 3), size)


def test_host_bridge_at_00_00_0_has_a_bridge_class() -> None:
    """6.2.1: vendor/device at 00h, class code at 0Bh (06h bridge), 0Ah (00h host bridge);
    header type (0Eh) 0, single function."""
    p = Ports()
    assert p.cfg_read(0, 0, 0, 0x00) == 0x29C0_8086
    assert p.cfg_read(0, 0, 0, 0x08) >> 8 == 0x060000
    assert p.cfg_read(0, 0, 0, 0x0E, 1) == 0


def test_every_width_and_byte_offset_of_config_data() -> None:
    """3.2.2.3.2: CONFIG_DATA accesses may be bytes, words or dwords at 0xcfc-0xcff, each
    returning those bytes of the selected dword."""
    p = Ports()
    assert p.cfg_read(0, 0, 0, 0x00, 2) == 0x8086
    assert p.cfg_read(0, 0, 0, 0x02, 2) == 0x29C0
    assert [p.cfg_read(0, 0, 0, r, 1) for r in range(4)] == [0x86, 0x80, 0xC0, 0x29]


def test_absent_functions_read_all_ones() -> None:
    """6.1: a read of a function that does not exist ends in master abort and returns
    0xFFFF in the Vendor ID (all ones); god traces it under --trace-unassigned."""
    p = Ports()
    assert p.cfg_read(0, 1, 0, 0) == 0xFFFFFFFF
    assert p.cfg_read(0, 0, 1, 0, 2) == 0xFFFF
    assert p.cfg_read(1, 0, 0, 0, 1) == 0xFF
    assert any("00:01.0" in t for t in p.trace)


def test_config_address_latches_only_dword_writes_and_reads_back() -> None:
    """3.2.2.3.2: only a full dword write latches CONFIG_ADDRESS; bits 1:0 are read-only 0;
    other accesses are ordinary I/O (nothing answers: all ones)."""
    p = Ports()
    p.out(ADDR, 4, 0x8000_0000 | 0x13)
    assert p.inp(ADDR, 4) == 0x8000_0010
    p.out(ADDR, 2, 0xFFFF)
    assert p.inp(ADDR, 4) == 0x8000_0010
    assert p.inp(ADDR, 2) == 0xFFFF


def test_data_port_without_the_enable_bit_is_not_config_space() -> None:
    """3.2.2.3.2: with bit 31 (Enable) clear, CONFIG_DATA accesses are plain I/O."""
    p = Ports()
    p.out(ADDR, 4, 0x0000_0000)
    assert p.inp(DATA, 4) == 0xFFFFFFFF


def test_command_register_is_writable_ids_are_not() -> None:
    """6.2.2: Command (04h) is read/write; Vendor/Device ID are read-only."""
    p = Ports()
    p.cfg_read(0, 0, 0, 0x04)
    p.out(DATA, 2, 0)
    assert p.cfg_read(0, 0, 0, 0x04, 2) == 0
    p.cfg_read(0, 0, 0, 0)
    p.out(DATA, 4, 0x12345678)
    assert p.cfg_read(0, 0, 0, 0) == 0x29C0_8086


def test_byte_write_to_0xcf9_with_rst_cpu_resets() -> None:
    """Intel ICH9 datasheet 13.7.5 (Reset Control Register, I/O 0xcf9, byte): writing
    RST_CPU (bit 2) resets; 0x06 is the value the FADT's RESET_REG names."""
    p = Ports()
    p.out(0xCF9, 1, 0x02)
    assert p.resets == 0
    p.out(0xCF9, 1, 0x06)
    assert p.resets == 1
