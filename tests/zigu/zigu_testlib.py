"""Paths and checks shared by the zigu tests (a uniquely named module: every test folder
here is on sys.path, so a plain ``conftest`` import could resolve to another folder's)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ZIGU = ROOT / "guests" / "zigu"
ADAPTER = ZIGU / "adapter" / "python-3.12"
if str(ADAPTER) not in sys.path:
    sys.path.insert(0, str(ADAPTER))


def qemu_unavailable() -> str | None:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed"
    return None
