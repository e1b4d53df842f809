"""Guest memory: bounds checks turn bad guest addresses into GuestMemoryError."""

from __future__ import annotations

import pytest
from god.memory import GuestMemory, GuestMemoryError


@pytest.fixture
def mem():
    m = GuestMemory([(0, 1 << 20), (4 << 30, 1 << 20)])
    yield m
    m.close()


def test_read_write_roundtrip(mem):
    mem.write(0x1000, b"abc")
    assert mem.read(0x1000, 3) == b"abc"
    mem.write_u64(4 << 30, 0x1122334455667788)
    assert mem.read_u32((4 << 30) + 4) == 0x11223344
    mem.fill(0x1000, 2, 0x7F)
    assert mem.read(0x1000, 3) == b"\x7f\x7fc"


@pytest.mark.parametrize("gpa,length", [
    ((1 << 20) - 2, 4),        # straddles the end of the first region
    (1 << 20, 1),              # in the hole
    ((4 << 30) - 1, 2),        # straddles into the second region from the hole
    ((4 << 30) + (1 << 20), 1),
    (-1, 1),
    (0, -1),
    (1 << 64, 1),
    (0, 1 << 32),              # a 4 GiB "frame length": refused before any allocation
])
def test_out_of_range_raises(mem, gpa, length):
    with pytest.raises(GuestMemoryError):
        mem.read(gpa, length)
    with pytest.raises(GuestMemoryError):
        mem.view(gpa, length)
    assert not mem.contains(gpa, length)


def test_write_out_of_range_raises(mem):
    with pytest.raises(GuestMemoryError):
        mem.write((1 << 20) - 1, b"xy")
    with pytest.raises(GuestMemoryError):
        mem.write_u32(3 << 30, 1)


def test_view_is_zero_copy(mem):
    v = mem.view(0x2000, 4)
    v[:] = b"wxyz"
    assert mem.read(0x2000, 4) == b"wxyz"


def test_cstring_limit(mem):
    mem.write(0x3000, b"hello\0")
    assert mem.read_cstring(0x3000) == b"hello"
    mem.fill(0x4000, 0x2000, 0x41)
    with pytest.raises(GuestMemoryError):
        mem.read_cstring(0x4000, limit=0x100)


def test_bad_layouts():
    with pytest.raises(GuestMemoryError):
        GuestMemory([(0, 0x1001)])
    with pytest.raises(GuestMemoryError):
        GuestMemory([(0, 0x2000), (0x1000, 0x1000)])
