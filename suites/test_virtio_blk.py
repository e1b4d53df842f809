"""virtio-blk conformance (virtio 1.2 section 5.2), request by request, by the host's virtio
driver through the guest agent.

The probe stack attaches two disks made from the same deterministic image
(pytest_vmm/virtio/testdisk.py, the independent model of its contents): a writable per-boot
copy and the image read-only. Expected statuses and data come from the spec and that model.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_vmm import Machine
from pytest_vmm.virtio import blk
from pytest_vmm.virtio.driver import MmioDevice
from pytest_vmm.virtio.layout import (
    BLK_ID_BYTES,
    F_VERSION_1,
    BlkFeature,
    BlkStatus,
    BlkType,
    DeviceId,
    bit,
)
from pytest_vmm.virtio.slots import device, find_slots
from pytest_vmm.virtio.testdisk import SECTORS, sector

from . import device_state

# The checks share a guest (vmm_shared; --vmm-fresh boots one per check): each fixture resets
# the device afterwards, and the one write (sector 40) lands on a sector no other check reads.
# A check that leaves a device unreset gets the guest rebooted (vmm_shared_state).
pytestmark = [pytest.mark.vmm_requires("dma", "blk"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.virtio_blk)]


def _open(machine: Machine, read_only: bool, extra: int = 0) -> MmioDevice:
    slots = find_slots(machine.agent)
    for index, slot in enumerate(slots):
        if slot.device_id != DeviceId.BLOCK:
            continue
        dev = device(machine.agent, slot, index, len(slots))
        offered = dev.device_features()
        if bool(offered & bit(BlkFeature.RO)) != read_only:
            continue
        dev.initialize(bit(F_VERSION_1) | (offered & (extra | bit(BlkFeature.RO))))
        return dev
    pytest.fail(f"no {'read-only' if read_only else 'writable'} virtio-blk device among {slots}")


@pytest.fixture
def disk(machine: Machine) -> Iterator[MmioDevice]:
    dev = _open(machine, read_only=False, extra=bit(BlkFeature.FLUSH))
    yield dev
    dev.set_status(0)


@pytest.fixture
def ro_disk(machine: Machine) -> Iterator[MmioDevice]:
    dev = _open(machine, read_only=True)
    yield dev
    dev.set_status(0)


def test_capacity_is_the_image_size(disk: MmioDevice) -> None:
    """5.2.4: capacity is the device's size in 512-byte sectors (the image is 64 KiB)."""
    assert blk.capacity(disk) == SECTORS


@pytest.mark.parametrize("s", [0, 1, SECTORS - 1])
def test_in_reads_the_sector(disk: MmioDevice, s: int) -> None:
    """5.2.6: VIRTIO_BLK_T_IN reads ``sector`` (in 512-byte units) into the device-writable
    data buffer and sets status VIRTIO_BLK_S_OK (0)."""
    result = blk.read_sectors(disk, s)
    assert result.status == BlkStatus.OK, f"IN sector {s}: status {result.status}, expected 0 (OK)"
    assert result.data == sector(s), f"IN sector {s}: data is not the disk's sector {s}"


def test_in_reads_several_sectors_in_one_request(disk: MmioDevice) -> None:
    """5.2.6: one IN request reads as many consecutive sectors as its data buffer holds."""
    result = blk.read_sectors(disk, 20, count=3)
    assert result.status == BlkStatus.OK
    assert result.data == sector(20) + sector(21) + sector(22)


def test_out_then_in_round_trip(disk: MmioDevice) -> None:
    """5.2.6: VIRTIO_BLK_T_OUT writes the data buffer at ``sector``; a later IN of that
    sector returns it, and the neighbours are untouched."""
    data = bytes((i * 7 + 3) & 0xFF for i in range(512))
    result = blk.write_sectors(disk, 40, data)
    assert result.status == BlkStatus.OK, f"OUT sector 40: status {result.status}, expected 0 (OK)"
    assert blk.read_sectors(disk, 40).data == data
    assert blk.read_sectors(disk, 41).data == sector(41)


