"""An Intel MultiProcessor Specification 1.4 table, so kernels without ACPI (Linux with
no ACPI tables, as here) find the vCPUs, the IOAPIC and how ISA IRQs reach it.

Placed in the EBDA (0x9fc00, reserved in the memory map), one of the three places Linux's
mpparse scans. ISA IRQ n is wired to IOAPIC pin n (IRQ0 to PIT_GSI): that is KVM's default GSI
routing. The ACPI MADT (boot/acpi.py) describes the same routing and IOAPIC ID.
"""

from __future__ import annotations

import struct

from god.boot import layout as L
from god.memory import GuestMemory

MPF_ADDR = L.EBDA_ADDR
MPC_ADDR = L.EBDA_ADDR + 16
APIC_VERSION, IOAPIC_VERSION = 0x14, 0x11
CPU_ENABLED, CPU_BSP = 1, 2
MP_IRQ_INT, MP_IRQ_NMI, MP_IRQ_EXTINT = 0, 1, 3
PIT_GSI = 0          # the IOAPIC pin ISA IRQ0 (the PIT) reaches; one source for MP table and MADT
MAX_MP_CPUS = 254    # 8-bit APIC IDs, 0xFF is broadcast, and the IOAPIC takes the next ID


def ioapic_id(ncpus: int) -> int:
    """The IOAPIC's ID: the first one after the vCPUs' APIC IDs (as SeaBIOS numbers it)."""
    return min(ncpus, MAX_MP_CPUS)


def _checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def build(ncpus: int) -> tuple[bytes, bytes]:
    """(floating pointer, configuration table). Beyond MAX_MP_CPUS vCPUs only the MADT's
    x2APIC entries can describe the rest."""
    ioapic = ioapic_id(ncpus)
    ncpus = min(ncpus, MAX_MP_CPUS)
    entries = b""
    for i in range(ncpus):
        flags = CPU_ENABLED | (CPU_BSP if i == 0 else 0)
        entries += struct.pack("<BBBBII8x", 0, i, APIC_VERSION, flags, 0x600, 0x201)
    entries += struct.pack("<BB6s", 1, 0, b"ISA   ")
    entries += struct.pack("<BBBBI", 2, ioapic, IOAPIC_VERSION, 1, L.IOAPIC_ADDR)
    isa_irqs = [irq for irq in range(16) if irq == 0 or irq != PIT_GSI]  # IRQ0 takes its pin
    for irq in isa_irqs:
        pin = PIT_GSI if irq == 0 else irq
        entries += struct.pack("<BBHBBBB", 3, MP_IRQ_INT, 0, 0, irq, ioapic, pin)
    entries += struct.pack("<BBHBBBB", 4, MP_IRQ_EXTINT, 0, 0, 0, 0xFF, 0)
    entries += struct.pack("<BBHBBBB", 4, MP_IRQ_NMI, 0, 0, 0, 0xFF, 1)
    count = ncpus + 1 + 1 + len(isa_irqs) + 2
    header = bytearray(struct.pack("<4sHBB8s12sIHHIHBB", b"PCMP", 44 + len(entries), 4, 0,
                                   b"GOD     ", b"GODVMM      ", 0, 0, count, L.LAPIC_ADDR,
                                   0, 0, 0))
    table = bytearray(header + entries)
    table[7] = _checksum(bytes(table))
    mpf = bytearray(struct.pack("<4sIBBB5x", b"_MP_", MPC_ADDR, 1, 4, 0))
    mpf[10] = _checksum(bytes(mpf))
    return bytes(mpf), bytes(table)


def write(mem: GuestMemory, ncpus: int) -> None:
    mpf, table = build(ncpus)
    mem.write(MPF_ADDR, mpf)
    mem.write(MPC_ADDR, table)
    mem.write(0x40E, struct.pack("<H", L.EBDA_ADDR >> 4))  # BDA: EBDA segment
