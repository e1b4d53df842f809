"""MMIO and port-I/O conformance through the guest agent: 16550A register semantics (National
Semiconductor PC16550D datasheet), the interrupt controllers' identification registers (Intel SDM
vol. 3A ch. 10, Intel 82093AA), virtio-mmio transports (virtio 1.2 §4.2) where the hypervisor has
them, unassigned MMIO (recorded per hypervisor) and every access width. Each check names its
clause.

Addresses are the PC/microvm conventions both god and QEMU follow: COM1 at 0x3f8, IOAPIC at
0xfec00000, LAPIC at 0xfee00000; those checks are x86's (``vmm_arch("x86_64")``). The
virtio-mmio checks run on both architectures, with QEMU virt's transports on aarch64.
"""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.client import AgentClient, AgentError
from pytest_vmm.agent.protocol import ErrorCode

from . import device_state
from .x86_platform import COM1, IOAPIC, LAPIC
from .x86_platform import ioapic_read as ioapic_reg

THR, IER, IIR, LCR, MCR, LSR, MSR, SCR = (COM1 + i for i in range(8))
# Below god's device window (0xd0000000) and above the RAM of any machine these suites boot
# (god caps low RAM at 3 GiB; QEMU microvm/pc with <= 3 GiB RAM leave it unassigned).
UNASSIGNED_MMIO = 0xC8000000
UNASSIGNED_PORT = 0x0F00
# Where virtio-mmio transports live: QEMU microvm (8 slots of 0x200 at 0xfeb00000) and god
# (page-sized slots from 0xd0000000).
VIRTIO_CANDIDATES = [0xFEB00000 + 0x200 * i for i in range(8)] + [0xD0000000 + 0x1000 * i for i in range(8)]
# aarch64: QEMU virt's 32 transports of 0x200 bytes at 0x0a000000 (hw/arm/virt.c memmap,
# VIRT_MMIO; also in the device tree it passes). The x86 bases fault there (external abort).
VIRTIO_CANDIDATES_BY_ARCH = {"x86_64": VIRTIO_CANDIDATES,
                             "aarch64": [0x0A000000 + 0x200 * i for i in range(32)]}
VIRTIO_MAGIC = 0x74726976  # "virt"
RAM_SCRATCH = 0x00400000  # free RAM above the probe's image (it ends below 2 MiB)
# The arm64 probe's RAM starts at 0x40000000 (QEMU virt, god's arm64 machine); its image ends
# below 0x40100000 and QEMU puts the device tree at RAM base + 32 MiB or higher.
RAM_SCRATCH_BY_ARCH = {"x86_64": RAM_SCRATCH, "aarch64": 0x40400000}

# Each check leaves the guest as it found it (writes are read back and restored), so checks of
# one target share a guest, health-checked between them; the two that reset a virtio device's
# state take a fresh one.
pytestmark = [
    pytest.mark.vmm_shared, pytest.mark.vmm_shared_state(probe=device_state.mmio),
    pytest.mark.vmm_requires("mmio"),
    pytest.mark.vmm_spec_allows("Intel SDM vol. 3A §10.4.8 / 82093AA §3.2.2 / virtio 1.2 §4.2.2: "
                                "version and ID values are the implementation's within the range asserted",
                                "lapic_version", "ioapic_version", "virtio_*"),
    pytest.mark.vmm_spec_allows("unassigned space reads all zeros or all ones: either is allowed",
                                "unassigned_*"),
]


def virtio_transports(agent: AgentClient, arch: str = "x86_64") -> list[int]:
    return [base for base in VIRTIO_CANDIDATES_BY_ARCH[arch] if agent.mmio_read(base, 4) == VIRTIO_MAGIC]


def virtio_transport(machine: Machine) -> int:
    """The transport to test: one with a device behind it if any, else the first one."""
    agent = machine.agent
    arch = machine.config.hypervisor.arch
    found = virtio_transports(agent, arch)
    bases = "QEMU microvm 0xfeb00000, god 0xd0000000, QEMU virt 0x0a000000"
    if not found and (machine.spec.disks or machine.spec.vsock is not None):
        # The machine was given a virtio device: a transport without the magic is the defect
        # these checks exist for (4.2.2), never a reason to skip them.
        pytest.fail(f"{machine.target_id} was given a virtio device (disks or vsock) but no transport "
                    f"at the known bases ({bases}) reads MagicValue 0x74726976 (virtio 1.2 §4.2.2)")
    if not found:
        pytest.skip(f"{machine.hypervisor_name} has no virtio-mmio transport at the known bases ({bases}) "
                    "and this machine was given no virtio device")
    with_device = [base for base in found if agent.mmio_read(base + 0x8, 4) != 0]
    return (with_device or found)[0]


