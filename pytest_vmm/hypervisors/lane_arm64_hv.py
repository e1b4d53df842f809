"""``god-arm64``: god's arm64 backend over the real arm64 KVM, in the ARM64 lane (QEMU TCG).

One lane boot costs ~15-40 s here, so one lane (pytest_vmm/hypervisors/lane_arm64.py,
SharedLane) serves every machine of the session: each machine is a fresh ``god run`` process
in the lane, started by the lane server, and the machine's own process on the host is a small
client (lane_arm64_client.py) whose stdio is that god's console and whose exit status is god's.
Stopping the machine (SIGTERM to the client) stops and reaps that god in the lane before the
client exits; the lane's QEMU is stopped, and checked for leftovers, at the end of the session.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Accel, Hypervisor, LaunchPlan
from pytest_vmm.hypervisors.god import god_run_argv, host_arch
from pytest_vmm.hypervisors.lane_arm64 import (
    ARM64_QEMU,
    GOD_SRC,
    LANE_MACHINE,
    build,
    god_layer_recipe,
    lane_arm64_recipe,
    shared_lane,
)
from pytest_vmm.hypervisors.qemu_feature import qemu_start_problem
from pytest_vmm.stack import BootSpec, ImageRecipe

HOST_ROOT_IN_LANE = "/host"


def tcg_el2_problem(qemu: str) -> str:
    """Does this QEMU's TCG give -M virt an EL2 with GICv3? (qemu_feature: cached per binary)"""
    return qemu_start_problem(qemu, ("-M", LANE_MACHINE, "-accel", "tcg", "-cpu", "max"),
                              "lane-arm64-tcg-el2", f"has no -M {LANE_MACHINE}")


def in_lane(path: Path) -> str:
    return HOST_ROOT_IN_LANE + str(Path(path).resolve())


def lane_description(arch: str) -> str:
    text = ("god's arm64 backend over the real arm64 KVM inside QEMU TCG aarch64 "
            "(-M virt,virtualization=on): one lane per session serves every machine (docs/lane.md)")
    if arch == "aarch64":
        text += "; on this arm64 host plain god runs that backend directly on /dev/kvm, much faster"
    return text


class GodArm64Lane(Hypervisor):
    name = "god-arm64"
    description = lane_description(host_arch())
    arch = "aarch64"
    accels: tuple[Accel, ...] = ("tcg",)
    process_also_runs = "a client of the shared ARM64 lane (QEMU TCG), where god and its guest run"
    one_worker = True  # the session's one ARM64 lane takes 13-80 s to boot (docs/lane.md)
    shared_across_modules = True  # god's boot inside the lane is ~4.5 s
    # Disks come from the host's / over read-only 9p; a writable one is copied into the lane.
    provides = frozenset({"blk"})

    def problem(self, host: HostInfo) -> str:
        qemu = host.tool(ARM64_QEMU)
        if qemu is None:
            return f"{ARM64_QEMU} not found on PATH (apt-get install qemu-system-arm)"
        if not Path("/usr/bin/python3.11").exists():
            return "/usr/bin/python3.11 missing (apt-get install python3.11): it compiles the lane's bytecode"
        if not (GOD_SRC / "god").is_dir():
            return f"{GOD_SRC / 'god'} missing: god is shipped into the lane from there"
        return tcg_el2_problem(qemu)

    def recipes(self, host: HostInfo) -> tuple[ImageRecipe, ...]:
        return (lane_arm64_recipe(), god_layer_recipe())

    def god_request(self, spec: BootSpec, run_dir: Path) -> dict:
        """god's command line in the lane and the writable disks to copy into it first."""
        argv = god_run_argv(spec, ["python3", "-u", "-S"], place=in_lane, run_dir=run_dir, args_key=self.name)
        copy: list[list[str]] = []
        for i, word in enumerate(argv):
            if i > 0 and argv[i - 1] == "--disk" and not word.endswith(",ro"):
                lane_copy = f"disk{len(copy)}-{Path(word).name}"  # relative: the server's scratch dir
                copy.append([word, lane_copy])
                argv[i] = lane_copy
        return {"argv": argv, "copy": copy}

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        image = spec.hypervisor_images.get("lane-arm64") or build(lane_arm64_recipe())
        god = spec.hypervisor_images.get("lane-arm64-god") or build(god_layer_recipe())
        lane = shared_lane(image, god)
        request = run_dir / "lane-request.json"
        request.write_text(json.dumps(self.god_request(spec, run_dir)))
        argv = [sys.executable, "-m", "pytest_vmm.hypervisors.lane_arm64_client", str(lane.ports_dir), str(request)]
        return LaunchPlan(argv=argv, stop="sigterm")


hypervisor = GodArm64Lane()
