"""The Debian-kernel unpacker's pure parts, on synthetic inputs (no download needed)."""

from __future__ import annotations

import lzma
import struct

import debkernel
import pytest


def _elf_with_pvh_note(entry: int) -> bytes:
    """A minimal ELF64 with one PT_NOTE holding a Xen PHYS32_ENTRY note."""
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", entry)
    ehdr = bytearray(64)
    ehdr[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", ehdr, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", ehdr, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 4, 64 + 56, 0, 0, len(note), len(note), 4)
    return bytes(ehdr) + phdr + note


def _bzimage(payload: bytes, setup_sects: int = 3) -> bytes:
    img = bytearray((setup_sects + 1) * 512)
    img[0x1F1] = setup_sects
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x206, 0x20F)
    off = 0x40
    struct.pack_into("<II", img, 0x248, off, len(payload))
    body = bytearray(off) + payload + struct.pack("<I", 12345)  # trailing size field
    return bytes(img) + bytes(body)


def test_extract_vmlinux_and_pvh_entry() -> None:
    elf = _elf_with_pvh_note(0x1000850)
    xz = lzma.compress(elf, format=lzma.FORMAT_XZ, filters=[{"id": lzma.FILTER_X86},
                                                            {"id": lzma.FILTER_LZMA2}])
    out = debkernel.extract_vmlinux(_bzimage(xz))
    assert out == elf
    assert debkernel.pvh_entry(out) == 0x1000850


def test_extract_rejects_non_bzimage() -> None:
    with pytest.raises(ValueError):
        debkernel.extract_vmlinux(b"\0" * 4096)


def test_load_order_puts_dependencies_first() -> None:
    index = {
        "ext4": {"depends": ["jbd2", "mbcache", "crc16"]},
        "jbd2": {"depends": []}, "mbcache": {"depends": []}, "crc16": {"depends": []},
        "virtio_blk": {"depends": ["virtio", "virtio_ring"]},
        "virtio": {"depends": []}, "virtio_ring": {"depends": []},
    }
    order = debkernel.resolve_load_order(index, ["virtio_ring", "virtio_blk", "ext4"])
    assert order == ["virtio_ring", "virtio", "virtio_blk", "jbd2", "mbcache", "crc16", "ext4"]
    with pytest.raises(KeyError):
        debkernel.resolve_load_order(index, ["nope"])


def test_package_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_VMM_LINUX_PACKAGE", "linux-image-6.1.0-56-amd64=6.1.192-2")
    pkg = debkernel.resolve_package()
    assert pkg.release == "6.1.0-56-amd64" and pkg.version == "6.1.192-2"
    monkeypatch.setenv("PYTEST_VMM_LINUX_PACKAGE", "bogus")
    with pytest.raises(debkernel.KernelUnavailable):
        debkernel.resolve_package()