# ---------------------------------------------------------------------------- 16550 UART
@pytest.mark.vmm_arch("x86_64")
@pytest.mark.parametrize("pattern", [0x00, 0x5A, 0xA5, 0xFF])
def test_uart_scratch_register_round_trip(machine: Machine, pattern: int) -> None:
    """16550A datasheet, Scratchpad Register (SCR, offset 7): 8 bits of read/write storage with
    no effect on the UART; every pattern reads back."""
    agent = machine.agent
    agent.outb(SCR, pattern)
    observed = agent.inb(SCR)
    assert observed == pattern, f"SCR: wrote {pattern:#04x}, expected {pattern:#04x} back, observed {observed:#04x}"


@pytest.mark.vmm_arch("x86_64")
def test_uart_lsr_thre_and_temt_after_transmit(machine: Machine) -> None:
    """16550A datasheet, LSR bit 5 (THRE: transmitter holding register/FIFO empty) and bit 6
    (TEMT: THR and shift register both empty): with nothing being sent both are 1."""
    # The agent has just transmitted its previous reply and waits for THRE before each byte.
    lsr = machine.agent.inb(LSR)
    assert lsr & 0x60 == 0x60, f"LSR after transmit: expected THRE|TEMT (0x60) set, observed LSR={lsr:#04x}"


@pytest.mark.vmm_arch("x86_64")
def test_uart_iir_reports_no_interrupt_pending(machine: Machine) -> None:
    """16550A datasheet, IIR bit 0 = 1: no interrupt pending, bits 3:1 = 000 (low nibble 0x1)."""
    iir = machine.agent.inb(IIR)
    assert iir & 0x0F == 0x01, f"IIR with nothing pending: expected low nibble 0x1, observed IIR={iir:#04x}"


@pytest.mark.vmm_arch("x86_64")
def test_uart_iir_shows_fifo_enabled(machine: Machine) -> None:
    """16550A datasheet, IIR bits 7:6 = 11 when FCR bit 0 enabled the FIFOs (the agent wrote
    FCR=0x07 at boot)."""
    # The agent programs FCR=0x07 at boot: a 16550A then reports FIFOs enabled in IIR[7:6].
    iir = machine.agent.inb(IIR)
    assert iir & 0xC0 == 0xC0, f"IIR[7:6] after FCR=0x07: expected 0b11 (16550A FIFOs on), observed IIR={iir:#04x}"


@pytest.mark.vmm_arch("x86_64")
def test_uart_ier_reads_back_rx_enable(machine: Machine) -> None:
    """16550A datasheet, IER (offset 1, DLAB=0) is read/write, bits 3:0 the four interrupt
    enables: the agent enabled only ERBFI (bit 0), so 0x01 reads back."""
    ier = machine.agent.inb(IER)
    assert ier == 0x01, f"IER: the agent enabled only received-data interrupts, expected 0x01, observed {ier:#04x}"


@pytest.mark.vmm_arch("x86_64")
def test_uart_lcr_round_trip(machine: Machine) -> None:
    """16550A datasheet, Line Control Register is read/write (word length, stop bits, parity,
    DLAB in bit 7): 0x1b (8 bits, even parity) reads back."""
    agent = machine.agent
    agent.outb(LCR, 0x1B)  # 8 data bits, even parity (DLAB stays 0: the agent keeps working)
    observed = agent.inb(LCR)
    agent.outb(LCR, 0x03)
    assert observed == 0x1B, f"LCR: wrote 0x1b, observed {observed:#04x}"


@pytest.mark.vmm_arch("x86_64")
@pytest.mark.parametrize("value", [0x5A, 0x00, 0xFF])
def test_uart_loopback_echo(machine: Machine, value: int) -> None:
    """16550A datasheet, MCR bit 4 (Loop): the transmitter output is looped back to the receiver
    internally, so a byte written to THR is received in RBR."""
    result = machine.agent.uart_loopback(value)
    assert result["value"] == value, f"loopback: sent {value:#04x}, expected it back, observed {result['value']:#04x}"