def test_flush(disk: MmioDevice) -> None:
    """5.2.6 / 5.2.6.2: with VIRTIO_BLK_F_FLUSH negotiated, VIRTIO_BLK_T_FLUSH completes with
    status OK (a driver MUST NOT send it without the feature: 5.2.6.1)."""
    if not disk.device_features() & bit(BlkFeature.FLUSH):
        pytest.skip("the device does not offer VIRTIO_BLK_F_FLUSH (optional, 5.2.3)")
    result = blk.request(disk, BlkType.FLUSH)
    assert result.status == BlkStatus.OK, f"FLUSH: status {result.status}, expected 0 (OK)"


def test_get_id(machine: Machine, disk: MmioDevice) -> None:
    """5.2.6: VIRTIO_BLK_T_GET_ID writes a device ID string of up to 20 bytes (NUL-padded
    when shorter) into a 20-byte buffer; a device without one answers VIRTIO_BLK_S_UNSUPP
    (5.2.6.2: unsupported request types get UNSUPP), never IOERR or nothing."""
    result = blk.request(disk, BlkType.GET_ID, in_len=BLK_ID_BYTES)
    assert result.status in (BlkStatus.OK, BlkStatus.UNSUPP), f"GET_ID: status {result.status}"
    if result.status == BlkStatus.OK:
        text = result.data.rstrip(b"\0")
        assert b"\0" not in text, f"GET_ID: NUL inside the ID {result.data!r} (the rest must be padding)"
        machine.record("virtio_blk_id_len", len(text))


def test_unknown_request_type_is_unsupported(disk: MmioDevice) -> None:
    """5.2.6.2: the device MUST set status VIRTIO_BLK_S_UNSUPP for a request type it does not
    support (type 0x7f is none of 5.2.6's)."""
    result = blk.request(disk, 0x7F, in_len=0)
    assert result.status == BlkStatus.UNSUPP, f"type 0x7f: status {result.status}, expected 2 (UNSUPP)"


@pytest.mark.parametrize("kind", ["in", "out"])
def test_sector_past_the_end_is_an_error(disk: MmioDevice, kind: str) -> None:
    """5.2.4 / 5.2.6: sectors run 0..capacity-1; a request at ``capacity`` cannot be done and
    completes with VIRTIO_BLK_S_IOERR (1), not OK."""
    if kind == "in":
        result = blk.read_sectors(disk, SECTORS)
    else:
        result = blk.write_sectors(disk, SECTORS, bytes(512))
    assert result.status == BlkStatus.IOERR, f"{kind.upper()} at sector {SECTORS} (= capacity): status {result.status}, expected 1 (IOERR)"


def test_request_straddling_the_end_is_an_error(disk: MmioDevice) -> None:
    """5.2.6: a two-sector IN starting at the last sector reaches past capacity: IOERR."""
    result = blk.read_sectors(disk, SECTORS - 1, count=2)
    assert result.status == BlkStatus.IOERR, f"IN of 2 sectors at {SECTORS - 1}: status {result.status}, expected 1 (IOERR)"


def test_read_only_disk_offers_ro(ro_disk: MmioDevice) -> None:
    """5.2.3: VIRTIO_BLK_F_RO (bit 5): the device is read-only; reads still work."""
    assert ro_disk.device_features() & bit(BlkFeature.RO)
    assert blk.read_sectors(ro_disk, 3).data == sector(3)


def test_write_to_read_only_disk_fails_and_changes_nothing(ro_disk: MmioDevice) -> None:
    """5.2.6.2: with VIRTIO_BLK_F_RO offered, the device MUST set IOERR for a write request
    and MUST NOT write any data."""
    result = blk.write_sectors(ro_disk, 5, b"\xee" * 512)
    assert result.status == BlkStatus.IOERR, f"OUT to a read-only disk: status {result.status}, expected 1 (IOERR)"
    assert blk.read_sectors(ro_disk, 5).data == sector(5), "a refused write changed the sector"

