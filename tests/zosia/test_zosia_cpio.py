"""The initramfs writer: a valid newc archive, sorted, fixed metadata, gzip without a date."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest
from cpio import Tree


def _tree() -> Tree:
    t = Tree()
    t.file("init", b"#!/bin/sh\necho hi\n", 0o755)
    t.symlink("bin/sh", "/bin/busybox")
    t.file("bin/busybox", b"\x7fELF fake", 0o755)
    t.chardev("dev/console", 5, 1)
    t.file("a/deep/file.txt", b"x" * 5)
    return t


def _parse(blob: bytes) -> list[tuple[str, int, int, int, bytes]]:
    """(name, mode, mtime, uid, data) for each newc entry, trailer excluded."""
    out, pos = [], 0
    while True:
        assert blob[pos:pos + 6] == b"070701"
        f = [int(blob[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = blob[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        data = blob[pos:pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out.append((name, f[1], f[5], f[2], data))


def test_entries_sorted_with_fixed_metadata() -> None:
    entries = _parse(_tree().cpio(mtime=1234))
    names = [e[0] for e in entries]
    assert names == sorted(names, key=str.encode)
    assert {"a", "a/deep", "bin", "dev"} <= set(names)  # parents created
    assert all(e[2] == 1234 and e[3] == 0 for e in entries)
    console = next(e for e in entries if e[0] == "dev/console")
    assert console[1] & 0o170000 == 0o020000


def test_same_tree_same_bytes_in_any_insertion_order() -> None:
    a = _tree()
    b = Tree()
    for e in reversed(list(a.entries.values())):
        b.entries[e.path] = e
    assert a.cpio_gz(7) == b.cpio_gz(7)
    assert gzip.decompress(a.cpio_gz(7)) == a.cpio(7)
    assert a.cpio_gz(7)[4:8] == b"\0\0\0\0"  # gzip header mtime


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_gnu_cpio_lists_it(tmp_path: Path) -> None:
    r = subprocess.run(["cpio", "-itv"], input=_tree().cpio(0), capture_output=True, check=True)
    listing = r.stdout.decode()
    assert "init" in listing and "bin/sh -> /bin/busybox" in listing
