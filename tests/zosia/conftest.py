"""Make guests/zosia and guests/linux importable for the zosia image tests."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("guests/zosia", "guests/linux"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.append(p)  # appended: guests/*/build.py must not shadow PyPA `build`
