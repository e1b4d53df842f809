"""Linux on god, for real: Debian's kernel + a BusyBox initramfs boots on god over kvm_amd
(inside the SVM lane), on god's own split irqchip, to an initramfs marker, finds god's virtio-blk disk through ACPI (the
DSDT's LNRO0005 device; god adds no virtio_mmio.device= words, and Debian's kernel could not
use them: CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is off), mounts it, then leaves through god's
exit port."""

from __future__ import annotations

import re

import pytest

from tests.lane import irq_reentry
from tests.lane.conftest import DISK_MARKER, DISK_MARKER_PREFIX, LINUX_MARKER, LaneBoot

# Known platform limit, kept visible and kept narrow: in about 1 run in 10 under load, the
# nested kvm_amd on QEMU TCG's SVM delivers IRQ0 again while the guest's IF is 0, and Linux
# deadlocks in an IRQ flow handler (docs/lane.md "Known gaps", issue 13). Only a stop of god that
# shows that signature (tests/lane/irq_reentry.py) turns these checks into XFAIL; any other
# failure fails.


@pytest.fixture(scope="module")
def linux_part(lane_boot: LaneBoot) -> str:
    console = lane_boot.result.console
    known = irq_reentry.recognise(console.decode(errors="replace"))
    if known is not None:
        pytest.xfail(known)
    part = re.search(rb"@@lane-part linux start=.*?@@lane-part-end linux status=(\d+)", console, re.DOTALL)
    assert part is not None, (f"the Linux-on-god part did not finish (lane status {lane_boot.result.status}); "
                              f"console {lane_boot.result.log}:\n{console[-3000:].decode(errors='replace')}")
    return part.group(0).decode(errors="replace")


def test_debian_linux_boots_on_god_to_initramfs(lane_boot: LaneBoot, linux_part: str) -> None:
    assert LINUX_MARKER in linux_part, f"no initramfs marker from Linux on god; its console:\n{linux_part[-4000:]}"
    status = int(re.findall(r"@@lane-part-end linux status=(\d+)", linux_part)[-1])
    assert status == 1, f"god exited with {status}, expected 1 (exit port value 0); console:\n{linux_part[-2000:]}"
    print(f"Linux on god (lane uptime, god start to exit): {lane_boot.timings.get('linux_s')} s")


def test_debian_linux_mounts_god_virtio_blk_found_through_acpi(linux_part: str) -> None:
    """ACPI 6.5 section 6.1.5 (_HID) / QEMU microvm's convention: a virtio-mmio device is
    `LNRO0005` with its window in _CRS; Linux's virtio_mmio binds it from ACPI alone."""
    cmdline = re.search(r"@@linux-on-god cmdline: (.*)", linux_part)
    assert cmdline is not None and "virtio_mmio.device=" not in cmdline.group(1), \
        f"the disk must be announced by ACPI only; console:\n{linux_part[-3000:]}"
    acpi = re.search(r"@@linux-on-god acpi devices: (.*)", linux_part)
    assert acpi is not None and "LNRO0005:00" in acpi.group(1), \
        f"Linux saw no LNRO0005 ACPI device; console:\n{linux_part[-3000:]}"
    assert f"{DISK_MARKER_PREFIX}{DISK_MARKER}" in linux_part, \
        f"Linux did not mount god's virtio-blk disk; console:\n{linux_part[-4000:]}"