@pytest.mark.vmm_arch("x86_64")
def test_uart_loopback_modem_status(machine: Machine) -> None:
    """16550A datasheet, MCR bit 4 (Loop): MSR bits 7:4 (DCD, RI, DSR, CTS) mirror MCR OUT2,
    OUT1, DTR, RTS; with MCR = 0x1b (loop, OUT2, DTR, RTS) MSR[7:4] = 0b1011."""
    # In loopback, MSR[7:4] mirror MCR's OUT2, OUT1, DTR, RTS: MCR=0x1b -> DCD=1 RI=0 DSR=1 CTS=1.
    result = machine.agent.uart_loopback()
    expected = 0xB0 if result["mcr"] & 0x0F == 0x0B else None
    assert expected is not None, f"agent's MCR is {result['mcr']:#04x}, expected 0x0b"
    assert result["msr"] & 0xF0 == expected, (
        f"MSR[7:4] in loopback with MCR=0x1b: expected {expected:#04x}, observed {result['msr'] & 0xF0:#04x}")


# ---------------------------------------------------------------------------- APIC identification
@pytest.mark.vmm_arch("x86_64")
def test_lapic_version_register(machine: Machine) -> None:
    """Intel SDM vol. 3A §10.4.8 (Local APIC Version Register), Figure 10-7: bits 7:0 are
    0x10..0x15 for an integrated APIC; bits 23:16 = max LVT entry (>= 4: timer, LINT0/1, error,
    plus PMC/thermal)."""
    version = machine.agent.mmio_read(LAPIC + 0x30, 4)
    machine.record("lapic_version", version)
    assert 0x10 <= version & 0xFF <= 0x15, f"LAPIC version: expected an integrated APIC (0x10..0x15), observed {version:#x}"
    max_lvt = (version >> 16) & 0xFF
    assert max_lvt >= 4, f"LAPIC max LVT entry: expected >= 4, observed {max_lvt}"


@pytest.mark.vmm_arch("x86_64")
@pytest.mark.vmm_requires("smp")
def test_lapic_ids_differ_per_vcpu(machine: Machine) -> None:
    """Intel SDM vol. 3A §10.4.6 (Local APIC ID): each processor's APIC has a unique ID in bits
    31:24."""
    agent = machine.agent
    ids = [agent.mmio_read(LAPIC + 0x20, 4, cpu=cpu) >> 24 for cpu in (0, 1)]
    assert ids[0] != ids[1], f"LAPIC IDs of vCPU 0 and 1: expected different, observed {ids}"


@pytest.mark.vmm_arch("x86_64")
def test_ioapic_version_register(machine: Machine) -> None:
    """Intel 82093AA IOAPIC datasheet §3.2.2 (IOAPICVER, index 01h): bits 7:0 the version (0x11
    on the 82093AA, 0x20 on later chipset IOAPICs), bits 23:16 the maximum redirection entry: 23
    for 24 pins."""
    version = ioapic_reg(machine.agent, 0x01)
    machine.record("ioapic_version", version)
    assert version & 0xFF in (0x11, 0x20), f"IOAPIC version: expected 0x11 or 0x20, observed {version & 0xFF:#x}"
    assert (version >> 16) & 0xFF == 23, f"IOAPIC max redirection entry: expected 23, observed {(version >> 16) & 0xFF}"


@pytest.mark.vmm_arch("x86_64")
def test_ioapic_redirection_entry_round_trip(machine: Machine) -> None:
    """Intel 82093AA IOAPIC datasheet §3.2.4 (IOREDTBL, index 10h + 2n): bits 16:0 (mask,
    trigger, polarity, destination mode, delivery mode, vector) are read/write (bits 12 and 14,
    delivery status and remote IRR, read-only and 0 for an idle edge line)."""
    agent = machine.agent
    reg = 0x10 + 2 * 13  # pin 13: nothing routes there
    entry = 0x1004D  # masked, vector 0x4d, edge, active high, fixed, physical
    agent.mmio_write(IOAPIC, 4, reg)
    agent.mmio_write(IOAPIC + 0x10, 4, entry)
    observed = ioapic_reg(agent, reg)
    agent.mmio_write(IOAPIC + 0x10, 4, 0x10000)
    assert observed & 0x1FFFF == entry, f"IOAPIC pin 13: wrote {entry:#x}, observed {observed:#x}"


# ---------------------------------------------------------------------------- virtio-mmio
def test_virtio_mmio_magic_value(machine: Machine) -> None:
    """Virtio 1.2 §4.2.2 (MMIO Device Register Layout): MagicValue at 0x000 reads 0x74726976
    ("virt")."""
    base = virtio_transport(machine)
    observed = machine.agent.mmio_read(base, 4)
    assert observed == VIRTIO_MAGIC, f"MagicValue at {base:#x}: expected {VIRTIO_MAGIC:#x}, observed {observed:#x}"


