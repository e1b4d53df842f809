"""Reproducible initramfs archives (cpio "newc", gzip -n) for the lane, no root needed.

Entries are sorted by path, every mtime is SOURCE_DATE_EPOCH (default 0), uid/gid 0, inode
numbers follow entry order, and gzip writes no name and no timestamp: the same inputs give
the same bytes. Linux accepts several such archives concatenated into one initrd (each one
compressed on its own), which is how a boot's payload (the guest kernel god runs, the
command) is added to the prebuilt lane image without rebuilding it.

Used by guests/lane/build.py and, for per-boot payloads, by pytest_vmm/hypervisors/lane.py.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from pathlib import Path

MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


class Tree:
    """An in-memory file tree: path (no leading "/") -> (mode, data, rdev)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes, tuple[int, int]]] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            self.entries.setdefault(d, (stat.S_IFDIR | 0o755, b"", (0, 0)))

    def dir(self, path: str, perm: int = 0o755) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFDIR | perm, b"", (0, 0))

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFREG | perm, data, (0, 0))

    def copy(self, path: str, src: Path) -> None:
        """A host file (symlinks followed); executable bits kept as 0755, else 0644."""
        perm = 0o755 if os.access(src, os.X_OK) else 0o644
        self.file(path, Path(src).read_bytes(), perm)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFLNK | 0o777, target.encode(), (0, 0))

    def chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFCHR | perm, b"", (major, minor))

    def size(self) -> int:
        return sum(len(data) for _m, data, _r in self.entries.values())

    def cpio(self) -> bytes:
        out = io.BytesIO()
        for ino, path in enumerate(sorted(self.entries), start=1):
            mode, data, rdev = self.entries[path]
            _header(out, path, mode, data, ino, rdev)
        _header(out, "TRAILER!!!", 0, b"", 0, (0, 0))
        pad = (-out.tell()) % 512
        out.write(b"\0" * pad)
        return out.getvalue()

    def gz(self, level: int = 6) -> bytes:
        """gzip -n equivalent: no file name, mtime 0."""
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level, mtime=0) as g:
            g.write(self.cpio())
        return buf.getvalue()


def _header(out: io.BytesIO, path: str, mode: int, data: bytes, ino: int, rdev: tuple[int, int]) -> None:
    name = path.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, MTIME, len(data), 0, 0, rdev[0], rdev[1], len(name), 0)
    out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
    out.write(name)
    out.write(b"\0" * ((-(110 + len(name))) % 4))
    out.write(data)
    out.write(b"\0" * ((-len(data)) % 4))
