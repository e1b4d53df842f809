"""Content-hashed guest image cache: build once per input hash, even across xdist workers.

Layout under the cache root (default ``~/.cache/pytest-vmm``)::

    <name>-<hash>/          finished image (contains .complete)
    <name>-<hash>.lock      file lock held while building
    <name>-<hash>.log       build log (kept; named in the error when a build fails)
    <name>-<hash>.failed    marker: this exact input failed; not retried until --vmm-rebuild
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from pytest_vmm.progress import BuildTracker, follow
from pytest_vmm.stack import BuiltImage, ImageRecipe

COMPLETE_MARKER = ".complete"
# PYTEST_VMM_CACHE, else $XDG_CACHE_HOME/pytest-vmm, else ~/.cache/pytest-vmm: the same rule
# as the guests' builders (guests/linux/vmmcache.py), so both find one cache.
DEFAULT_CACHE_ROOT = Path(os.environ.get("PYTEST_VMM_CACHE") or
                          Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "pytest-vmm")
BUILD_TIMEOUT_S = 3600.0


class BuildError(RuntimeError):
    def __init__(self, recipe: str, log: Path, detail: str) -> None:
        super().__init__(f"building {recipe} failed: {detail}; build log: {log}")
        self.recipe = recipe
        self.log = log


class BuildInterrupted(Exception):
    """A build ended by ``cancel_builds``: its staging is removed and no failure is cached."""


# The builds this process is running, by process group, so that a stop signal can end them at
# once (prebuild's SIGTERM handler) even when the exception the handler raises is swallowed
# (a signal landing in a finalizer).
_live_builds: dict[int, subprocess.Popen[bytes]] = {}
_cancelled: set[int] = set()


def cancel_builds() -> None:
    """Kill the process group of every build this process runs; each ``build`` then raises
    BuildInterrupted. Safe to call from a signal handler."""
    for pid, process in list(_live_builds.items()):
        _cancelled.add(pid)
        _kill_group(process)


def hash_inputs(recipe: ImageRecipe) -> str:
    """sha256 over relative paths, modes and contents of the recipe's inputs."""
    digest = hashlib.sha256()
    digest.update(f"recipe={recipe.name};version={recipe.version};cmd={portable_command(recipe)}".encode())
    roots = [recipe.sources, *recipe.extra_inputs]
    for root in roots:
        for path in _input_files(root, set(recipe.exclude)):
            rel = path.relative_to(root.parent) if path != root else Path(root.name)
            digest.update(b"\0" + str(rel).encode() + b"\0")
            digest.update(b"x" if os.access(path, os.X_OK) else b"-")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def portable_command(recipe: ImageRecipe) -> tuple[str, ...]:
    """The build command as the cache key sees it: this interpreter and the checkout's own
    paths stand for themselves, so two clones (or a clone and an installed copy) of the same
    sources share their cache entries instead of rebuilding every image.

    A path at or under an input's folder (the sources', or an extra input's) is written
    relative to it, as ``{tree}`` (the sources) or ``{inputN}``: the inputs' contents are
    hashed anyway, their place on disk is not part of the recipe."""
    roots = [("{tree}", str(recipe.sources.parent))]
    roots += [(f"{{input{n}}}", str(extra.parent)) for n, extra in enumerate(recipe.extra_inputs, 1)]
    roots.sort(key=lambda r: len(r[1]), reverse=True)  # the deepest folder names a path

    def portable(arg: str) -> str:
        if arg == sys.executable:
            return "{python}"
        for name, root in roots:
            if arg == root or arg.startswith(root + os.sep):
                return name + arg[len(root):]
        return arg

    return tuple(portable(arg) for arg in recipe.command)


def _input_files(root: Path, exclude: set[str]) -> list[Path]:
    if root.is_file():
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in exclude and not d.startswith("."))
        for name in sorted(filenames):
            if name not in exclude and not name.endswith(".pyc"):
                found.append(Path(dirpath) / name)
    return found


