"""god-arm64 as a target, without booting: availability, which god backend applies where,
and the god command line it sends into the lane."""

from __future__ import annotations

from pathlib import Path

from pytest_vmm.hypervisors import god as god_hv
from pytest_vmm.hypervisors import lane_arm64_hv
from pytest_vmm.stack import BootSpec, Disk


def test_host_arch_spellings():
    assert god_hv.host_arch("arm64") == "aarch64"
    assert god_hv.host_arch("aarch64") == "aarch64"
    assert god_hv.host_arch("x86_64") == "x86_64"


def test_vmm_list_says_which_god_backend_applies():
    assert "arm64 backend, directly on this arm64 host's /dev/kvm" in god_hv.god_description("aarch64")
    assert "x86_64 backend" in god_hv.god_description("x86_64")
    assert "god-arm64" in god_hv.god_description("x86_64")
    assert "plain god runs that backend directly" in lane_arm64_hv.lane_description("aarch64")
    assert "plain god" not in lane_arm64_hv.lane_description("x86_64")


def test_target_is_aarch64_tcg():
    hv = lane_arm64_hv.hypervisor
    assert hv.arch == "aarch64" and hv.accels == ("tcg",)
    assert "vsock" not in hv.provides


def test_request_maps_host_files_and_copies_writable_disks(tmp_path):
    kernel, ro, rw = (tmp_path / n for n in ("probe.img", "ro.img", "rw.img"))
    for p in (kernel, ro, rw):
        p.write_bytes(b"x")
    spec = BootSpec(kernel=kernel, mem_mib=64, cpus=2, disks=[Disk(ro, read_only=True), Disk(rw)])
    req = lane_arm64_hv.hypervisor.god_request(spec, tmp_path)
    argv = req["argv"]
    assert argv[:5] == ["python3", "-u", "-S", "-m", "god"]
    assert argv[6] == f"/host{kernel.resolve()}"
    disks = [argv[i + 1] for i, w in enumerate(argv) if w == "--disk"]
    assert disks[0] == f"/host{ro.resolve()},ro"
    # the writable disk is a lane-local copy (the host's / is read-only in the lane)
    assert [Path(c[1]).name for c in req["copy"]] == [disks[1]]
    assert req["copy"][0][0].startswith("/host/")