def test_virtio_mmio_version(machine: Machine) -> None:
    """Virtio 1.2 §4.2.2: Version at 0x004 is 2 for the modern interface; §4.2.4 (Legacy
    interface) 1."""
    base = virtio_transport(machine)
    version = machine.agent.mmio_read(base + 0x4, 4)
    machine.record("virtio_mmio_version", version)
    assert version in (1, 2), f"Version at {base:#x}: expected 1 (legacy) or 2, observed {version}"


def test_virtio_mmio_device_and_vendor_id(machine: Machine) -> None:
    """Virtio 1.2 §4.2.2: DeviceID at 0x008 is a device type of §5 (0 = no device behind the
    transport), VendorID at 0x00c is stable."""
    agent = machine.agent
    base = virtio_transport(machine)
    device, vendor = agent.mmio_read(base + 0x8, 4), agent.mmio_read(base + 0xC, 4)
    machine.record("virtio_device_id", device)
    machine.record("virtio_vendor_id", vendor)
    assert device < 64, f"DeviceID at {base:#x}: expected a virtio device type (< 64), observed {device}"
    again = agent.mmio_read(base + 0xC, 4)
    assert again == vendor, f"VendorID at {base:#x} not stable: {vendor:#x} then {again:#x}"


@pytest.mark.parametrize(("offset", "name"), [(0x0, "MagicValue"), (0x4, "Version"), (0x8, "DeviceID"),
                                              (0xC, "VendorID")])
def test_virtio_mmio_read_only_register_ignores_writes(machine: Machine, offset: int, name: str) -> None:
    """Virtio 1.2 §4.2.2: MagicValue, Version, DeviceID and VendorID are read-only; a driver's
    write does not change them."""
    agent = machine.agent
    base = virtio_transport(machine)
    before = agent.mmio_read(base + offset, 4)
    agent.mmio_write(base + offset, 4, before ^ 0xFFFFFFFF)
    after = agent.mmio_read(base + offset, 4)
    assert after == before, f"{name} at {base + offset:#x}: expected {before:#x} after a write, observed {after:#x}"


@pytest.mark.vmm_shared(False)
def test_virtio_mmio_status_resets_to_zero(machine: Machine) -> None:
    """Virtio 1.2 §4.2.2 (Status, 0x070) and §2.1 (Device Status Field): writing 0 resets the
    device, and Status then reads 0."""
    agent = machine.agent
    base = virtio_transport(machine)
    agent.mmio_write(base + 0x70, 4, 0x1)  # ACKNOWLEDGE
    agent.mmio_write(base + 0x70, 4, 0x0)  # reset
    observed = agent.mmio_read(base + 0x70, 4)
    assert observed == 0, f"Status at {base + 0x70:#x} after writing 0: expected 0, observed {observed:#x}"


@pytest.mark.vmm_shared(False)
def test_virtio_mmio_queue_num_max_zero_for_missing_queue(machine: Machine) -> None:
    """Virtio 1.2 §4.2.2 (QueueNumMax, 0x034): reads 0 when the queue selected by QueueSel is
    not available."""
    agent = machine.agent
    base = virtio_transport(machine)
    agent.mmio_write(base + 0x30, 4, 0x3FF)  # QueueSel: far past any device's queues
    observed = agent.mmio_read(base + 0x34, 4)
    agent.mmio_write(base + 0x30, 4, 0)
    assert observed == 0, f"QueueNumMax for queue 1023 at {base:#x}: expected 0, observed {observed}"


# ---------------------------------------------------------------------------- unassigned space, widths
@pytest.mark.vmm_arch("x86_64")
@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_unassigned_mmio_read(machine: Machine, width: int) -> None:
    """PC platform convention (no bus agent claims the cycle; PCI Local Bus 3.0 §3.3.3.1 master
    abort returns all ones): a read of unassigned physical address space returns all zeros or
    all ones and does not fault. Which one is recorded."""
    value = machine.agent.mmio_read(UNASSIGNED_MMIO, width)
    machine.record(f"unassigned_mmio_{width}", value)
    ones = (1 << (8 * width)) - 1
    assert value in (0, ones), (
        f"{width}-byte read of unassigned {UNASSIGNED_MMIO:#x}: expected all zeros or all ones, observed {value:#x}")


