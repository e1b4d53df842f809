"""vsock figures: round trips/s and MB/s through the hybrid host socket, for god (its own
virtio-mmio vsock) and QEMU + god's vhost-user back-end, against the echo service of the
virtio test guest (guests/god/tests/virtio/guest). Prints figures; asserts nothing.

    nice python benchmarks/vsock.py [--seconds 3] [--only god|qemu]

Goals (docs/virtio.md): >= 2,000 round trips/s and >= 20 MB/s on god.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "guests" / "god" / "tests" / "virtio"))
sys.path.insert(0, str(ROOT))

import vguest
from test_guest_qemu import qemu_argv, start_backend, stop

from pytest_vmm import vsock as hv
from pytest_vmm.report.metrics import add_json_argument, emit, open_json


def round_trips(uds: Path, seconds: float, size: int = 64) -> float:
    msg = b"r" * size
    with hv.connect(uds, 1024, timeout=30) as s:
        s.settimeout(30)  # a lost echo fails the run instead of hanging it
        for _ in range(20):  # warm up
            s.sendall(msg)
            hv.recv_exact(s, size)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            s.sendall(msg)
            hv.recv_exact(s, size)
            n += 1
        return n / (time.perf_counter() - t0)


def throughput(uds: Path, seconds: float, chunk: int = 256 * 1024) -> float:
    """Echo throughput: bytes that went to the guest and came back, per second (one way)."""
    data = bytes(range(256)) * (chunk // 256)
    got = [0]
    stop_at = time.perf_counter() + seconds
    with hv.connect(uds, 1024, timeout=30) as s:
        s.settimeout(30)

        def reader() -> None:
            while True:
                try:
                    b = s.recv(1 << 20)
                except OSError:
                    return
                if not b:
                    return
                got[0] += len(b)

        t = threading.Thread(target=reader, daemon=True)
        t0 = time.perf_counter()
        t.start()
        sent = 0
        while time.perf_counter() < stop_at:
            s.sendall(data)
            sent += len(data)
        while got[0] < sent and time.perf_counter() < stop_at + 30:
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        s.shutdown(socket.SHUT_WR)
    return got[0] / elapsed / 1e6


def bench(name: str, argv_for, elf: Path, seconds: float) -> None:
    d = Path(tempfile.mkdtemp(prefix="vbench-"))
    uds = d / "v.sock"
    backend = None
    try:
        if name.startswith("qemu"):
            backend = start_backend(d, uds, 3)
        with vguest.Guest(argv_for(elf, d), d, uds) as g:
            g.wait_for("VGUEST READY", 60)
            rt = round_trips(uds, seconds)
            mb = throughput(uds, seconds)
        print(f"{name:<18} {rt:>10,.0f} round trips/s   {mb:>8.1f} MB/s")
        emit("round_trips_per_s", rt, "round trips/s", name, size="64 B")
        emit("throughput_mb_per_s", mb, "MB/s", name, size="256 KiB")
    finally:
        if backend is not None:
            stop(backend)
        shutil.rmtree(d, ignore_errors=True)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(1)  # unwind the with-blocks: no VM or back-end is left running


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--only", choices=("god", "qemu"))
    add_json_argument(p)
    a = p.parse_args()
    open_json(a.json)
    out = Path(tempfile.mkdtemp(prefix="vbench-elf-"))
    try:
        elf = vguest.build(out)
        print(f"vsock echo over the hybrid socket, 64-byte round trips and 256 KiB writes, "
              f"{a.seconds:g} s each")
        if a.only in (None, "god"):
            bench("god", lambda e, d: vguest.god_argv(e, d / "v.sock"), elf, a.seconds)
        if a.only in (None, "qemu") and shutil.which("qemu-system-x86_64"):
            bench("qemu+vhost-user", lambda e, d: qemu_argv(e, d / "vu.sock", ""), elf, a.seconds)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
