"""guests/microkernelia/mkdisk.py writes the index ai_runtime reads (checked here from Python;
the Rust side is tested by `cargo test` on a disk built the same way)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

GUEST = Path(__file__).resolve().parents[2] / "guests" / "microkernelia"


def load_mkdisk():
    spec = importlib.util.spec_from_file_location("mkdisk", GUEST / "mkdisk.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_disk_index_points_at_the_files() -> None:
    mkdisk = load_mkdisk()
    model = (GUEST / "model" / "model.kv").read_bytes()
    img = mkdisk.make_disk([("model.kv", model), ("other", b"x" * 700)])
    assert img[:8] == b"MKIADISK" and struct.unpack("<II", img[8:16]) == (1, 2)
    for i, (name, data) in enumerate([("model.kv", model), ("other", b"x" * 700)]):
        entry = img[16 + 64 * i:16 + 64 * (i + 1)]
        assert entry[:48].rstrip(b"\0") == name.encode()
        offset, length = struct.unpack("<QQ", entry[48:])
        assert offset % 512 == 0 and img[offset:offset + length] == data
    assert len(img) % 512 == 0


def test_model_rows_have_a_tab() -> None:
    for line in (GUEST / "model" / "model.kv").read_text().splitlines():
        if line and not line.startswith(("#", "@")):
            assert "\t" in line, f"model row without TAB: {line!r}"
