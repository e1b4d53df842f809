"""virtio-mmio transport conformance, device side, driven by the host's virtio driver
(pytest_vmm/virtio) through the guest agent: register by register, request by request.

Every expected value is the virtio 1.2 specification's (OASIS virtio v1.2 cs01, section
numbers in each docstring). The device under test is the first virtio-blk device the
machine has (god's own, or QEMU's virtio-blk-device on ``god@qemu``): the transport rules
are the same for every device type, and a block read is the simplest request that makes a
device use a buffer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_vmm import Machine
from pytest_vmm.virtio import blk
from pytest_vmm.virtio.driver import Buffer, MmioDevice, poll
from pytest_vmm.virtio.layout import (
    F_INDIRECT_DESC,
    F_RING_RESET,
    F_VERSION_1,
    MAGIC_VALUE,
    MMIO_VERSION,
    QUEUE_SIZE_MAX,
    VRING_AVAIL_F_NO_INTERRUPT,
    VRING_USED_F_NO_NOTIFY,
    BlkStatus,
    DeviceId,
    Interrupt,
    Reg,
    Status,
    bit,
)
from pytest_vmm.virtio.slots import Slot, device, find_slots
from pytest_vmm.virtio.testdisk import SECTORS, sector

from . import device_state

# The checks share a guest (vmm_shared; --vmm-fresh boots one per check): each begins from a
# reset device and the blkdev fixture resets it again afterwards (2.4: reset leaves no device
# state), interrupt checks count within their own request and mask the line they armed, and
# reads go to the sectors each check names. A device whose reset leaves state behind gets the
# guest rebooted before the next check (vmm_shared_state). The malformed-chain check gets its
# own guest: a device it breaks must not take later checks with it.
pytestmark = [pytest.mark.vmm_requires("dma", "blk"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.virtio_blk)]

PROBE_IOAPIC_PINS = 24  # the probe drives IOAPIC 0 only (guests/probe/probe.h NLINES)


def blk_slot(machine: Machine, read_only: bool = False) -> tuple[Slot, int, int]:
    """(slot, its index among the machine's devices, device count) of a block device."""
    slots = find_slots(machine.agent)
    blks = [s for s in slots if s.device_id == DeviceId.BLOCK]
    if not blks:
        pytest.fail(f"{machine.target_id} declares blk but no virtio-blk device was found "
                    f"(slots: {slots})")
    for s in blks:
        dev = device(machine.agent, s)
        ro = bool(dev.device_features() & bit(5))
        if ro == read_only:
            return s, slots.index(s), len(slots)
    pytest.fail(f"no {'read-only' if read_only else 'writable'} virtio-blk device among {blks}")


@pytest.fixture
def blkdev(machine: Machine) -> Iterator[MmioDevice]:
    """The writable block device, reset; reset again afterwards (2.4: reset leaves no state)."""
    slot, part, parts = blk_slot(machine)
    dev = device(machine.agent, slot, part, parts)
    yield dev
    dev.set_status(0)


def ready(dev: MmioDevice, features: int = bit(F_VERSION_1)) -> MmioDevice:
    dev.initialize(features, queues=(0,))
    return dev


def read_one(dev: MmioDevice, s: int = 1, **kw: object) -> blk.BlkResult:
    result = blk.read_sectors(dev, s, **kw)  # type: ignore[arg-type]
    assert result.status == BlkStatus.OK, f"IN sector {s}: expected status 0 (OK), observed {result.status}"
    assert result.data == sector(s), f"IN sector {s}: data differs from the disk's pattern"
    return result


# ---------------------------------------------------------------------------- identification
def test_magic_version_and_device_id(machine: Machine, blkdev: MmioDevice) -> None:
    """4.2.2: MagicValue is 0x74726976 ("virt"), Version is 0x2 for a non-legacy device and
    DeviceID is the device type (5: 2 = block device)."""
    assert blkdev.read(Reg.MAGIC_VALUE) == MAGIC_VALUE
    version = blkdev.read(Reg.VERSION)
    assert version == MMIO_VERSION, f"Version: expected 2 (non-legacy, 4.2.2), observed {version}"
    assert blkdev.read(Reg.DEVICE_ID) == DeviceId.BLOCK
    machine.record("virtio_vendor_id", blkdev.read(Reg.VENDOR_ID))


def test_device_offers_version_1(blkdev: MmioDevice) -> None:
    """6.1: a device MUST offer VIRTIO_F_VERSION_1 (feature bit 32)."""
    blkdev.begin()
    offered = blkdev.device_features()
    assert offered & bit(F_VERSION_1), f"DeviceFeatures {offered:#x}: VIRTIO_F_VERSION_1 (bit 32) not offered"


# ---------------------------------------------------------------------------- status and reset
def test_status_reads_back_each_step(blkdev: MmioDevice) -> None:
    """2.1 / 3.1.1 steps 1-3: after reset Status reads 0, then ACKNOWLEDGE, then
    ACKNOWLEDGE|DRIVER, exactly as written (the device sets none of these bits itself)."""
    blkdev.reset()
    for value in (Status.ACKNOWLEDGE, Status.ACKNOWLEDGE | Status.DRIVER):
        blkdev.set_status(value)
        observed = blkdev.status
        assert observed == value, f"Status: wrote {value:#x}, observed {observed:#x}"


def test_reset_clears_status_queue_ready_and_interrupts(blkdev: MmioDevice) -> None:
    """2.4.1 / 4.2.2.1: on reset (0 written to Status) the device MUST reinitialize Status to 0
    and clear every bit of InterruptStatus and the QueueReady bit of every queue."""
    ready(blkdev)
    read_one(blkdev)  # leaves InterruptStatus bit 0 set: nothing acknowledged it
    blkdev.set_status(0)
    assert poll(lambda: blkdev.status == 0, 5.0), f"Status {blkdev.status:#x} after reset, expected 0"
    blkdev.write(Reg.QUEUE_SEL, 0)
    assert blkdev.read(Reg.QUEUE_READY) == 0, "QueueReady of queue 0 still 1 after reset"
    assert blkdev.interrupt_status() == 0, f"InterruptStatus {blkdev.interrupt_status():#x} after reset, expected 0"


def test_device_works_again_after_reset(blkdev: MmioDevice) -> None:
    """2.4 / 3.1.1: after a reset the driver can initialize the device again from scratch."""
    ready(blkdev)
    read_one(blkdev, 2)
    ready(blkdev)
    read_one(blkdev, 3)


# ---------------------------------------------------------------------------- feature negotiation
def test_features_ok_refused_for_an_unoffered_feature(machine: Machine, blkdev: MmioDevice) -> None:
    """2.2.2: the device SHOULD accept any valid subset of the features it offered, otherwise
    it MUST fail to set FEATURES_OK (3.1.1 step 6: the driver re-reads it). A feature it did
    not offer makes the set invalid."""
    blkdev.begin()
    offered = blkdev.device_features()
    unoffered = next(b for b in (63, 62, 61, 60, 50, 45, 41, 24) if not offered & bit(b))
    accepted = blkdev.negotiate(bit(F_VERSION_1) | bit(unoffered))
    status = blkdev.status
    assert not accepted, (f"FEATURES_OK kept although the driver asked for unoffered feature bit {unoffered} "
                          f"(offered {offered:#x}); Status {status:#x}")


def test_features_ok_without_version_1(machine: Machine, blkdev: MmioDevice) -> None:
    """6.1: a device MAY fail to operate further if VIRTIO_F_VERSION_1 is not accepted, so
    refusing FEATURES_OK and keeping it are both allowed (recorded: spec-allowed difference);
    what is checked is that the answer is one of the two and stays put (2.1: FEATURES_OK is
    the driver's bit, cleared only by the device's refusal)."""
    blkdev.begin()
    accepted = blkdev.negotiate(0)
    machine.record("virtio_features_ok_without_version_1", int(accepted))
    again = bool(blkdev.status & Status.FEATURES_OK)
    assert again == accepted, "FEATURES_OK changed between two reads with no write in between"


def test_offered_features_are_accepted(blkdev: MmioDevice) -> None:
    """2.2.2 / 3.1.1: VERSION_1 alone is a valid subset of what the device offers; the device
    keeps FEATURES_OK and reaches DRIVER_OK without FAILED or DEVICE_NEEDS_RESET."""
    ready(blkdev)
    status = blkdev.status
    want = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK
    assert status == want, f"Status after initialization: expected {want:#x}, observed {status:#x}"


# ---------------------------------------------------------------------------- queues
def test_queue_num_max(blkdev: MmioDevice) -> None:
    """4.2.2 QueueNumMax: the maximum size of the selected queue, or 0 if the queue is not
    available; 2.7: at most 32768. Without VIRTIO_BLK_F_MQ a block device has one queue
    (5.2.2), so queue 1 is not available."""
    blkdev.begin()
    blkdev.write(Reg.QUEUE_SEL, 0)
    num_max = blkdev.read(Reg.QUEUE_NUM_MAX)
    assert 0 < num_max <= QUEUE_SIZE_MAX, f"QueueNumMax of queue 0: observed {num_max}"
    if not blkdev.device_features() & bit(12):  # VIRTIO_BLK_F_MQ
        blkdev.write(Reg.QUEUE_SEL, 1)
        absent = blkdev.read(Reg.QUEUE_NUM_MAX)
        assert absent == 0, f"QueueNumMax of queue 1 of a single-queue block device: expected 0, observed {absent}"


def test_queue_ready_reads_back_per_queue(blkdev: MmioDevice) -> None:
    """4.2.2 QueueReady: reading returns the last value written, for the queue QueueSel selects."""
    ready(blkdev)
    blkdev.write(Reg.QUEUE_SEL, 0)
    assert blkdev.read(Reg.QUEUE_READY) == 1, "QueueReady of queue 0 after setup: expected 1"
    blkdev.write(Reg.QUEUE_SEL, 1)
    assert blkdev.read(Reg.QUEUE_READY) == 0, "QueueReady of never-set-up queue 1: expected 0"


def test_queue_reset(blkdev: MmioDevice) -> None:
    """4.2.2 QueueReset / 2.6.1: with VIRTIO_F_RING_RESET negotiated, writing 1 to QueueReset
    resets the selected queue: it reads 0 again once done (2.6.1.1.1), QueueReady reads 0,
    and the queue can be set up and used again (2.6.1.2)."""
    blkdev.begin()
    if not blkdev.device_features() & bit(F_RING_RESET):
        pytest.skip("the device does not offer VIRTIO_F_RING_RESET (optional, 6)")
    blkdev.reset()
    blkdev.initialize(bit(F_VERSION_1) | bit(F_RING_RESET))
    read_one(blkdev, 4)
    blkdev.write(Reg.QUEUE_SEL, 0)
    blkdev.write(Reg.QUEUE_RESET, 1)
    assert poll(lambda: blkdev.read(Reg.QUEUE_RESET) == 0, 5.0), "QueueReset still 1 after 5 s"
    assert blkdev.read(Reg.QUEUE_READY) == 0, "QueueReady still 1 after a queue reset"
    blkdev.setup_queue(0)
    read_one(blkdev, 5)


def test_config_generation_stable_without_changes(blkdev: MmioDevice) -> None:
    """4.2.2 ConfigGeneration / 2.5.1: the device changes it only when the configuration may
    have changed; reading capacity's two halves between two reads with nothing changing
    sees the same generation and the capacity the disk has (5.2.4)."""
    blkdev.begin()
    before = blkdev.config_generation()
    cap = blk.capacity(blkdev)
    after = blkdev.config_generation()
    assert before == after, f"ConfigGeneration moved {before} -> {after} with no configuration change"
    assert cap == SECTORS, f"capacity: expected {SECTORS} sectors (the disk's size / 512), observed {cap}"


# ---------------------------------------------------------------------------- requests and used ring
def test_used_length_counts_written_bytes(machine: Machine, blkdev: MmioDevice) -> None:
    """2.7.8 / 2.7.8.1: used.len is the number of bytes written into the device-writable
    buffers; the device MUST write at least len bytes, so len cannot exceed their size
    (513: one sector and the status byte). Recorded: 513 and anything down to 1 are allowed."""
    ready(blkdev)
    result = read_one(blkdev, 6)
    machine.record("virtio_blk_in_used_len", result.used_len)
    assert 1 <= result.used_len <= 513, f"used.len for a one-sector IN: expected 1..513, observed {result.used_len}"


def test_used_flags_only_no_notify(blkdev: MmioDevice) -> None:
    """2.7.8: the only used-ring flag is VRING_USED_F_NO_NOTIFY (1); the device sets flags to
    0 or 1 (2.7.10.1 without VIRTIO_F_EVENT_IDX)."""
    ready(blkdev)
    read_one(blkdev, 7)
    flags = blkdev.queues[0].used_flags()
    assert flags & ~VRING_USED_F_NO_NOTIFY == 0, f"used ring flags {flags:#x}: only bit 0 is defined"


def test_indirect_descriptors(blkdev: MmioDevice) -> None:
    """2.7.5.3: with VIRTIO_F_INDIRECT_DESC a chain may be one descriptor pointing at a table
    of descriptors; the device processes the table as the chain (2.7.5.3.2)."""
    blkdev.begin()
    if not blkdev.device_features() & bit(F_INDIRECT_DESC):
        pytest.skip("the device does not offer VIRTIO_F_INDIRECT_DESC (optional, 6)")
    ready(blkdev, bit(F_VERSION_1) | bit(F_INDIRECT_DESC))
    read_one(blkdev, 8, indirect=True)


def test_ring_wraps(blkdev: MmioDevice) -> None:
    """2.7.6 / 2.7.8: avail and used idx run freely and the ring index is idx mod queue size;
    a 4-entry queue used five times wraps both rings."""
    blkdev.begin()
    blkdev.negotiate(bit(F_VERSION_1))
    blkdev.setup_queue(0, size=4)
    blkdev.add_status(Status.DRIVER_OK)
    for s in range(9, 14):
        read_one(blkdev, s)


# ---------------------------------------------------------------------------- interrupts
def test_interrupt_status_and_ack(blkdev: MmioDevice) -> None:
    """4.2.2 InterruptStatus bit 0: set when the device used a buffer; InterruptACK: writing a
    bit clears it in InterruptStatus (4.2.3.4)."""
    ready(blkdev)
    read_one(blkdev, 14)
    status = blkdev.interrupt_status()
    assert status & Interrupt.VRING, f"InterruptStatus after a used buffer: bit 0 expected, observed {status:#x}"
    blkdev.ack_interrupt(status)
    after = blkdev.interrupt_status()
    assert after & Interrupt.VRING == 0, f"InterruptStatus after acknowledging {status:#x}: observed {after:#x}"


def _arm_line(machine: Machine, dev: MmioDevice) -> int:
    gsi = dev.gsi
    assert gsi is not None
    if gsi >= PROBE_IOAPIC_PINS:
        pytest.skip(f"the device's GSI {gsi} is on a second IOAPIC, which the probe does not program")
    # Edge: one interrupt per rising edge of the device's level line, so a line left up
    # until InterruptACK counts once instead of storming an auto-EOI handler.
    machine.agent.irq_arm(gsi, trigger="edge")
    return gsi


def test_used_buffer_raises_the_line(machine: Machine, blkdev: MmioDevice) -> None:
    """4.2.3.4 / 2.7.10: a used buffer notification sets InterruptStatus bit 0 and raises the
    device's interrupt line; after InterruptACK the line drops, so the next notification is a
    new edge."""
    ready(blkdev)
    line = _arm_line(machine, blkdev)
    try:
        for s in (15, 16):
            before = machine.agent.irq_count(line)
            read_one(blkdev, s)
            assert poll(lambda before=before: machine.agent.irq_count(line) > before, 5.0), (
                f"sector {s}: no interrupt on GSI {line} after the buffer was used")
            blkdev.ack_interrupt(blkdev.interrupt_status())
    finally:
        machine.agent.irq_mask(line)


def test_no_interrupt_flag_suppresses_notification(machine: Machine, blkdev: MmioDevice) -> None:
    """2.7.10 / 2.7.7.1 (no VIRTIO_F_EVENT_IDX): with VRING_AVAIL_F_NO_INTERRUPT in the
    available ring's flags the device SHOULD NOT send a used buffer notification: no edge
    on the line and InterruptStatus bit 0 stays clear."""
    ready(blkdev)
    line = _arm_line(machine, blkdev)
    try:
        blkdev.queues[0].set_avail_flags(VRING_AVAIL_F_NO_INTERRUPT)
        before = machine.agent.irq_count(line)
        read_one(blkdev, 17)
        status = blkdev.interrupt_status()
        after = machine.agent.irq_count(line)
        assert after == before, f"{after - before} interrupt(s) on GSI {line} despite VRING_AVAIL_F_NO_INTERRUPT"
        assert status & Interrupt.VRING == 0, f"InterruptStatus {status:#x} despite VRING_AVAIL_F_NO_INTERRUPT"
    finally:
        machine.agent.irq_mask(line)


# ---------------------------------------------------------------------------- malformed chains
@pytest.mark.vmm_shared(False)
def test_recovers_from_a_chain_without_status_byte(machine: Machine, blkdev: MmioDevice) -> None:
    """5.2.6.1 requires the status byte as the chain's last writable byte; a chain with only
    the header breaks that rule. 2.1.2: the device SHOULD set DEVICE_NEEDS_RESET when it
    enters an error state; whatever it does, a reset (2.4) MUST bring it back to a device
    that serves requests."""
    ready(blkdev)
    mark = blkdev.arena.mark()
    header = blkdev.arena.alloc(16)
    blkdev.mem.write(header, blk.BLK_REQ_HEADER.pack(0, 0, 1))
    blkdev.submit(0, [Buffer(header, 16)])
    used = poll(lambda: blkdev.queues[0].used_idx() != 0, 2.0)
    machine.record("virtio_blk_headeronly_used", int(used))
    machine.record("virtio_blk_headeronly_status", blkdev.status)
    blkdev.arena.release(mark)
    ready(blkdev)
    read_one(blkdev, 18)
