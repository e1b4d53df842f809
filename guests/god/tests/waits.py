"""How long the tests wait for god: written for KVM on the host, stretched where god runs slower.

The SVM lane runs this suite under QEMU TCG (tests/lane), where starting Python and god takes
several times longer; it sets GOD_TEST_TIME_SCALE so fixed waits grow with the emulation
rather than time out on a loaded host.
"""

from __future__ import annotations

import os

TIME_SCALE = float(os.environ.get("GOD_TEST_TIME_SCALE", "1") or 1)


def scaled(seconds: float) -> float:
    """``seconds`` of waiting on the host, as long as it needs to be here."""
    return seconds * TIME_SCALE
