#!/usr/bin/env python3
"""The ARM64 lane: lane boot, the arm64 probe's boot on god inside it, MMIO exits/s, each
compared in the same run with QEMU virt TCG running the same guest directly.

    python benchmarks/arm64_lane.py [--n 5000] [--boots 3] [--god-src PATH] [--json PATH]

- lane boot: QEMU start to the lane server's ready line (Debian arm64 6.1, KVM in VHE mode,
  python3.11, the 9p and virtio-serial modules): the fixed cost a session pays once.
- probe boot: spawn of the machine's process to the agent's ready line, for the arm64 probe
  (guests/probe/aarch64) on god@god-arm64 (a fresh god in the running lane, through its
  client) and on QEMU virt TCG (qemu-system-aarch64 -M virt,gic-version=3 -cpu max).
- MMIO exits/s: guests/lane_arm64/mmioloop.S reads UARTFR N times between an "S" and an "E"
  line; the host timestamps both lines on the process's stdout, the same way for both.

Prints figures (and --json samples); asserts nothing. Under TCG every figure depends on the
host's load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pytest_vmm.agent.protocol import READY_REGEX
from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
from pytest_vmm.hypervisors import lane_arm64
from pytest_vmm.report.metrics import add_json_argument, emit, open_json

CC, OBJCOPY = "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-objcopy"
LOOP_SRC = ROOT / "guests" / "lane_arm64" / "mmioloop.S"
QEMU_VIRT = ["qemu-system-aarch64", "-M", "virt,gic-version=3", "-cpu", "max", "-accel", "tcg",
             "-display", "none", "-nodefaults", "-no-user-config", "-no-reboot",
             "-chardev", "stdio,id=c,signal=off", "-serial", "chardev:c", "-monitor", "none"]


def build_loop(tmp: Path, n: int) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    elf, raw = tmp / "mmioloop.elf", tmp / "mmioloop.bin"
    subprocess.run([CC, "-nostdlib", "-static", "-Wl,-N", "-Wl,-Ttext=0x40080000", "-Wl,--build-id=none",
                    "-Wl,--no-warn-rwx-segments", f"-DCOUNT={n}", "-o", str(elf), str(LOOP_SRC)], check=True)
    subprocess.run([OBJCOPY, "-O", "binary", str(elf), str(raw)], check=True)
    return raw


def probe_image() -> Path | None:
    try:
        from pytest_vmm.stacks.god import aarch64_recipe
    except ImportError:
        return None
    return ArtifactCache(DEFAULT_CACHE_ROOT).build(aarch64_recipe()).file("probe.img")


def watch(argv: list[str], patterns: list[bytes], timeout_s: float) -> dict[bytes, float]:
    """Start ``argv``; seconds from spawn to each pattern on stdout; then stop it (SIGTERM)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = bytearray()
    seen: dict[bytes, float] = {}
    try:
        while len(seen) < len(patterns) and time.monotonic() - t0 < timeout_s:
            if not sel.select(1.0):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            now = time.monotonic() - t0
            out += chunk
            for p in patterns:
                if p not in seen and re.search(p, out):
                    seen[p] = now
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc.stdout.close()
    if len(seen) < len(patterns):
        missing = [p.decode() for p in patterns if p not in seen]
        raise RuntimeError(f"no {missing} within {timeout_s:.0f} s; output tail: "
                           f"{bytes(out[-400:]).decode(errors='replace')!r}")
    return seen


def lane_machine_argv(lane: lane_arm64.SharedLane, tmp: Path, god_argv: list[str], tag: str) -> list[str]:
    request = tmp / f"{tag}.json"
    request.write_text(json.dumps({"argv": god_argv, "copy": []}))
    return [sys.executable, "-m", "pytest_vmm.hypervisors.lane_arm64_client", str(lane.ports_dir), str(request)]


def god_in_lane(kernel: Path, cpus: int) -> list[str]:
    return ["python3", "-u", "-S", "-m", "god", "run", f"/host{kernel.resolve()}", "--mem", "64",
            "--cpus", str(cpus), "--serial", "stdio"]


def qemu_direct(kernel: Path, cpus: int) -> list[str]:
    return [*QEMU_VIRT, "-m", "64", "-smp", str(cpus), "-kernel", str(kernel)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="MMIO reads in god's loop (default %(default)s)")
    ap.add_argument("--qemu-n", type=int, default=5_000_000,
                    help="MMIO reads in QEMU's loop: TCG's device model is ~10^4 x faster (default %(default)s)")
    ap.add_argument("--boots", type=int, default=3, help="probe boots per target (default %(default)s)")
    ap.add_argument("--god-src", type=Path, default=lane_arm64.GOD_SRC, help="god's sources for the lane")
    add_json_argument(ap)
    a = ap.parse_args()
    open_json(a.json)
    print(f"# ARM64 lane benchmark; load average {os.getloadavg()[0]:.1f} (2 shared cores: TCG figures vary with it)")
    image = lane_arm64.build(lane_arm64.lane_arm64_recipe())
    god = lane_arm64.build(lane_arm64.god_layer_recipe(a.god_src.resolve()))
    with tempfile.TemporaryDirectory(prefix="arm64-lane-bench-") as d:
        tmp = Path(d)
        loops = {"god@god-arm64": (build_loop(tmp / "god", a.n), a.n),
                 "qemu-virt-tcg": (build_loop(tmp / "qemu", a.qemu_n), a.qemu_n)}
        probe = probe_image()
        lane = lane_arm64.SharedLane(image, god)
        try:
            boot = lane.wait_ready()
            print(f"lane boot (QEMU start to lane server ready): {boot:.1f} s")
            emit("lane_boot_s", boot, "s", "god-arm64")
            targets = {"god@god-arm64": lambda k, c, t: lane_machine_argv(lane, tmp, god_in_lane(k, c), t),
                       "qemu-virt-tcg": lambda k, c, t: qemu_direct(k, c)}
            if probe is None:
                print("probe boot: the arm64 probe is not in this checkout (pytest_vmm.stacks.god.aarch64_recipe)")
            else:
                for name, make in targets.items():
                    times = []
                    for i in range(a.boots):
                        try:
                            seen = watch(make(probe, 2, f"probe{i}"), [READY_REGEX.encode()], 300)
                        except RuntimeError as e:
                            print(f"probe boot on {name}: failed: {e}")
                            break
                        times.append(seen[READY_REGEX.encode()])
                        emit("probe_boot_s", times[-1], "s", name)
                    if times:
                        print(f"probe boot on {name} (spawn to agent ready): best {min(times):.2f} s, "
                              f"all {', '.join(f'{t:.2f}' for t in times)}")
            rates = {}
            for name, make in targets.items():
                loop, n = loops[name]
                try:
                    seen = watch(make(loop, 1, "loop"), [rb"S\r?\n", rb"E\r?\n"], 900)
                except RuntimeError as e:
                    print(f"MMIO loop on {name}: failed: {e}")
                    continue
                dt = seen[rb"E\r?\n"] - seen[rb"S\r?\n"]
                rates[name] = n / dt
                emit("mmio_exits_per_s", rates[name], "exits/s", name)
                print(f"MMIO reads on {name}: {rates[name]:,.0f}/s ({1e6 / rates[name]:.3f} us each, "
                      f"{n} in {dt:.2f} s)")
            if len(rates) == 2:
                print(f"qemu-virt-tcg / god@god-arm64 MMIO rate: "
                      f"{rates['qemu-virt-tcg'] / rates['god@god-arm64']:,.0f}x")
        finally:
            leaks = lane.stop()
            if leaks:
                print("lane left things behind: " + "; ".join(leaks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
