"""ACPI tables god writes into guest RAM, so kernels find the vCPUs, the IOAPIC, the PM timer,
the reset register and god's virtio-mmio devices the way they do on QEMU (ACPI 6.5).

All of it lives in the reserved BIOS area (layout.ACPI_ADDR, inside 0xE0000-0xFFFFF where
an OS scans for the RSDP, 5.2.5.1):

  RSDP (5.2.5.3, revision 2)  -> RSDT (5.2.7) and XSDT (5.2.8)  -> FADT, MADT
  FADT (5.2.9)                -> FACS (5.2.10), DSDT (5.2.11.1)
  MADT (5.2.12)               one Local APIC (or x2APIC) per vCPU, the IOAPIC, overrides
  DSDT                        \\_SB.VRnn: _HID "LNRO0005" with Memory32Fixed + Interrupt,
                              exactly as QEMU's microvm and arm virt describe virtio-mmio

The interrupt routing agrees with the MP table (boot/mptable.py): same IOAPIC ID, ISA IRQ
n on pin n except IRQ0 on mptable.PIT_GSI, SCI on its own ISA line.
"""

from __future__ import annotations

import struct

from god.boot import aml, mptable
from god.boot import layout as L
from god.devices import fwcfg, pci, pmtimer
from god.memory import GuestMemory

OEM_ID = b"GODVMM"
OEM_TABLE_ID = b"GODTABLE"
CREATOR_ID = b"GOD "
SDT_HEADER = struct.Struct("<4sIBB6s8sI4sI")  # 36 bytes (5.2.6)

# PC fixed hardware (the ICH/PIIX4 ports QEMU's pc machine uses, 0x600..0x60b)
PM_BASE = 0x600
PM1A_EVT_BLK, PM1_EVT_LEN = PM_BASE + pmtimer.R_PM1_STS, 4
PM1A_CNT_BLK, PM1_CNT_LEN = PM_BASE + pmtimer.R_PM1_CNT, 2
PM_TMR_BLK, PM_TMR_LEN = PM_BASE + pmtimer.R_PM_TMR, 4
SCI_IRQ = 9                            # QEMU pc's SCI, level/active-high via an override
RESET_PORT = pci.RESET_CONTROL         # the PC reset control register (devices/pci.py)
RESET_VALUE = pci.RCR_SYS_RST | pci.RCR_RST_CPU  # 0x06: a full reset, as QEMU's FADT
SLP_TYP_S5 = 5                         # the \_S5 package's SLP_TYPa value

# FADT Flags (5.2.9, Table 5.10)
F_WBINVD, F_PROC_C1, F_PWR_BUTTON, F_SLP_BUTTON, F_FIX_RTC = 1 << 0, 1 << 2, 1 << 4, 1 << 5, 1 << 6
F_RESET_REG_SUP = 1 << 10
FADT_FLAGS = F_WBINVD | F_PROC_C1 | F_PWR_BUTTON | F_SLP_BUTTON | F_FIX_RTC | F_RESET_REG_SUP
# IA-PC boot architecture flags (5.2.9.3): legacy devices, an 8042, no VGA
IAPC_LEGACY_DEVICES, IAPC_8042, IAPC_VGA_NOT_PRESENT = 1 << 0, 1 << 1, 1 << 2
IAPC_BOOT_ARCH = IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT
FADT_LEN, FADT_REVISION, FADT_MINOR = 276, 6, 5
FACS_LEN = 64
GAS_SYSTEM_IO = 1
ACCESS_BYTE, ACCESS_WORD, ACCESS_DWORD = 1, 2, 3

# MADT (5.2.12)
MADT_PCAT_COMPAT = 1
MADT_LOCAL_APIC, MADT_IOAPIC, MADT_ISO, MADT_LAPIC_NMI, MADT_LOCAL_X2APIC = 0, 1, 2, 4, 9
LAPIC_ENABLED = 1
MPS_INTI_ACTIVE_HIGH, MPS_INTI_EDGE, MPS_INTI_LEVEL = 0b01, 0b01 << 2, 0b11 << 2
XAPIC_MAX_ID = 254  # 0xFF is broadcast: higher APIC IDs need x2APIC entries (5.2.12.12)

RSDP_LEN = 36
VIRTIO_HID = "LNRO0005"
FWCFG_HID = "QEMU0002"


