"""The host-side virtio driver (pytest_vmm/virtio) against an independent model of the split
ring written here from virtio 1.2 section 2.7, and against god's device model (no VM)."""

from __future__ import annotations

import struct

import pytest

from pytest_vmm.virtio.access import Arena, BytesMemory
from pytest_vmm.virtio.driver import Buffer, MmioDevice, SplitQueue, VirtioError
from pytest_vmm.virtio.layout import F_VERSION_1, BlkStatus, Reg, Status, bit

RAM = 0x10000


def queue(size: int = 4) -> tuple[BytesMemory, SplitQueue]:
    mem = BytesMemory(RAM)
    return mem, SplitQueue(mem, Arena(0x1000, RAM), 0, size)


def model_device_step(mem: BytesMemory, q: SplitQueue, written: int) -> list[list[tuple[int, int, int]]]:
    """A device per 2.7: take every new avail entry, walk its chain (following INDIRECT),
    put (head, written) in the used ring, then bump used idx. Returns the chains seen."""
    u16 = lambda a: struct.unpack_from("<H", mem.data, a)[0]
    avail_idx, used_idx = u16(q.avail + 2), u16(q.used + 2)
    chains = []
    while used_idx != avail_idx:
        head = u16(q.avail + 4 + 2 * (used_idx % q.size))
        chain, d, table = [], head, q.desc
        while True:
            addr, length, flags, nxt = struct.unpack_from("<QIHH", mem.data, table + 16 * d)
            if flags & 4:
                table, d = addr, 0
                continue
            chain.append((addr, length, flags))
            if not flags & 1:
                break
            d = nxt
        chains.append(chain)
        struct.pack_into("<II", mem.data, q.used + 4 + 8 * (used_idx % q.size), head, written)
        used_idx = (used_idx + 1) & 0xFFFF
        struct.pack_into("<H", mem.data, q.used + 2, used_idx)
    return chains


def test_rings_are_aligned_and_zeroed() -> None:
    """2.7 alignment: descriptor table 16, available ring 2, used ring 4."""
    mem, q = queue(8)
    assert q.desc % 16 == 0 and q.avail % 2 == 0 and q.used % 4 == 0
    assert q.avail >= q.desc + 16 * 8 and q.used >= q.avail + 6 + 2 * 8
    assert mem.read(q.desc, 16 * 8) == bytes(16 * 8)


def test_queue_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of 2"):
        queue(6)


def test_chain_flags_and_links_as_the_model_reads_them() -> None:
    mem, q = queue()
    head = q.add([Buffer(0x8000, 16), Buffer(0x9000, 512, writable=True), Buffer(0x9400, 1, writable=True)])
    (chain,) = model_device_step(mem, q, 513)
    assert chain == [(0x8000, 16, 1), (0x9000, 512, 3), (0x9400, 1, 2)]
    assert q.take_used()[0].head == head and not q.chains


def test_indirect_table_as_the_model_reads_it() -> None:
    mem, q = queue()
    q.add_indirect([Buffer(0x8000, 16), Buffer(0x9000, 8, writable=True)])
    (chain,) = model_device_step(mem, q, 8)
    assert chain == [(0x8000, 16, 1), (0x9000, 8, 2)]


def test_used_ring_wraps_and_frees_descriptors() -> None:
    mem, q = queue(2)
    for i in range(5):
        q.add([Buffer(0x8000 + i, 1, writable=True)])
        model_device_step(mem, q, 1)
        (used,) = q.take_used()
        assert used.length == 1
    assert sorted(q.free) == [0, 1] and q.avail_idx == 5


def test_used_idx_wraps_at_16_bits() -> None:
    mem, q = queue(4)
    q.avail_idx = q.last_used = 0xFFFF
    struct.pack_into("<H", mem.data, q.avail + 2, 0xFFFF)
    struct.pack_into("<H", mem.data, q.used + 2, 0xFFFF)
    q.add([Buffer(0x8000, 1)])
    q.add([Buffer(0x8001, 1)])
    assert len(model_device_step(mem, q, 0)) == 2
    assert [u.head for u in q.take_used()] == [0, 1] and q.last_used == 1


