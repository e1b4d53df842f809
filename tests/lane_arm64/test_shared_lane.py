"""The shared ARM64 lane: one lane boot, many machines, each with a fresh process and no leftovers.

These check the lane's plumbing (pytest_vmm/hypervisors/lane_arm64*.py and the lane server)
with plain commands in place of god: a machine's console reaches the host as the client's
stdout, its input reaches the process, its exit status is the client's, a stop (SIGTERM to
the client) leaves no process in the lane, and the lane itself is stopped with nothing left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors import lane_arm64, lane_arm64_hv

pytestmark = pytest.mark.skipif(bool(problem := lane_arm64_hv.hypervisor.problem(HostInfo.detect())),
                                reason=problem or "")


@pytest.fixture(scope="module")
def lane():
    image = lane_arm64.build(lane_arm64.lane_arm64_recipe())
    god = lane_arm64.build(lane_arm64.god_layer_recipe())
    shared = lane_arm64.SharedLane(image, god)
    try:
        shared.wait_ready()
        yield shared
    finally:
        leaks = shared.stop()
    assert leaks == []
    assert not shared.dir.exists()


def machine(lane: lane_arm64.SharedLane, tmp_path: Path, argv: list[str], name: str = "m") -> subprocess.Popen:
    request = tmp_path / f"{name}.json"
    request.write_text(json.dumps({"argv": argv, "copy": []}))
    return subprocess.Popen([sys.executable, "-m", "pytest_vmm.hypervisors.lane_arm64_client",
                             str(lane.ports_dir), str(request)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lane_ps(lane: lane_arm64.SharedLane, tmp_path: Path, needle: str) -> list[str]:
    """Processes in the lane whose command line holds ``needle`` (ps through a machine)."""
    p = machine(lane, tmp_path, ["sh", "-c", "ps -o pid,args"], "ps")
    out, _ = p.communicate(timeout=120)
    return [line for line in out.decode().splitlines() if needle in line and "ps -o" not in line]


def test_console_status_and_input(lane, tmp_path):
    p = machine(lane, tmp_path, ["sh", "-c", "read line; echo got:$line; uname -m; exit 7"])
    out, err = p.communicate(b"hello\n", timeout=120)
    assert p.returncode == 7, err
    assert b"got:hello" in out and b"aarch64" in out


def test_each_machine_is_a_fresh_process_and_sees_dev_kvm(lane, tmp_path):
    pids = []
    for i in range(2):
        p = machine(lane, tmp_path, ["sh", "-c", "echo pid=$$; test -c /dev/kvm"], f"m{i}")
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (out, err)
        pids.append(out.decode().split("pid=")[1].split()[0])
    assert pids[0] != pids[1]


def test_concurrent_machines(lane, tmp_path):
    ps = [machine(lane, tmp_path, ["sh", "-c", f"sleep 1; echo m{i}"], f"c{i}") for i in range(3)]
    outs = [p.communicate(timeout=180) for p in ps]
    assert [p.returncode for p in ps] == [0, 0, 0]
    assert [o.strip() for o, _ in outs] == [b"m0", b"m1", b"m2"]


def test_stop_kills_and_reaps_the_process_in_the_lane(lane, tmp_path):
    p = machine(lane, tmp_path, ["sh", "-c", "echo started; exec sleep 4242"], "stop")
    assert p.stdout is not None
    assert p.stdout.readline() == b"started\n"
    p.send_signal(signal.SIGTERM)
    status = p.wait(timeout=60)
    assert status == 128 + signal.SIGTERM  # the lane server's status for a killed process
    assert lane_ps(lane, tmp_path, "sleep 4242") == []


@pytest.mark.xfail(strict=False, reason="known bug: in one fresh-clone run on a loaded host the next "
                   "machine after a killed client never finished (lane_ps timed out at 120 s); "
                   "the lane server's port reuse after a host-side kill is not yet understood")
def test_client_killed_outright_still_frees_the_lane(lane, tmp_path):
    p = machine(lane, tmp_path, ["sh", "-c", "echo started; exec sleep 4343"], "kill")
    assert p.stdout is not None and p.stdout.readline() == b"started\n"
    p.kill()
    p.wait(timeout=30)
    # Each lane_ps is a machine start in the TCG lane: seconds apiece on a loaded host (one
    # fresh-clone run here timed out at 60 s with a second lane running beside it).
    deadline = time.monotonic() + 150
    while lane_ps(lane, tmp_path, "sleep 4343") and time.monotonic() < deadline:
        time.sleep(1)
    assert lane_ps(lane, tmp_path, "sleep 4343") == []


def test_host_files_are_visible_read_only(lane, tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("from the host\n")
    p = machine(lane, tmp_path, ["sh", "-c", f"cat /host{f}; echo x > /host{f}.new && echo WROTE"], "fs")
    out, _ = p.communicate(timeout=120)
    assert b"from the host" in out and b"WROTE" not in out
    assert not Path(f"{f}.new").exists()
    assert os.path.exists(f)
