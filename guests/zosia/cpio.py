"""A deterministic initramfs writer (cpio "newc" + gzip -n equivalent), no root needed.

Writing the archive ourselves instead of running ``cpio`` over a staging tree gives what a
reproducible image needs and what a non-root build can't otherwise do: entries sorted by
path, one fixed mtime (SOURCE_DATE_EPOCH), uid/gid 0, inode numbers in entry order, device
nodes (/dev/console) without mknod, and no host umask or file-system order leaking in.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    path: str          # inside the archive, without leading "/"
    mode: int          # full st_mode (type bits + permissions)
    data: bytes = b""  # file contents, or the link target for a symlink
    rdev: tuple[int, int] = (0, 0)


class Tree:
    """An in-memory file tree; parent directories are created on demand."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = Entry(d, stat.S_IFDIR | 0o755)

    def dir(self, path: str, perm: int = 0o755) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFDIR | perm)

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFREG | perm, data)

    def copy(self, path: str, src: Path, perm: int | None = None) -> None:
        """Add a host file; only its executable bit is kept, so host modes can't leak in."""
        if perm is None:
            perm = 0o755 if os.access(src, os.X_OK) else 0o644
        self.file(path, src.read_bytes(), perm)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = Entry(path, stat.S_IFCHR | perm, b"", (major, minor))

    def cpio(self, mtime: int) -> bytes:
        out = io.BytesIO()

        def pad() -> None:
            out.write(b"\0" * (-out.tell() % 4))

        def header(ino: int, e: Entry, nlink: int) -> None:
            name = e.path.encode() + b"\0"
            fields = [ino, e.mode, 0, 0, nlink, mtime, len(e.data), 0, 0,
                      e.rdev[0], e.rdev[1], len(name), 0]
            out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
            out.write(name)
            pad()
            out.write(e.data)
            pad()

        # Byte-wise sort: a directory always sorts before its contents ("a" < "a/b").
        for ino, key in enumerate(sorted(self.entries, key=lambda p: p.encode()), start=1):
            e = self.entries[key]
            header(ino, e, 2 if stat.S_ISDIR(e.mode) else 1)
        header(0, Entry("TRAILER!!!", 0), 1)
        return out.getvalue()

    def cpio_gz(self, mtime: int, level: int = 6) -> bytes:
        return self.gzip(self.cpio(mtime), level)

    @staticmethod
    def gzip(data: bytes, level: int = 6) -> bytes:
        """gzip with mtime 0 and no file name in the header, like ``gzip -n``."""
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level,
                           mtime=0) as gz:
            gz.write(data)
        return buf.getvalue()
