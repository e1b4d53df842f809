"""pytest_vmm/virtio/layout.py (the driver's numbers) and god's device side
(guests/god/src/god/virtio) each define the virtio 1.2 constants: god must not depend on
pytest_vmm. This checks the two copies agree, name by name."""

from __future__ import annotations

import pytest

from pytest_vmm.virtio import layout as L

god_mmio = pytest.importorskip("god.virtio.mmio")


def test_mmio_registers_agree() -> None:
    pairs = {
        "R_MAGIC": L.Reg.MAGIC_VALUE, "R_VERSION": L.Reg.VERSION, "R_DEVICE_ID": L.Reg.DEVICE_ID,
        "R_VENDOR_ID": L.Reg.VENDOR_ID, "R_DEVICE_FEATURES": L.Reg.DEVICE_FEATURES,
        "R_DEVICE_FEATURES_SEL": L.Reg.DEVICE_FEATURES_SEL, "R_DRIVER_FEATURES": L.Reg.DRIVER_FEATURES,
        "R_DRIVER_FEATURES_SEL": L.Reg.DRIVER_FEATURES_SEL, "R_QUEUE_SEL": L.Reg.QUEUE_SEL,
        "R_QUEUE_NUM_MAX": L.Reg.QUEUE_NUM_MAX, "R_QUEUE_NUM": L.Reg.QUEUE_NUM,
        "R_QUEUE_READY": L.Reg.QUEUE_READY, "R_QUEUE_NOTIFY": L.Reg.QUEUE_NOTIFY,
        "R_INTERRUPT_STATUS": L.Reg.INTERRUPT_STATUS, "R_INTERRUPT_ACK": L.Reg.INTERRUPT_ACK,
        "R_STATUS": L.Reg.STATUS, "R_QUEUE_DESC_LOW": L.Reg.QUEUE_DESC_LOW,
        "R_QUEUE_DESC_HIGH": L.Reg.QUEUE_DESC_HIGH, "R_QUEUE_DRIVER_LOW": L.Reg.QUEUE_DRIVER_LOW,
        "R_QUEUE_DRIVER_HIGH": L.Reg.QUEUE_DRIVER_HIGH, "R_QUEUE_DEVICE_LOW": L.Reg.QUEUE_DEVICE_LOW,
        "R_QUEUE_DEVICE_HIGH": L.Reg.QUEUE_DEVICE_HIGH, "R_SHM_SEL": L.Reg.SHM_SEL,
        "R_SHM_LEN_LOW": L.Reg.SHM_LEN_LOW, "R_SHM_LEN_HIGH": L.Reg.SHM_LEN_HIGH,
        "R_QUEUE_RESET": L.Reg.QUEUE_RESET, "R_CONFIG_GENERATION": L.Reg.CONFIG_GENERATION,
        "R_CONFIG": L.Reg.CONFIG,
    }
    differ = {name: (getattr(god_mmio, name), int(ours)) for name, ours in pairs.items()
              if getattr(god_mmio, name) != ours}
    assert not differ, f"god vs pytest_vmm register offsets: {differ}"
    assert (god_mmio.MAGIC, god_mmio.VERSION, god_mmio.MMIO_SLOT_SIZE) == (L.MAGIC_VALUE, L.MMIO_VERSION, L.MMIO_SLOT_SIZE)


def test_status_and_interrupt_bits_agree() -> None:
    assert (god_mmio.ACKNOWLEDGE, god_mmio.DRIVER, god_mmio.DRIVER_OK, god_mmio.FEATURES_OK,
            god_mmio.DEVICE_NEEDS_RESET, god_mmio.FAILED) == tuple(int(s) for s in (
                L.Status.ACKNOWLEDGE, L.Status.DRIVER, L.Status.DRIVER_OK, L.Status.FEATURES_OK,
                L.Status.DEVICE_NEEDS_RESET, L.Status.FAILED))
    assert (god_mmio.INT_VRING, god_mmio.INT_CONFIG) == (L.Interrupt.VRING, L.Interrupt.CONFIG)


def test_ring_blk_and_vsock_numbers_agree() -> None:
    from god.virtio import blk, device, queue, vsock

    assert (queue.VRING_DESC_F_NEXT, queue.VRING_DESC_F_WRITE, queue.VRING_DESC_F_INDIRECT) == (1, 2, 4)
    assert (queue.VRING_AVAIL_F_NO_INTERRUPT, queue.VRING_USED_F_NO_NOTIFY) == (
        L.VRING_AVAIL_F_NO_INTERRUPT, L.VRING_USED_F_NO_NOTIFY)
    assert queue.MAX_QUEUE_SIZE == L.QUEUE_SIZE_MAX
    assert device.VIRTIO_F_VERSION_1 == L.bit(L.F_VERSION_1)
    assert device.VIRTIO_F_INDIRECT_DESC == L.bit(L.F_INDIRECT_DESC)
    assert (device.DEVICE_ID_BLOCK, device.DEVICE_ID_VSOCK) == (L.DeviceId.BLOCK, L.DeviceId.VSOCK)
    assert (blk.T_IN, blk.T_OUT, blk.T_FLUSH, blk.T_GET_ID) == (
        L.BlkType.IN, L.BlkType.OUT, L.BlkType.FLUSH, L.BlkType.GET_ID)
    assert (blk.S_OK, blk.S_IOERR, blk.S_UNSUPP) == (L.BlkStatus.OK, L.BlkStatus.IOERR, L.BlkStatus.UNSUPP)
    assert (blk.F_RO, blk.F_FLUSH, blk.F_BLK_SIZE, blk.F_SEG_MAX) == tuple(
        L.bit(b) for b in (L.BlkFeature.RO, L.BlkFeature.FLUSH, L.BlkFeature.BLK_SIZE, L.BlkFeature.SEG_MAX))
    assert blk.ID_BYTES == L.BLK_ID_BYTES and blk.SECTOR == L.BLK_SECTOR_SIZE
    assert vsock.HDR.format == L.VSOCK_HDR.format and vsock.HOST_CID == L.VSOCK_HOST_CID
    assert (vsock.RXQ, vsock.TXQ, vsock.EVQ) == (L.VSOCK_RX, L.VSOCK_TX, L.VSOCK_EVENT)
    assert (vsock.OP_REQUEST, vsock.OP_RESPONSE, vsock.OP_RST, vsock.OP_SHUTDOWN, vsock.OP_RW,
            vsock.OP_CREDIT_UPDATE, vsock.OP_CREDIT_REQUEST) == tuple(range(1, 8))
    assert (vsock.SHUT_RCV, vsock.SHUT_SEND) == (L.VSOCK_SHUTDOWN_RCV, L.VSOCK_SHUTDOWN_SEND)
