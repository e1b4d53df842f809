#!/usr/bin/env python3
"""zigu ABI call rates: host-side (ctypes on libzigu_abi.so, and native) and in-guest
(QEMU microvm: raw trap rate inside the guest, and end-to-end over the ABI channel).
Goals (DESIGN.md): host-side >= 5,000 calls/s, in guest >= 500 calls/s.

    python benchmarks/abi.py [--guest/--no-guest] [--n N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZIGU = ROOT / "guests" / "zigu"
sys.path.insert(0, str(ROOT))
from pytest_vmm.report.metrics import add_json_argument, emit, open_json

sys.path.insert(0, str(ZIGU / "adapter" / "python-3.12"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--guest", action=argparse.BooleanOptionalAction, default=True)
    add_json_argument(ap)
    a = ap.parse_args()
    open_json(a.json)
    import ukernel_abi
    from ukernel_abi import UK

    abi = ukernel_abi.HostAbi()
    abi.reset(UK.WL_DEFAULT)
    h = abi.acquire(UK.CAP_TIME)
    abi.enter([h])
    t = time.perf_counter()
    for _ in range(a.n):
        abi.lib.uk_time_now()
    host_ctypes = a.n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(a.n // 4):
        abi.kind(h)
        abi.active()
        abi.syscall(UK.SYS_LOG_WRITE, 0, 0)  # denied: LOG not active
        abi.now()
    host_mixed = a.n / (time.perf_counter() - t)
    t = time.perf_counter()
    abi.bench(a.n * 50, UK.SYS_CAP_ACTIVE)
    host_native = a.n * 50 / (time.perf_counter() - t)
    print(f"abi host ctypes time_now:        {host_ctypes:12,.0f} calls/s  (goal >= 5,000)")
    print(f"abi host ctypes mixed (driver):  {host_mixed:12,.0f} calls/s")
    print(f"abi host native dispatch:        {host_native:12,.0f} calls/s")
    emit("calls_per_s", host_ctypes, "calls/s", "host", path="ctypes", call="time_now")
    emit("calls_per_s", host_mixed, "calls/s", "host", path="ctypes", call="mixed")
    emit("calls_per_s", host_native, "calls/s", "host", path="native", call="cap_active")
    if not a.guest:
        return 0
    from ukernel_channel import QemuGuest

    elf = ZIGU / "zig-out" / "bin" / "zigu.elf"
    if not elf.exists():
        ukernel_abi.build_library()
    with QemuGuest(elf) as g:
        ga = g.abi()
        ga.reset(UK.WL_DEFAULT)
        last, ns = ga.bench(2000, UK.SYS_CAP_ACTIVE)
        in_guest = 2000 / (ns / 1e9)
        hh = ga.acquire(UK.CAP_TIME)
        ga.enter([hh])
        last, ns = ga.bench(2000, UK.SYS_TIME_NOW)
        in_guest_now = 2000 / (ns / 1e9)
        ops = ["active", "policy", f"kind {hh}", "now"] * 10
        rounds = 30
        t = time.perf_counter()
        for _ in range(rounds):
            ga.request(*ops)
        chan_batch = rounds * len(ops) / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(100):
            ga.active()
        chan_single = 100 / (time.perf_counter() - t)
        print(f"abi guest trap (cap_active):     {in_guest:12,.0f} calls/s  (goal >= 500; {g.accel}, ud2 gate, ring 0 emulated under PVM)")
        print(f"abi guest trap (time_now):       {in_guest_now:12,.0f} calls/s")
        print(f"abi guest channel, 40 ops/line:  {chan_batch:12,.0f} calls/s  (host -> serial -> ring 3 -> kernel -> serial)")
        print(f"abi guest channel, 1 op/line:    {chan_single:12,.0f} calls/s")
        print(f"zigu boot to ready:              {g.boot_s * 1000:12,.0f} ms")
        emit("calls_per_s", in_guest, "calls/s", "zigu", path="trap", call="cap_active")
        emit("calls_per_s", in_guest_now, "calls/s", "zigu", path="trap", call="time_now")
        emit("calls_per_s", chan_batch, "calls/s", "zigu", path="channel", call="40 ops/line")
        emit("calls_per_s", chan_single, "calls/s", "zigu", path="channel", call="1 op/line")
        emit("boot_ms", g.boot_s * 1000, "ms", "zigu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
