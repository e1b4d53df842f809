"""virtio-blk requests (virtio 1.2 section 5.2.6): header, data, status byte, in one chain."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_vmm.virtio.driver import Buffer, MmioDevice
from pytest_vmm.virtio.layout import BLK_CONFIG_CAPACITY, BLK_REQ_HEADER, BlkType

STATUS_UNWRITTEN = 0xA5  # put in the status byte first: a device that never writes it is seen


@dataclass(frozen=True)
class BlkResult:
    status: int  # the status byte as the device left it (STATUS_UNWRITTEN if untouched)
    data: bytes  # device-writable data buffer after completion (IN, GET_ID)
    used_len: int  # the used element's len: bytes the device wrote into the chain


def capacity(dev: MmioDevice) -> int:
    """virtio_blk_config.capacity, in 512-byte sectors (5.2.4)."""
    return dev.config_read(BLK_CONFIG_CAPACITY, 4) | dev.config_read(BLK_CONFIG_CAPACITY + 4, 4) << 32


def request(dev: MmioDevice, kind: int, sector: int = 0, out: bytes = b"", in_len: int = 0,
            indirect: bool = False, status_byte: bool = True, queue: int = 0) -> BlkResult:
    """One request on the request queue; ``out`` is driver-to-device data, ``in_len`` the
    device-writable data buffer's size. ``status_byte=False`` leaves the status out of the
    chain (the malformed request of 5.2.6.1)."""
    mark = dev.arena.mark()
    try:
        header = dev.arena.alloc(BLK_REQ_HEADER.size)
        dev.mem.write(header, BLK_REQ_HEADER.pack(kind, 0, sector))
        bufs = [Buffer(header, BLK_REQ_HEADER.size)]
        if out:
            data_out = dev.arena.alloc(len(out))
            dev.mem.write(data_out, out)
            bufs.append(Buffer(data_out, len(out)))
        data_in = 0
        if in_len:
            data_in = dev.arena.alloc(in_len)
            dev.mem.fill(data_in, in_len)
            bufs.append(Buffer(data_in, in_len, writable=True))
        status = dev.arena.alloc(1)
        dev.mem.write(status, bytes([STATUS_UNWRITTEN]))
        if status_byte:
            bufs.append(Buffer(status, 1, writable=True))
        used = dev.transact(queue, bufs, indirect=indirect)
        data = dev.mem.read(data_in, in_len) if in_len else b""
        return BlkResult(dev.mem.read(status, 1)[0], data, used.length)
    finally:
        dev.arena.release(mark)


def read_sectors(dev: MmioDevice, sector: int, count: int = 1, **kw: object) -> BlkResult:
    return request(dev, BlkType.IN, sector, in_len=512 * count, **kw)  # type: ignore[arg-type]


def write_sectors(dev: MmioDevice, sector: int, data: bytes, **kw: object) -> BlkResult:
    return request(dev, BlkType.OUT, sector, out=data, **kw)  # type: ignore[arg-type]