class ArtifactCache:
    def __init__(self, root: Path = DEFAULT_CACHE_ROOT, progress: Callable[[str], None] | None = None,
                 status: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.progress = progress or (lambda line: None)
        # Transient status (cmake's percentage): updated in place on a terminal.
        self.status = status or (lambda line: None)

    def key(self, recipe: ImageRecipe) -> str:
        return f"{recipe.name}-{hash_inputs(recipe)}"

    def cached(self, recipe: ImageRecipe) -> Path | None:
        path = self.root / self.key(recipe)
        return path if (path / COMPLETE_MARKER).exists() else None

    @staticmethod
    def _used(entry: Path) -> None:
        """The complete marker's mtime is the entry's last use (what prune() goes by)."""
        with contextlib.suppress(OSError):
            os.utime(entry / COMPLETE_MARKER)

    def prune(self, recipe: ImageRecipe, unused_for_s: float) -> list[tuple[str, int]]:
        """Remove this recipe's other entries (older sources: another branch, an earlier
        commit) that no run has used for ``unused_for_s``; returns (key, bytes) removed.
        The current entry, and one another process holds the lock of, are kept."""
        current = self.key(recipe)
        pattern = re.compile(rf"{re.escape(recipe.name)}-[0-9a-f]{{16}}")
        removed: list[tuple[str, int]] = []
        if not self.root.is_dir():
            return removed
        now = time.time()
        for entry in sorted(self.root.iterdir()):
            if entry.name == current or not entry.is_dir() or not pattern.fullmatch(entry.name):
                continue
            marker = entry / COMPLETE_MARKER
            last_use = (marker if marker.exists() else entry).stat().st_mtime
            if now - last_use < unused_for_s:
                continue
            lock = FileLock(str(self.root / f"{entry.name}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
                shutil.rmtree(entry, ignore_errors=True)
                for suffix in (".log", ".failed"):
                    (self.root / f"{entry.name}{suffix}").unlink(missing_ok=True)
            finally:
                lock.release()
            (self.root / f"{entry.name}.lock").unlink(missing_ok=True)
            removed.append((entry.name, size))
        return removed

    def forget(self, recipe: ImageRecipe) -> None:
        """Drop this recipe's current cache entry and failure marker (``--vmm-rebuild``)."""
        key = self.key(recipe)
        with FileLock(str(self.root / f"{key}.lock")):
            shutil.rmtree(self.root / key, ignore_errors=True)
            (self.root / f"{key}.failed").unlink(missing_ok=True)

    @contextlib.contextmanager
    def _build_lock(self, key: str, name: str, log: Path) -> Iterator[None]:
        """The entry's lock; when another pytest worker or a prebuild holds it, say so, then wait."""
        lock = FileLock(str(self.root / f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.progress(f"pytest-vmm: {name} is being built by another process (log: {log}); waiting for it")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def build(self, recipe: ImageRecipe) -> BuiltImage:
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.key(recipe)
        final = self.root / key
        log = self.root / f"{key}.log"
        failed = self.root / f"{key}.failed"
        with self._build_lock(key, recipe.name, log):
            if (final / COMPLETE_MARKER).exists():
                self._used(final)
                return BuiltImage.load(recipe.name, final, recipe.arch)
            if failed.exists():
                raise BuildError(recipe.name, log, failed.read_text().strip() + " (cached failure; --vmm-rebuild retries)")
            staging = self.root / f"{key}.tmp-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            argv = [part.replace("{out}", str(staging)) for part in recipe.command]
            self.progress(f"pytest-vmm: building {recipe.name} ({key}), log: {log}")
            started = time.monotonic()
            try:
                tracker = BuildTracker(recipe.name, self.progress, self.status)
                with log.open("wb") as log_file:
                    # Its own process group: a build cut short (timeout, Ctrl-C, SIGTERM to a
                    # prebuild) takes its compilers with it, not only build.py.
                    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, cwd=recipe.sources,
                                               start_new_session=True)
                    _live_builds[process.pid] = process
                    try:
                        returncode = follow(log, process, BUILD_TIMEOUT_S, tracker.feed,
                                            lambda: self.status(tracker.status()))
                    finally:
                        if process.poll() is None:
                            _kill_group(process)
                        process.wait()
                        _live_builds.pop(process.pid, None)
                if process.pid in _cancelled:
                    _cancelled.discard(process.pid)
                    raise BuildInterrupted(f"building {recipe.name} was cancelled")
                if returncode != 0:
                    raise BuildError(recipe.name, log, f"exit status {returncode}: {_tail(log)}")
            except subprocess.TimeoutExpired:
                shutil.rmtree(staging, ignore_errors=True)
                raise BuildError(recipe.name, log, f"timed out after {BUILD_TIMEOUT_S:.0f} s") from None
            except BuildError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                failed.write_text(str(exc).split("; build log:")[0])
                raise
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise BuildError(recipe.name, log, f"cannot run {argv[0]}: {exc}") from exc
            except BaseException:  # interrupted: nothing half-built stays in the cache
                shutil.rmtree(staging, ignore_errors=True)
                raise
            (staging / COMPLETE_MARKER).write_text(key + "\n")
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            self.progress(f"pytest-vmm: built {recipe.name} in {time.monotonic() - started:.1f} s")
            return BuiltImage.load(recipe.name, final, recipe.arch)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
