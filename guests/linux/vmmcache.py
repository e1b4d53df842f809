"""Small helpers shared by guest builds: the user cache root, a file lock, atomic publish.

Expensive intermediate steps (the Debian kernel unpack, the llama.cpp build) are cached under
``~/.cache/pytest-vmm/<name>-<hash>`` so that many builds (and many xdist workers) pay for them
once. A directory is only ever published complete: it is built under a temporary name and
renamed into place while holding the lock, so a half-built cache entry is never seen.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_root() -> Path:
    """Where cached build steps live; PYTEST_VMM_CACHE overrides (CI, tests)."""
    env = os.environ.get("PYTEST_VMM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pytest-vmm"


def short_hash(*parts: object) -> str:
    """A stable 16-hex-digit key of JSON-serialisable inputs."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock; released by the kernel even if the holder is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_dir(name: str, key: str, produce: Callable[[Path], None]) -> Path:
    """Return ``cache_root()/name-key``, calling ``produce(tmpdir)`` once to fill it.

    The marker file ``.complete`` is written last, so an entry left by a crashed build
    (impossible with the rename, but cheap to guard) is rebuilt rather than trusted.
    """
    root = cache_root()
    final = root / f"{name}-{key}"
    if (final / ".complete").exists():
        return final
    with file_lock(root / f".{name}-{key}.lock"):
        if (final / ".complete").exists():
            return final
        if final.exists():
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-{key}.", dir=root))
        try:
            produce(tmp)
            (tmp / ".complete").write_text(key + "\n")
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
