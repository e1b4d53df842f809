"""The numbers of the virtio 1.2 specification (OASIS virtio v1.2 cs01), defined once.

Section numbers are the spec's; every suite and the driver import from here. god's device
side keeps its own copy (guests/god/src/god/virtio/mmio.py: god must not need pytest_vmm);
tests/virtio/test_layout_agrees.py checks that the two agree.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

# -------------------------------------------------------------- 4.2.2 MMIO device register layout
MAGIC_VALUE = 0x74726976  # "virt", little-endian
MMIO_VERSION = 2  # 4.2.2: 0x2 for the non-legacy interface (legacy devices say 0x1)
MMIO_SLOT_SIZE = 0x200  # registers 0x000..0x0ff, configuration space from 0x100


class Reg(IntEnum):
    """virtio-mmio register offsets (4.2.2, "MMIO Device Register Layout")."""

    MAGIC_VALUE = 0x000
    VERSION = 0x004
    DEVICE_ID = 0x008
    VENDOR_ID = 0x00C
    DEVICE_FEATURES = 0x010
    DEVICE_FEATURES_SEL = 0x014
    DRIVER_FEATURES = 0x020
    DRIVER_FEATURES_SEL = 0x024
    QUEUE_SEL = 0x030
    QUEUE_NUM_MAX = 0x034
    QUEUE_NUM = 0x038
    QUEUE_READY = 0x044
    QUEUE_NOTIFY = 0x050
    INTERRUPT_STATUS = 0x060
    INTERRUPT_ACK = 0x064
    STATUS = 0x070
    QUEUE_DESC_LOW = 0x080
    QUEUE_DESC_HIGH = 0x084
    QUEUE_DRIVER_LOW = 0x090
    QUEUE_DRIVER_HIGH = 0x094
    QUEUE_DEVICE_LOW = 0x0A0
    QUEUE_DEVICE_HIGH = 0x0A4
    SHM_SEL = 0x0AC
    SHM_LEN_LOW = 0x0B0
    SHM_LEN_HIGH = 0x0B4
    SHM_BASE_LOW = 0x0B8
    SHM_BASE_HIGH = 0x0BC
    QUEUE_RESET = 0x0C0
    CONFIG_GENERATION = 0x0FC
    CONFIG = 0x100


class Status(IntFlag):
    """Device status field bits (2.1)."""

    ACKNOWLEDGE = 1
    DRIVER = 2
    DRIVER_OK = 4
    FEATURES_OK = 8
    DEVICE_NEEDS_RESET = 64
    FAILED = 128


class Interrupt(IntFlag):
    """InterruptStatus bits (4.2.2): used buffer notification, configuration change."""

    VRING = 1
    CONFIG = 2


# -------------------------------------------------------------- 6 reserved feature bits
F_INDIRECT_DESC = 28
F_EVENT_IDX = 29
F_VERSION_1 = 32
F_ACCESS_PLATFORM = 33
F_RING_PACKED = 34
F_IN_ORDER = 35
F_ORDER_PLATFORM = 36
F_SR_IOV = 37
F_NOTIFICATION_DATA = 38
F_NOTIF_CONFIG_DATA = 39
F_RING_RESET = 40


def bit(n: int) -> int:
    return 1 << n


# -------------------------------------------------------------- 5 device ids
class DeviceId(IntEnum):
    NONE = 0  # 4.2.2: DeviceID 0x0 means "no device" behind a transport
    NET = 1
    BLOCK = 2
    CONSOLE = 3
    ENTROPY = 4
    VSOCK = 19


# -------------------------------------------------------------- 2.7 split virtqueues
QUEUE_SIZE_MAX = 32768  # 2.7: queue size is a power of 2, at most 32768
DESC = struct.Struct("<QIHH")  # 2.7.5: addr, len, flags, next
DESC_SIZE = DESC.size  # 16
USED_ELEM = struct.Struct("<II")  # 2.7.8: id, len
DESC_ALIGN, AVAIL_ALIGN, USED_ALIGN = 16, 2, 4  # 2.7, "Virtqueue Part Alignment"


class DescFlag(IntFlag):
    """Descriptor flags (2.7.5)."""

    NEXT = 1
    WRITE = 2
    INDIRECT = 4


VRING_AVAIL_F_NO_INTERRUPT = 1  # 2.7.6 / 2.7.10: driver asks the device not to interrupt
VRING_USED_F_NO_NOTIFY = 1  # 2.7.8 / 2.7.10: device asks the driver not to notify


def desc_table_size(n: int) -> int:
    return DESC_SIZE * n


def avail_ring_size(n: int) -> int:
    """flags, idx, ring[n], used_event (2.7.6)."""
    return 6 + 2 * n


def used_ring_size(n: int) -> int:
    """flags, idx, ring[n] of (id, len), avail_event (2.7.8)."""
    return 6 + 8 * n


# -------------------------------------------------------------- 5.2 block device
class BlkFeature(IntEnum):
    SIZE_MAX = 1
    SEG_MAX = 2
    GEOMETRY = 4
    RO = 5
    BLK_SIZE = 6
    FLUSH = 9
    TOPOLOGY = 10
    CONFIG_WCE = 11
    MQ = 12
    DISCARD = 13
    WRITE_ZEROES = 14


class BlkType(IntEnum):
    """virtio_blk_req.type (5.2.6)."""

    IN = 0
    OUT = 1
    FLUSH = 4
    GET_ID = 8
    DISCARD = 11
    WRITE_ZEROES = 13


class BlkStatus(IntEnum):
    """virtio_blk_req.status (5.2.6)."""

    OK = 0
    IOERR = 1
    UNSUPP = 2


BLK_SECTOR_SIZE = 512  # 5.2.6: sector is always 512 bytes, whatever blk_size says
BLK_ID_BYTES = 20  # 5.2.6: GET_ID writes a 20-byte identifier (not NUL-terminated if 20 long)
BLK_REQ_HEADER = struct.Struct("<IIQ")  # type, reserved, sector (5.2.6)
BLK_CONFIG_CAPACITY = 0x00  # le64, in 512-byte sectors (5.2.4)
BLK_CONFIG_BLK_SIZE = 0x14  # le32 (5.2.4, with VIRTIO_BLK_F_BLK_SIZE)

# -------------------------------------------------------------- 5.10 socket device
VSOCK_RX, VSOCK_TX, VSOCK_EVENT = 0, 1, 2  # 5.10.2 virtqueues
VSOCK_CONFIG_GUEST_CID = 0x00  # le64 (5.10.4)
VSOCK_HOST_CID = 2  # 5.10.4 / 5.10.6: the host's well-known CID
F_VSOCK_STREAM = 0  # 5.10.3 (feature bit 0)
F_VSOCK_SEQPACKET = 1
VSOCK_HDR = struct.Struct("<QQIIIHHIII")  # 5.10.6: src_cid dst_cid src_port dst_port len type op flags buf_alloc fwd_cnt
VSOCK_TYPE_STREAM = 1


class VsockOp(IntEnum):
    """virtio_vsock_hdr.op (5.10.6)."""

    INVALID = 0
    REQUEST = 1
    RESPONSE = 2
    RST = 3
    SHUTDOWN = 4
    RW = 5
    CREDIT_UPDATE = 6
    CREDIT_REQUEST = 7


VSOCK_SHUTDOWN_RCV = 1  # 5.10.6.5: the peer will receive no more data
VSOCK_SHUTDOWN_SEND = 2  # 5.10.6.5: the peer will send no more data
