"""Linux on god, for real: Debian's kernel + a BusyBox initramfs boots on god over kvm_amd
(inside the SVM lane) to an initramfs marker, then leaves through god's exit port."""

from __future__ import annotations

import re

from tests.lane.conftest import LINUX_MARKER, LaneBoot


def test_debian_linux_boots_on_god_to_initramfs(lane_boot: LaneBoot) -> None:
    console = lane_boot.result.console
    part = re.search(rb"@@lane-part linux start=.*?@@lane-part-end linux status=(\d+)", console, re.DOTALL)
    assert part is not None, (f"the Linux-on-god part did not finish (lane status {lane_boot.result.status}); "
                              f"console {lane_boot.result.log}:\n{console[-3000:].decode(errors='replace')}")
    text = part.group(0).decode(errors="replace")
    assert LINUX_MARKER in text, f"no initramfs marker from Linux on god; its console:\n{text[-4000:]}"
    status = int(part.group(1))
    assert status == 1, f"god exited with {status}, expected 1 (exit port value 0); console:\n{text[-2000:]}"
    print(f"Linux on god (lane uptime, god start to exit): {lane_boot.timings.get('linux_s')} s")
