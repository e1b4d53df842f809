"""Find test-double guest processes that outlived their run."""

from __future__ import annotations

import os
from pathlib import Path


def leftover_processes(marker: str = "fake_guest.py") -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(f"{pid}: {cmdline}")
    return found


def leftover_run_dirs(prefix: str = "vmm-fake") -> list[Path]:
    import tempfile

    return sorted(Path(tempfile.gettempdir()).glob(f"{prefix}*"))
