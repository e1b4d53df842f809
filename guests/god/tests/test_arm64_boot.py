"""The arm64 loaders against Linux's Documentation/arch/arm64/booting.rst: the Image header
(magic "ARM\\x64" at 0x38, text_offset, image_size, flags), placement text_offset above a
2 MiB-aligned base, the DTB 8-byte aligned in a 2 MiB region of its own within the first
512 MiB, initrd beyond it; gzip'd Images; ELF by PT_LOAD paddr; raw at RAM base + 0x80000."""

from __future__ import annotations

import gzip
import struct

import pytest
from arm64build import build
from god.arch.aarch64 import boot as B
from god.boot.errors import LoaderError

RAM = 0x4000_0000
MiB = 1 << 20


def image(text_offset: int = 0, image_size: int = 3 * MiB, flags: int = 0b010,
          body: int = 4096) -> bytes:
    """An Image header as booting.rst section 4 lays it out, then padding."""
    hdr = struct.pack("<IIQQQQQQ", 0x14000010, 0, text_offset, image_size, flags, 0, 0, 0)
    hdr += b"ARM\x64" + struct.pack("<I", 0)
    assert len(hdr) == 64
    return hdr + bytes(body)


def test_header_fields():
    h = B.parse_image_header(image(0x80000, 5 * MiB, 0b011))
    assert (h.text_offset, h.image_size, h.big_endian, h.page_size_kib) == (0x80000, 5 * MiB, True, 4)
    assert B.parse_image_header(b"\0" * 64) is None


def test_legacy_image_size_zero_means_text_offset_0x80000():
    """booting.rst: 'Prior to v3.17 ... image_size is zero and text_offset 0x80000'."""
    assert B.parse_image_header(image(0x1234, 0)).text_offset == 0x80000


@pytest.mark.parametrize("text_offset", [0, 0x80000])
def test_image_placement_and_dtb(text_offset):
    p = B.plan(image(text_offset, 3 * MiB + 5), 128 * MiB)
    assert p.fmt == "image"
    assert (p.load_addr - text_offset) % (2 * MiB) == 0 and p.entry == p.load_addr
    assert p.kernel_end == p.load_addr + 3 * MiB + 5
    assert p.dtb_addr % 8 == 0 and p.dtb_addr >= p.kernel_end
    assert p.dtb_addr % (2 * MiB) == 0          # a 2 MiB region of its own
    assert p.dtb_addr + 2 * MiB <= RAM + 512 * MiB


def test_initrd_after_dtb_region_and_fits():
    p = B.plan(image(), 64 * MiB, initrd_size=5 * MiB)
    assert p.initrd_addr >= p.dtb_addr + 2 * MiB
    assert p.initrd_range == (p.initrd_addr, p.initrd_addr + 5 * MiB)
    with pytest.raises(LoaderError, match="initrd .* does not fit"):
        B.plan(image(), 16 * MiB, initrd_size=20 * MiB)


def test_gzip_image_is_decompressed():
    p = B.plan(gzip.compress(image(0, 3 * MiB)), 64 * MiB)
    assert p.fmt == "image" and p.kernel[0x38:0x3C] == b"ARM\x64"
    with pytest.raises(LoaderError, match="not an arm64 Image"):
        B.plan(gzip.compress(b"hello"), 64 * MiB)
    with pytest.raises(LoaderError, match="does not decompress"):
        B.plan(b"\x1f\x8b" + b"junk" * 10, 64 * MiB)


def test_big_endian_and_too_small_ram_refused():
    with pytest.raises(LoaderError, match="big-endian"):
        B.plan(image(flags=1), 64 * MiB)
    with pytest.raises(LoaderError, match="does not fit in guest RAM"):
        B.plan(image(image_size=200 * MiB), 64 * MiB)


def test_raw_loads_at_ram_plus_0x80000():
    p = B.plan(b"\x00\x00\x00\x14" * 4, 32 * MiB)
    assert (p.fmt, p.load_addr, p.entry) == ("raw", RAM + 0x80000, RAM + 0x80000)


def test_elf_by_paddr_and_entry(tmp_path):
    elf, raw = build(tmp_path)
    p = B.plan(elf.read_bytes(), 32 * MiB)
    assert (p.fmt, p.load_addr, p.entry) == ("elf", 0x40080000, 0x40080000)
    assert p.kernel_end - p.load_addr == len(raw.read_bytes())


def test_x86_elf_refused():
    hdr = bytearray(64)
    hdr[:4] = b"\x7fELF"
    hdr[4], hdr[5] = 2, 1
    struct.pack_into("<HHIQQQIHHHHHH", hdr, 16, 2, 62, 1, 0x100000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    with pytest.raises(LoaderError, match="not AArch64"):
        B.plan(bytes(hdr), 32 * MiB)
