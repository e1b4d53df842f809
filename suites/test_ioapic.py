"""I/O APIC (Intel 82093AA data sheet, order 290566: 3.2.2 IOAPICVER, 3.2.4 I/O redirection
table registers -- Delivery Status, Remote IRR, polarity, trigger mode) at 0xfec00000.

The level-triggered source is a virtio-blk device (virtio 1.2 4.2.3.4: its line stays
asserted until the driver writes InterruptACK), driven by the host's virtio driver, so the
host controls exactly when the line is up -- on god and on QEMU alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.client import AgentClient
from pytest_vmm.virtio import blk
from pytest_vmm.virtio.driver import MmioDevice, poll
from pytest_vmm.virtio.layout import F_VERSION_1, DeviceId, bit
from pytest_vmm.virtio.slots import Slot, device, find_slots

from . import device_state
from .x86_platform import ioapic_read as reg_read
from .x86_platform import ioapic_write as reg_write

pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("mmio"),
              pytest.mark.vmm_shared_state(probe=device_state.ioapic)]

IOAPICVER = 0x01
RTE_LOW = 0x10  # + 2 * pin
DELIVERY_STATUS, POLARITY_LOW, REMOTE_IRR, LEVEL, MASKED = 1 << 12, 1 << 13, 1 << 14, 1 << 15, 1 << 16
SPARE_PIN = 20  # no device of god or QEMU microvm uses it; the probe leaves it masked
PROBE_PINS = 24


@pytest.mark.vmm_shared  # puts back what it wrote
def test_version_register_is_read_only(machine: Machine) -> None:
    """3.2.2 IOAPICVER is read-only: a write changes nothing. Bits 23-16 hold the highest
    redirection entry index: at least 0x17 (24 entries) on a PC I/O APIC."""
    agent = machine.agent
    before = reg_read(agent, IOAPICVER)
    reg_write(agent, IOAPICVER, before ^ 0x00FF00FF)
    after = reg_read(agent, IOAPICVER)
    assert after == before, f"IOAPICVER changed by a write: {before:#x} -> {after:#x}"
    assert (before >> 16) & 0xFF >= 0x17, f"max redirection entry {(before >> 16) & 0xFF:#x}, expected >= 0x17"


@pytest.mark.vmm_shared  # puts back what it wrote
def test_redirection_entry_read_only_and_writable_bits(machine: Machine) -> None:
    """3.2.4: Delivery Status (bit 12) and Remote IRR (bit 14) are read-only -- 0 on an idle,
    masked pin whatever is written; vector, polarity (bit 13), trigger mode (bit 15) and mask
    (bit 16) are read/write."""
    agent = machine.agent
    reg = RTE_LOW + 2 * SPARE_PIN
    before = reg_read(agent, reg)
    try:
        wrote = MASKED | LEVEL | POLARITY_LOW | REMOTE_IRR | DELIVERY_STATUS | 0x6A
        reg_write(agent, reg, wrote)
        observed = reg_read(agent, reg)
    finally:
        reg_write(agent, reg, before | MASKED)
    assert observed & (DELIVERY_STATUS | REMOTE_IRR) == 0, (
        f"RTE {SPARE_PIN}: wrote {wrote:#x}, read {observed:#x}: read-only bits 12/14 must read 0 on an idle pin")
    keep = MASKED | LEVEL | POLARITY_LOW | 0xFF
    assert observed & keep == wrote & keep, f"RTE {SPARE_PIN}: wrote {wrote:#x}, read {observed:#x} (bits {keep:#x} are R/W)"


@pytest.fixture
def level_source(machine: Machine) -> Iterator[tuple[MmioDevice, Slot]]:
    slots = find_slots(machine.agent)
    blks = [(i, s) for i, s in enumerate(slots) if s.device_id == DeviceId.BLOCK]
    if not blks:
        pytest.skip("no virtio-blk device to drive a level-triggered line")
    index, slot = blks[0]
    if slot.gsi >= PROBE_PINS:
        pytest.skip(f"the virtio-blk GSI {slot.gsi} is beyond the I/O APIC the probe drives")
    dev = device(machine.agent, slot, index, len(slots))
    dev.initialize(bit(F_VERSION_1))
    yield dev, slot
    machine.agent.irq_mask(slot.gsi)
    dev.set_status(0)
    machine.agent.eoi()


def rte(agent: AgentClient, gsi: int) -> int:
    return reg_read(agent, RTE_LOW + 2 * gsi)


@pytest.mark.vmm_requires("dma", "blk")
def test_remote_irr_tracks_a_level_interrupt(machine: Machine, level_source: tuple[MmioDevice, Slot]) -> None:
    """3.2.4 bit 14 Remote IRR (level-triggered only): set when the local APIC accepts the
    interrupt, cleared when an EOI with the entry's vector arrives."""
    dev, slot = level_source
    agent = machine.agent
    agent.irq_arm(slot.gsi, trigger="level", eoi="manual")
    base = agent.irq_count(slot.gsi)
    blk.read_sectors(dev, 1)
    assert poll(lambda: agent.irq_count(slot.gsi) > base, 5.0), "no interrupt for the level line"
    held = rte(agent, slot.gsi)
    dev.ack_interrupt(dev.interrupt_status())  # line down before the EOI: no re-delivery
    agent.eoi()
    released = rte(agent, slot.gsi)
    assert held & REMOTE_IRR, f"RTE {slot.gsi} with the interrupt accepted and no EOI: Remote IRR expected, read {held:#x}"
    assert not released & REMOTE_IRR, f"RTE {slot.gsi} after the EOI: Remote IRR must clear, read {released:#x}"


@pytest.mark.vmm_requires("dma", "blk")
def test_level_interrupt_reasserts_after_eoi(machine: Machine, level_source: tuple[MmioDevice, Slot]) -> None:
    """3.2.4 / 82093AA level-triggered operation: an EOI for a line that is still asserted
    delivers the interrupt again; once the source drops the line, an EOI delivers nothing."""
    dev, slot = level_source
    agent = machine.agent
    agent.irq_arm(slot.gsi, trigger="level", eoi="manual")
    base = agent.irq_count(slot.gsi)
    blk.read_sectors(dev, 2)
    assert poll(lambda: agent.irq_count(slot.gsi) >= base + 1, 5.0), "no interrupt for the level line"
    agent.ping()
    held = agent.irq_count(slot.gsi) - base
    assert held == 1, (f"{held} deliveries of a level interrupt whose EOI is held: Remote IRR must block "
                       f"re-delivery until the EOI (3.2.4 bit 14)")
    agent.eoi()  # the device still holds the line up: InterruptStatus was not acknowledged
    assert poll(lambda: agent.irq_count(slot.gsi) >= base + 2, 5.0), (
        "EOI with the level line still asserted: the interrupt was not delivered again")
    dev.ack_interrupt(dev.interrupt_status())
    agent.eoi()
    settled = agent.irq_count(slot.gsi)
    agent.ping()
    assert agent.irq_count(slot.gsi) == settled == base + 2, (
        f"after the source dropped the line and an EOI: {agent.irq_count(slot.gsi) - base} interrupts, expected 2")
