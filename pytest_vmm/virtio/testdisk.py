"""The probe stack's virtio-blk test disk: a deterministic pattern the checks know without
reading the file. guests/probe/build.py writes it (this file is an input of that build).

Sector ``s`` holds 64 little-endian 8-byte words ``(s << 32) | (w << 8) | 0x5a`` for
``w = 0..63``: every sector differs from every other and from zero, so a read of the wrong
sector, a short read or an unread buffer are all visible.
"""

from __future__ import annotations

from pathlib import Path

SECTORS = 128  # 64 KiB: small enough to copy per boot
SECTOR_SIZE = 512
FILE_NAME = "virtio-disk.img"


def sector(s: int) -> bytes:
    return b"".join(((s << 32) | (w << 8) | 0x5A).to_bytes(8, "little") for w in range(SECTOR_SIZE // 8))


def image() -> bytes:
    return b"".join(sector(s) for s in range(SECTORS))


def write(path: Path) -> None:
    path.write_bytes(image())
