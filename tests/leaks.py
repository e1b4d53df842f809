"""Find test-double guest processes and machine run dirs that outlived their test.

Each test gets its own marker and temp dir (``no_leftovers``), so the check sees only what
that test started: under xdist another worker's guests, running meanwhile, are not leaks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

OWNER_ENV = "VMM_TESTS_OWNER"  # inherited by every process the test starts


def leftover_processes(owner: str, marker: str = "fake_guest.py") -> list[str]:
    """Live processes whose command line has ``marker`` and whose environment names ``owner``."""
    tag = f"{OWNER_ENV}={owner}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and state != "Z" and tag in environ:
            found.append(f"{pid}: {cmdline}")
    return found


def leftover_run_dirs(prefix: str = "vmm-fake") -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob(f"{prefix}*"))


@pytest.fixture(autouse=True)
def no_leftovers(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the test if a guest it started outlives it, or its machine run dir stays behind."""
    tmp_path_factory.getbasetemp()  # fixed now, so pytest's own temp dirs stay outside ``tmp``
    owner = uuid.uuid4().hex
    # Short, in /tmp: socket paths under a run dir must stay within sun_path's 108 bytes.
    tmp = tempfile.mkdtemp(prefix="vt-", dir="/tmp")
    monkeypatch.setenv(OWNER_ENV, owner)
    monkeypatch.setenv("TMPDIR", tmp)
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    try:
        yield
        assert leftover_processes(owner) == [], "a test-double guest outlived its test"
        assert leftover_run_dirs() == [], "a machine run dir was left in its temp dir"
    finally:
        monkeypatch.undo()
        shutil.rmtree(tmp, ignore_errors=True)
