"""Write a microkernelia model disk: sector 0 index (MKIADISK) + files, 512-byte aligned.

The format is what ai_runtime::read_index reads (see ai_runtime/src/lib.rs).
    python mkdisk.py OUT.img NAME=FILE [NAME=FILE ...]
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

SECTOR = 512
MAX_ENTRIES = 7


def make_disk(files: list[tuple[str, bytes]], min_size: int = 64 * 1024) -> bytes:
    if len(files) > MAX_ENTRIES:
        raise ValueError(f"at most {MAX_ENTRIES} files")
    index = bytearray(SECTOR)
    index[0:16] = b"MKIADISK" + struct.pack("<II", 1, len(files))
    body = bytearray()
    for i, (name, data) in enumerate(files):
        raw = name.encode()
        if not 0 < len(raw) <= 47:
            raise ValueError(f"bad file name {name!r}")
        offset = SECTOR + len(body)
        body += data
        body += bytes(-len(body) % SECTOR)
        index[16 + 64 * i:16 + 64 * (i + 1)] = raw.ljust(48, b"\0") + struct.pack("<QQ", offset, len(data))
    image = bytes(index) + bytes(body)
    return image + bytes(max(0, min_size - len(image)))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    files = []
    for spec in argv[1:]:
        name, _, path = spec.partition("=")
        files.append((name, Path(path).read_bytes()))
    Path(argv[0]).write_bytes(make_disk(files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