class MmioDevice:
    """A device ACPI describes: its MMIO window and its interrupt line."""
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    __slots__ = ("base", "gsi", "size")

    def __init__(self, base: int, size: int, gsi: int) -> None:
        self.base = base
        self.size = size
        self.gsi = gsi


def checksum(data: bytes) -> int:
    """The byte that makes data sum to 0 mod 256 (5.2.5.3, 5.2.6)."""
    return (-sum(data)) & 0xFF


def sdt(signature: bytes, revision: int, body: bytes) -> bytes:
    """A System Description Table: 36-byte header (5.2.6) + body, checksummed."""
    length = SDT_HEADER.size + len(body)
    raw = bytearray(SDT_HEADER.pack(signature, length, revision, 0, OEM_ID, OEM_TABLE_ID, 1,
                                    CREATOR_ID, 1) + body)
    raw[9] = checksum(bytes(raw))
    return bytes(raw)


def gas(space: int, bit_width: int, access: int, address: int) -> bytes:
    """Generic Address Structure (5.2.3.2), 12 bytes."""
    return struct.pack("<BBBBQ", space, bit_width, 0, access, address)


def build_madt(ncpus: int) -> bytes:
    body = struct.pack("<II", L.LAPIC_ADDR, MADT_PCAT_COMPAT)
    for i in range(ncpus):
        if i <= XAPIC_MAX_ID:  # 5.2.12.2 Processor Local APIC; UID = APIC ID = index
            body += struct.pack("<BBBBI", MADT_LOCAL_APIC, 8, i, i, LAPIC_ENABLED)
        else:                  # 5.2.12.12 Processor Local x2APIC
            body += struct.pack("<BBHIII", MADT_LOCAL_X2APIC, 16, 0, i, LAPIC_ENABLED, i)
    body += struct.pack("<BBBBII", MADT_IOAPIC, 12, mptable.ioapic_id(ncpus), 0, L.IOAPIC_ADDR, 0)
    # 5.2.12.5 Interrupt Source Overrides: bus 0 (ISA), source IRQ, GSI, MPS INTI flags
    body += struct.pack("<BBBBIH", MADT_ISO, 10, 0, 0, mptable.PIT_GSI,
                        MPS_INTI_ACTIVE_HIGH | MPS_INTI_EDGE)
    body += struct.pack("<BBBBIH", MADT_ISO, 10, 0, SCI_IRQ, SCI_IRQ,
                        MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL)
    # 5.2.12.7 Local APIC NMI: all processors (0xFF), LINT1, as the MP table's NMI entry
    body += struct.pack("<BBBHB", MADT_LAPIC_NMI, 6, 0xFF, 0, 1)
    return sdt(b"APIC", 5, body)


def build_dsdt(devices: list[MmioDevice]) -> bytes:
    """\\_SB.VRnn per virtio-mmio device (QEMU's virtio_acpi_dsdt_add layout), and \\_S5 so
    the OS can power off through PM1a_CNT."""
    nodes = []
    for i, d in enumerate(devices):
        crs = aml.resource_template(
            aml.memory32_fixed(d.base, d.size),
            # god's virtio line is level: up while InterruptStatus != 0 (virtio/mmio.py)
            aml.extended_interrupt(d.gsi, edge=False, active_low=False))
        nodes.append(aml.device(f"VR{i:02d}",
                                aml.name("_HID", aml.string(VIRTIO_HID)),
                                aml.name("_UID", aml.integer(i)),
                                aml.name("_CCA", aml.integer(1)),
                                aml.name("_CRS", crs)))
    # fw_cfg's ports, as QEMU's DSDT names them (docs/specs/fw_cfg.rst "ACPI Interface");
    # _STA 0x0B: present, enabled, functioning, not shown in UI
    nodes.append(aml.device("FWCF", aml.name("_HID", aml.string(FWCFG_HID)),
                            aml.name("_STA", aml.integer(0x0B)),
                            aml.name("_CRS", aml.resource_template(
                                aml.io_port(fwcfg.PORT_BASE, fwcfg.PORT_SIZE)))))
    body = aml.scope("\\_SB", *nodes) + aml.name(
        "\\_S5", aml.package(*(aml.integer(v) for v in (SLP_TYP_S5, 0, 0, 0))))
    return sdt(b"DSDT", 2, body)


