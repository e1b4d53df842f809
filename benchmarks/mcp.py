#!/usr/bin/env python3
"""MCP over virtio-vsock on microkernelia: request/response round trips per second (ping and
tools/call health, one connection, one request in flight) and fuzz frames per second
(strategy-generated frame sequences, each followed by nothing: the guest answers what it can).
Goals (DESIGN.md): >= 2,000 round trips/s on god, fuzzing >= 500 frames/s. Prints, never asserts.

    python benchmarks/mcp.py [--n 2000] [--fuzz-seconds 5]

With the MCP SDK installed (the ``mcp`` extra) it also times ping through the SDK's
``ClientSession`` over pytest_vmm.mcp_sdk (the bridge's overhead, not the guest's).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This script is named mcp.py: keep its folder off sys.path so `import mcp` finds the SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
from pytest_vmm.report.metrics import add_json_argument, emit, open_json


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--fuzz-seconds", type=float, default=5.0)
    add_json_argument(ap)
    a = ap.parse_args()
    open_json(a.json)
    from pytest_vmm.mcp import connect, encode_frame

    out = Path(tempfile.mkdtemp(prefix="mk-bench-"))
    subprocess.run([sys.executable, str(ROOT / "guests/microkernelia/build.py"), "--out", str(out),
                    "--target-dir", str(ROOT / "guests/microkernelia/target/kernel")], check=True,
                   stdout=subprocess.DEVNULL)
    uds = out / "vsock.sock"
    god = subprocess.Popen([sys.executable, "-m", "god", "run", str(out / "microkernelia.elf"), "--mem", "128",
                            "--serial", f"file:{out / 'console.log'}", "--disk", f"{out / 'model.img'},ro",
                            "--vsock-uds", str(uds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = connect(str(uds), 5000, timeout=30)
        c.initialize()
        c.call_tool("load_model")
        for name, call in [("ping", c.ping), ("tools/call health", c.health),
                           ("tools/call infer", lambda: c.call_tool("infer", {"prompt": "what is vsock"}))]:
            t = time.perf_counter()
            for _ in range(a.n):
                call()
            rate = a.n / (time.perf_counter() - t)
            print(f"mcp round trips {name:<20} {rate:10,.0f} /s  (goal >= 2,000 on god)")
            emit("round_trips_per_s", rate, "round trips/s", "microkernelia@god", call=name)
        c.close()
        sdk_ping_rate(str(uds), a.n)

        from hypothesis import HealthCheck, given, settings

        from pytest_vmm.strategies.mcp import any_frames, is_oversize

        frames: list[bytes] = []

        @settings(max_examples=3000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(any_frames())
        def collect(f: bytes) -> None:
            if not is_oversize(f):
                frames.append(f)

        collect()
        sent = 0
        t = time.perf_counter()
        deadline = t + a.fuzz_seconds
        while time.perf_counter() < deadline:
            with connect(str(uds), 5000, timeout=30) as fc:
                batch = frames[sent % len(frames):][:50]
                marker = encode_frame({"jsonrpc": "2.0", "id": "bench-end", "method": "ping"})
                fc.send_raw(b"".join(batch) + marker)
                # Replies come in order: once the marker is answered, the batch was processed.
                while json.loads(fc.recv_frame()).get("id") != "bench-end":
                    pass
                sent += len(batch)
        rate = sent / (time.perf_counter() - t)
        with connect(str(uds), 5000, timeout=30) as hc:
            status = hc.health()["status"]
        print(f"mcp fuzz frames                      {rate:10,.0f} /s  (goal >= 500), health afterwards: {status}")
        emit("fuzz_frames_per_s", rate, "frames/s", "microkernelia@god")
    finally:
        god.terminate()
        god.wait(10)
        shutil.rmtree(out, ignore_errors=True)
    return 0


def sdk_ping_rate(uds: str, n: int) -> None:
    try:
        import anyio
        from mcp import ClientSession

        from pytest_vmm.mcp_sdk import vsock_client
    except ImportError:
        print("mcp round trips via the MCP SDK: skipped (pip install 'pytest-vmm[mcp]')")
        return

    async def run() -> float:
        async with vsock_client(uds, 5000) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            t = time.perf_counter()
            for _ in range(n):
                await session.send_ping()
            return n / (time.perf_counter() - t)

    rate = anyio.run(run)
    print(f"mcp round trips {'ping via MCP SDK':<20} {rate:10,.0f} /s  (the SDK's own cost included)")
    emit("round_trips_per_s", rate, "round trips/s", "microkernelia@god", call="ping via MCP SDK")


if __name__ == "__main__":
    sys.exit(main())
