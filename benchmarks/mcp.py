#!/usr/bin/env python3
"""MCP over virtio-vsock on microkernelia: request/response round trips per second, per
protocol revision (2025-11-25 after initialize; 2026-07-28 stateless, each request carrying its
``_meta``), directly on the vsock socket and through ``vmm-mcp bridge`` (stdio and Streamable
HTTP); and fuzz frames per second with the oracle's checks included (pytest_vmm.mcp_oracle).
Goals (DESIGN.md): >= 2,000 round trips/s direct on god, fuzzing >= 500 frames/s. Prints,
never asserts.

    python benchmarks/mcp.py [--n 2000] [--fuzz-seconds 5]

With the MCP SDK installed (the ``mcp`` extra) it also times ping through the SDK's
``ClientSession`` over pytest_vmm.mcp_sdk (the SDK's overhead, not the guest's).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This script is named mcp.py: keep its folder off sys.path so `import mcp` finds the SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
from pytest_vmm.report.metrics import add_json_argument, emit, open_json


class Figures:
    """Every figure this script prints, one line each (name, value, unit, goal)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str, str]] = []

    def add(self, name: str, value: float, unit: str = "/s", goal: str = "") -> None:
        self.rows.append((name, value, unit, goal))
        print(f"mcp {name:<44} {value:10,.0f} {unit}" + (f"  ({goal})" if goal else ""), flush=True)


def timed(n: int, call: Callable[[], object]) -> float:
    t = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - t)


def direct(figures: Figures, uds: str, n: int) -> None:
    from pytest_vmm.mcp import MCP_PORT, MODERN_VERSION, PROTOCOL_VERSION, connect

    with connect(uds, MCP_PORT, timeout=30) as c:  # 2026-07-28: no handshake
        c.call_tool("load_model")
        for name, call in [("server/discover", c.discover), ("tools/list", c.list_tools), ("tools/call health", c.health),
                           ("tools/call infer", lambda: c.call_tool("infer", {"prompt": "what is vsock"}))]:
            figures.add(f"direct {MODERN_VERSION} {name}", timed(n, call), goal="goal >= 2,000 on god")
    with connect(uds, MCP_PORT, timeout=30) as c:
        c.initialize(PROTOCOL_VERSION)
        for name, call in [("ping", c.ping), ("tools/list", c.list_tools), ("tools/call health", c.health)]:
            figures.add(f"direct {PROTOCOL_VERSION} {name}", timed(n, call), goal="goal >= 2,000 on god")


def through_bridge(figures: Figures, uds: str, n: int) -> None:
    """tools/call health through vmm-mcp bridge: stdio (one process) and HTTP (one POST each)."""
    import threading
    import urllib.request

    from pytest_vmm.mcp import MCP_PORT, MODERN_VERSION, PROTOCOL_VERSION, with_meta
    from pytest_vmm.mcp_bridge import BridgeHTTPServer

    health = {"name": "health", "arguments": {}}
    proc = subprocess.Popen([sys.executable, "-m", "pytest_vmm.mcp", "bridge", "--uds", uds, "--stdio"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        def line(msg: dict[str, object]) -> None:
            proc.stdin.write(json.dumps(msg).encode() + b"\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            proc.stdout.readline()  # type: ignore[union-attr]

        figures.add(f"stdio bridge {MODERN_VERSION} tools/call health", timed(n, lambda: line(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": with_meta(health)})))
        line({"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}}})
        figures.add(f"stdio bridge {PROTOCOL_VERSION} tools/call health", timed(n, lambda: line(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": health})))
    finally:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
    server = BridgeHTTPServer(uds, MCP_PORT)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        def post(msg: dict[str, object], headers: dict[str, str]) -> urllib.request.Request:
            return urllib.request.Request(server.url, data=json.dumps(msg).encode(), method="POST", headers={
                "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})

        def send(req: urllib.request.Request) -> bytes:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.read()  # type: ignore[no-any-return]

        modern = {"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": "tools/call", "Mcp-Name": "health"}
        figures.add(f"HTTP bridge {MODERN_VERSION} tools/call health", timed(n // 4, lambda: send(post(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": with_meta(health)}, modern))))
        init = urllib.request.urlopen(post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {}}}, {}), timeout=30)
        sid = init.headers["Mcp-Session-Id"]
        init.read()
        legacy = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL_VERSION}
        figures.add(f"HTTP bridge {PROTOCOL_VERSION} tools/call health", timed(n // 4, lambda: send(post(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": health}, legacy))))
    finally:
        server.shutdown()
        server.server_close()


def fuzz(figures: Figures, uds: str, seconds: float) -> None:
    """Frames/s of the fuzz suite's loop: send a batch and a marker, read every answer, check
    the exchange with the oracle (what suites/fuzz/test_mcp_fuzz.py does per example)."""
    from hypothesis import HealthCheck, given, settings

    from pytest_vmm.mcp import MCP_PORT, connect, encode_frame, with_meta
    from pytest_vmm.mcp_oracle import check_exchange
    from pytest_vmm.strategies.mcp import any_frames, is_oversize

    frames: list[bytes] = []

    @settings(max_examples=3000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(any_frames())
    def collect(f: bytes) -> None:
        if not is_oversize(f):
            frames.append(f)

    collect()
    marker = encode_frame({"jsonrpc": "2.0", "id": "bench-end", "method": "server/discover", "params": with_meta(None)})
    sent = problems = 0
    t = time.perf_counter()
    deadline = t + seconds
    while time.perf_counter() < deadline:
        with connect(uds, MCP_PORT, timeout=30) as fc:
            batch = frames[sent % len(frames):][:50]
            fc.send_raw(b"".join(batch) + marker)
            replies = []
            while True:
                reply = json.loads(fc.recv_frame())
                if isinstance(reply, dict) and reply.get("id") == "bench-end":
                    break
                replies.append(reply)
            problems += len(check_exchange(batch, replies, closed=False))
            sent += len(batch)
    figures.add("fuzz frames (oracle checked)", sent / (time.perf_counter() - t), goal="goal >= 500")
    with connect(uds, MCP_PORT, timeout=30) as hc:
        status = hc.health()["status"]
    print(f"mcp fuzz: {problems} oracle problems, health afterwards: {status}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--fuzz-seconds", type=float, default=5.0)
    add_json_argument(ap)
    a = ap.parse_args()

    out = Path(tempfile.mkdtemp(prefix="mk-bench-"))
    subprocess.run([sys.executable, str(ROOT / "guests/microkernelia/build.py"), "--out", str(out),
                    "--target-dir", str(ROOT / "guests/microkernelia/target/kernel")], check=True,
                   stdout=subprocess.DEVNULL)
    uds = out / "vsock.sock"
    god = subprocess.Popen([sys.executable, "-m", "god", "run", str(out / "microkernelia.elf"), "--mem", "128",
                            "--serial", f"file:{out / 'console.log'}", "--disk", f"{out / 'model.img'},ro",
                            "--vsock-uds", str(uds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figures = Figures()
    try:
        deadline = time.monotonic() + 30
        while not uds.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        direct(figures, str(uds), a.n)
        sdk_ping_rate(str(uds), a.n)
        through_bridge(figures, str(uds), a.n)
        fuzz(figures, str(uds), a.fuzz_seconds)
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
        async with vsock_client(uds) as (read, write), ClientSession(read, write) as session:
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
