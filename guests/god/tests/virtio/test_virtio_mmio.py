"""virtio-mmio register semantics: identification, feature negotiation (VERSION_1 required),
status state machine and reset, queue registers, interrupt status/ack, config generation."""

from __future__ import annotations

import pytest
from god.devices.irq import RecordingIrq
from god.memory import GuestMemory
from god.virtio import mmio as R
from god.virtio.blk import VirtioBlk
from god.virtio.device import VIRTIO_F_VERSION_1
from god.virtio.mmio import VirtioMmio
from pydriver import Alloc, Driver


@pytest.fixture
def blk(tmp_path):
    mem = GuestMemory([(0, 1 << 20)])
    img = tmp_path / "d.img"
    img.write_bytes(bytes(8 * 512))
    t = VirtioMmio(VirtioBlk(img, serial="sn1"), mem, RecordingIrq())
    yield t, Driver(t, mem, Alloc(0x1000, 1 << 20))
    t.close()
    mem.close()


def test_identification(blk):
    t, d = blk
    assert d.r(R.R_MAGIC) == 0x74726976 and d.r(R.R_VERSION) == 2 and d.r(R.R_DEVICE_ID) == 2
    assert t.read(0x100, 8) == 8                      # capacity in sectors, any access width
    assert t.read(0x000, 2) == 0                      # registers are 32-bit only


def test_features_ok_requires_version_1(blk):
    t, d = blk
    st = d.init(features=0)
    assert not st & R.FEATURES_OK
    st = d.init(features=VIRTIO_F_VERSION_1 | (1 << 40))   # not offered
    assert not st & R.FEATURES_OK
    d.queues.clear()
    st = d.init()
    assert st & R.FEATURES_OK and st & R.DRIVER_OK and t.active


def test_reset_clears_everything(blk):
    t, d = blk
    d.init()
    t.interrupt(0)
    assert t.irq.level and d.r(R.R_INTERRUPT_STATUS) == 1
    d.w(R.R_STATUS, 0)
    assert d.r(R.R_STATUS) == 0 and not t.irq.level and not t.active
    d.w(R.R_QUEUE_SEL, 0)
    assert d.r(R.R_QUEUE_READY) == 0 and d.r(R.R_QUEUE_NUM_MAX) == 256


def test_interrupt_ack_lowers_line_only_when_all_bits_clear(blk):
    t, d = blk
    d.init()
    t.interrupt(0)
    t.set_needs_reset("test")
    assert d.r(R.R_INTERRUPT_STATUS) == 3 and d.r(R.R_STATUS) & R.DEVICE_NEEDS_RESET
    d.w(R.R_INTERRUPT_ACK, 1)
    assert t.irq.level
    d.w(R.R_INTERRUPT_ACK, 2)
    assert not t.irq.level


def test_needs_reset_bumps_config_generation(blk):
    t, d = blk
    d.init()
    g0 = d.r(R.R_CONFIG_GENERATION)
    t.set_needs_reset("guest did something bad")
    assert d.r(R.R_CONFIG_GENERATION) != g0 and t.needs_reset_reason


def test_queue_registers_read_back_and_lock_when_ready(blk):
    _, d = blk
    d.w(R.R_QUEUE_SEL, 0)
    d.w(R.R_QUEUE_NUM, 64)
    d.w(R.R_QUEUE_DESC_LOW, 0x5000)
    d.w(R.R_QUEUE_DESC_HIGH, 1)
    assert d.r(R.R_QUEUE_NUM) == 64 and d.r(R.R_QUEUE_DESC_LOW) == 0x5000
    assert d.r(R.R_QUEUE_DESC_HIGH) == 1
    d.w(R.R_QUEUE_READY, 1)
    d.w(R.R_QUEUE_NUM, 8)                   # ignored while ready
    assert d.r(R.R_QUEUE_NUM) == 64
    d.w(R.R_QUEUE_SEL, 5)                   # no such queue
    assert d.r(R.R_QUEUE_NUM_MAX) == 0


def test_bad_queue_at_driver_ok_needs_reset(blk):
    t, d = blk
    d.w(R.R_STATUS, 0)
    d.w(R.R_STATUS, 3)
    d.w(R.R_DRIVER_FEATURES_SEL, 1)
    d.w(R.R_DRIVER_FEATURES, 1)
    d.w(R.R_STATUS, 0xB)
    d.w(R.R_QUEUE_SEL, 0)
    d.w(R.R_QUEUE_NUM, 16)
    d.w(R.R_QUEUE_DESC_LOW, 0xFFFF0000)     # outside the 1 MiB of RAM
    d.w(R.R_QUEUE_READY, 1)
    d.w(R.R_STATUS, 0xF)
    assert d.r(R.R_STATUS) & R.DEVICE_NEEDS_RESET and "outside" in t.needs_reset_reason


def test_get_id_serial(blk):
    t, _ = blk
    assert t.device.ident.rstrip(b"\0") == b"sn1"


def test_placeholder_transport_identifies_as_no_device():
    """virtio 1.2 section 4.2.2: DeviceID 0x0 marks a placeholder at a well-known address
    (QEMU virt's empty transports); MagicValue "virt" and Version 2 still read, everything
    else reads 0 and writes change nothing."""
    p = R.VirtioPlaceholder()
    assert p.read(R.R_MAGIC, 4) == 0x74726976 and p.read(R.R_VERSION, 4) == 2
    assert p.read(R.R_DEVICE_ID, 4) == 0
    p.write(R.R_STATUS, 4, R.ACKNOWLEDGE | R.DRIVER)
    assert p.read(R.R_STATUS, 4) == 0 and p.read(R.R_QUEUE_NUM_MAX, 4) == 0