def build_facs() -> bytes:
    """FACS (5.2.10): no checksum; version 2; no waking vector, no global lock owner."""
    return struct.pack("<4sIIIII Q B3x I 24x", b"FACS", FACS_LEN, 0, 0, 0, 0, 0, 2, 0)


def build_fadt(facs: int, dsdt: int) -> bytes:
    b = bytearray(FADT_LEN - SDT_HEADER.size)

    def put(offset: int, fmt: str, *values: int | bytes) -> None:
        struct.pack_into(fmt, b, offset - SDT_HEADER.size, *values)

    put(36, "<II", facs, dsdt)                 # FIRMWARE_CTRL, DSDT
    put(45, "<BH", 0, SCI_IRQ)                 # Preferred_PM_Profile unspecified, SCI_INT
    put(48, "<I", 0)                           # SMI_CMD 0: always in ACPI mode (5.2.9)
    put(56, "<I", PM1A_EVT_BLK)
    put(64, "<I", PM1A_CNT_BLK)
    put(76, "<I", PM_TMR_BLK)
    put(88, "<BBBB", PM1_EVT_LEN, PM1_CNT_LEN, 0, PM_TMR_LEN)
    put(96, "<HH", 0x0FFF, 0x0FFF)             # P_LVL2/3_LAT above 100/1000: no C2/C3
    put(109, "<H", IAPC_BOOT_ARCH)
    put(112, "<I", FADT_FLAGS)
    put(116, "<12sB", gas(GAS_SYSTEM_IO, 8, ACCESS_BYTE, RESET_PORT), RESET_VALUE)
    put(131, "<B", FADT_MINOR)
    put(132, "<QQ", facs, dsdt)                # X_FIRMWARE_CTRL, X_DSDT
    put(148, "<12s", gas(GAS_SYSTEM_IO, 8 * PM1_EVT_LEN, ACCESS_WORD, PM1A_EVT_BLK))
    put(172, "<12s", gas(GAS_SYSTEM_IO, 8 * PM1_CNT_LEN, ACCESS_WORD, PM1A_CNT_BLK))
    put(208, "<12s", gas(GAS_SYSTEM_IO, 8 * PM_TMR_LEN, ACCESS_DWORD, PM_TMR_BLK))
    return sdt(b"FACP", FADT_REVISION, bytes(b))


def build_rsdp(rsdt: int, xsdt: int) -> bytes:
    """RSDP revision 2 (5.2.5.3): checksum over the first 20 bytes, extended over all 36."""
    raw = bytearray(struct.pack("<8sB6sBIIQB3x", b"RSD PTR ", 0, OEM_ID, 2, rsdt, RSDP_LEN,
                                xsdt, 0))
    raw[8] = checksum(bytes(raw[:20]))
    raw[32] = checksum(bytes(raw))
    return bytes(raw)


def build(ncpus: int, devices: list[MmioDevice], base: int = L.ACPI_ADDR) -> bytes:
    """The whole ACPI area as it goes at `base` (16-byte aligned, RSDP first)."""
    blob = bytearray()

    def place(table: bytes, align: int = 16) -> int:
        blob.extend(b"\0" * (-len(blob) % align))
        addr = base + len(blob)
        blob.extend(table)
        return addr

    place(b"\0" * RSDP_LEN)                    # RSDP goes first; filled in below
    facs = place(build_facs(), 64)             # FACS must be 64-byte aligned (5.2.10)
    dsdt = place(build_dsdt(devices))
    fadt = place(build_fadt(facs, dsdt))
    madt = place(build_madt(ncpus))
    rsdt = place(sdt(b"RSDT", 1, struct.pack("<II", fadt, madt)))
    xsdt = place(sdt(b"XSDT", 1, struct.pack("<QQ", fadt, madt)))
    blob[0:RSDP_LEN] = build_rsdp(rsdt, xsdt)
    if len(blob) > L.ACPI_SIZE:
        raise ValueError(f"ACPI tables ({len(blob)} bytes) exceed the {L.ACPI_SIZE:#x}-byte area")
    return bytes(blob)


def write(mem: GuestMemory, ncpus: int, devices: list[MmioDevice]) -> int:
    """Write the tables; returns the RSDP's address."""
    mem.write(L.ACPI_ADDR, build(ncpus, devices))
    return L.ACPI_ADDR