@pytest.mark.vmm_arch("x86_64")
def test_unassigned_mmio_write_is_ignored(machine: Machine) -> None:
    """PC platform convention (master abort): a write to unassigned space is dropped; the
    location reads as before and the machine runs on."""
    agent = machine.agent
    before = agent.mmio_read(UNASSIGNED_MMIO, 4)
    agent.mmio_write(UNASSIGNED_MMIO, 4, 0x12345678)
    after = agent.mmio_read(UNASSIGNED_MMIO, 4)
    assert after == before, f"unassigned {UNASSIGNED_MMIO:#x}: expected {before:#x} after a write, observed {after:#x}"
    assert machine.agent.hello().name, "guest stopped answering after a write to unassigned MMIO"


@pytest.mark.vmm_arch("x86_64")
@pytest.mark.parametrize("width", [1, 2, 4])
def test_unassigned_port_read(machine: Machine, width: int) -> None:
    """PC I/O space convention (ISA bus pulled up; PCI Local Bus 3.0 §3.3.3.1 master abort): a
    read of an unassigned port returns all ones."""
    value = machine.agent.port_read(UNASSIGNED_PORT, width)
    machine.record(f"unassigned_port_{width}", value)
    ones = (1 << (8 * width)) - 1
    assert value == ones, f"{width}-byte read of unassigned port {UNASSIGNED_PORT:#x}: expected {ones:#x}, observed {value:#x}"


def test_ram_access_widths_compose_little_endian(machine: Machine) -> None:
    """Intel SDM vol. 1 §1.3.1 (Bit and Byte Order, little endian) and, on arm64, Arm ARM B2.6
    (Endian support: data accesses are little-endian with SCTLR_EL1.EE=0): an 8-byte write
    read back as 1/2/4/8 bytes gives the low-order bytes first."""
    agent = machine.agent
    scratch = RAM_SCRATCH_BY_ARCH[agent.hello().arch]
    agent.mmio_write(scratch, 8, 0x0807060504030201)
    observed = {w: agent.mmio_read(scratch, w) for w in (1, 2, 4, 8)}
    expected = {1: 0x01, 2: 0x0201, 4: 0x04030201, 8: 0x0807060504030201}
    assert observed == expected, f"reads of 1/2/4/8 bytes at {scratch:#x}: expected {expected}, observed {observed}"


def test_narrow_writes_touch_only_their_bytes(machine: Machine) -> None:
    """Intel SDM vol. 1 §4.1.1 (alignment of words, doublewords) and, on arm64, Arm ARM B2.2
    (single-copy atomicity of aligned accesses, each of its own size): a 1/2/4-byte write
    changes only the bytes it covers."""
    agent = machine.agent
    scratch = RAM_SCRATCH_BY_ARCH[agent.hello().arch]
    agent.mmio_write(scratch, 8, 0)
    agent.mmio_write(scratch + 1, 1, 0xAA)
    agent.mmio_write(scratch + 2, 2, 0xBBCC)
    agent.mmio_write(scratch + 4, 4, 0xDDEEFF11)
    observed = agent.mmio_read(scratch, 8)
    assert observed == 0xDDEEFF11BBCCAA00, f"composed 1/2/4-byte writes: expected 0xddeeff11bbccaa00, observed {observed:#x}"


@pytest.mark.vmm_arch("x86_64")
def test_access_to_unmapped_address_reports_a_fault(machine: Machine) -> None:
    """Intel SDM vol. 3A §4.7 (Page-Fault Exceptions): an access to a linear address with no
    present translation raises #PF; the agent reports FAULT and keeps answering."""
    with pytest.raises(AgentError) as info:
        machine.agent.mmio_read(1 << 44, 4)
    assert info.value.code == ErrorCode.FAULT, f"read of 2^44: expected FAULT, observed {info.value}"
    assert machine.agent.hello().name, "guest stopped answering after a faulting access"


@pytest.mark.vmm_arch("aarch64")
def test_access_beyond_the_physical_address_size_faults(machine: Machine) -> None:
    """Arm ARM (DDI 0487) chapter D8, behavior with stage 1 translation disabled (SCTLR_EL1.M = 0): the
    output address is the input address, and one above the implemented physical address size
    (at most 52 bits) raises an Address size fault, a synchronous Data Abort; the agent reports
    FAULT and keeps answering."""
    with pytest.raises(AgentError) as info:
        machine.agent.mmio_read(1 << 56, 4)
    assert info.value.code == ErrorCode.FAULT, f"read of 2^56: expected FAULT, observed {info.value}"
    assert machine.agent.hello().name, "guest stopped answering after a faulting access"