def test_publish_writes_the_entry_before_idx() -> None:
    """2.7.13: the ring entry must be visible before idx moves."""
    order: list[int] = []

    class Recording(BytesMemory):
        def write(self, addr: int, data: bytes) -> None:
            order.append(addr)
            super().write(addr, data)

    mem = Recording(RAM)
    q = SplitQueue(mem, Arena(0x1000, RAM), 0, 4)
    order.clear()
    q.publish(0)
    assert order == [q.avail + 4, q.avail + 2]


def test_device_naming_an_unknown_head_is_an_error() -> None:
    mem, q = queue()
    struct.pack_into("<II", mem.data, q.used + 4, 3, 0)
    struct.pack_into("<H", mem.data, q.used + 2, 1)
    with pytest.raises(VirtioError, match="not the head"):
        q.take_used()


def test_used_idx_beyond_queue_size_is_an_error() -> None:
    mem, q = queue()
    struct.pack_into("<H", mem.data, q.used + 2, 9)
    with pytest.raises(VirtioError, match="more than the queue size"):
        q.take_used()


class RegisterLog:
    """Registers that record writes and answer reads from a dict (a fake device)."""

    def __init__(self, values: dict[int, int]) -> None:
        self.values = dict(values)
        self.writes: list[tuple[int, int]] = []

    def read(self, offset: int, width: int = 4) -> int:
        return self.values.get(offset, 0)

    def write(self, offset: int, value: int, width: int = 4) -> None:
        self.writes.append((offset, value))
        self.values[offset] = value
        if offset == Reg.DEVICE_FEATURES_SEL:
            self.values[Reg.DEVICE_FEATURES] = 0 if value == 0 else 1  # VERSION_1 only


def test_initialization_follows_3_1_1() -> None:
    regs = RegisterLog({Reg.MAGIC_VALUE: 0x74726976, Reg.QUEUE_NUM_MAX: 256})
    dev = MmioDevice(regs, BytesMemory(RAM), Arena(0x1000, RAM))
    dev.initialize(bit(F_VERSION_1))
    statuses = [v for o, v in regs.writes if o == Reg.STATUS]
    assert statuses == [0, 1, 3, 0xB, 0xF]
    ready_at = regs.writes.index((Reg.QUEUE_READY, 1))
    assert regs.writes.index((Reg.STATUS, 0xF)) > ready_at > regs.writes.index((Reg.STATUS, 0xB))
    assert (Reg.QUEUE_NUM, 16) in regs.writes  # min(QueueNumMax, 16)


# ---------------------------------------------------------------- against god's device model
class GodRegisters:
    def __init__(self, transport: object) -> None:
        self.t = transport

    def read(self, offset: int, width: int = 4) -> int:
        return self.t.read(offset, width)  # type: ignore[attr-defined]

    def write(self, offset: int, value: int, width: int = 4) -> None:
        self.t.write(offset, width, value)  # type: ignore[attr-defined]


def test_blk_requests_against_gods_device_model(tmp_path) -> None:
    pytest.importorskip("god")
    from god.devices.irq import RecordingIrq
    from god.memory import GuestMemory
    from god.virtio.blk import VirtioBlk
    from god.virtio.mmio import VirtioMmio

    from pytest_vmm.virtio import blk, testdisk

    image = tmp_path / "disk.img"
    testdisk.write(image)
    mem = GuestMemory([(0, 1 << 20)])
    transport = VirtioMmio(VirtioBlk(image), mem, RecordingIrq())
    try:
        dev = MmioDevice(GodRegisters(transport), mem, Arena(0x10000, 1 << 20))
        dev.initialize(bit(F_VERSION_1))
        assert dev.status == Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK
        assert blk.capacity(dev) == testdisk.SECTORS
        assert blk.read_sectors(dev, 7).data == testdisk.sector(7)
        assert blk.write_sectors(dev, 7, b"\x11" * 512).status == BlkStatus.OK
        assert blk.read_sectors(dev, 7, indirect=False).data == b"\x11" * 512
        assert blk.read_sectors(dev, testdisk.SECTORS).status == BlkStatus.IOERR
    finally:
        transport.close()
        mem.close()
