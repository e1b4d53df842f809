"""Host side of one god machine in the shared ARM64 lane: the process a Machine runs.

    python -m pytest_vmm.hypervisors.lane_arm64_client PORTS_DIR REQUEST.json

Takes a free port of the running lane (an flock on PORTS_DIR/lane.N.lock, held for this
process's life), connects to its Unix socket (QEMU's end of the virtio-serial port), sends the
request (god's command line) and then is that machine: stdin is god's console input, stdout
its console output, the exit status god's. SIGTERM asks the lane server to stop god
(SIGTERM, then SIGKILL) and waits until the server reports god reaped. Protocol: the frame
codec of guests/lane_arm64/lane_server.py (one definition, both ends).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from types import ModuleType

from pytest_vmm.stacks._common import guest_dir

NO_PORT_STATUS = 70     # every port busy (or the lane is not running)
LANE_ERROR_STATUS = 71  # the lane server could not start god / the lane went away


def codec() -> ModuleType:
    path = guest_dir("lane_arm64") / "lane_server.py"
    spec = importlib.util.spec_from_file_location("lane_arm64_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def take_port(ports_dir: Path, wait_s: float = 60.0) -> tuple[int, Path]:
    deadline = time.monotonic() + wait_s
    while True:
        for lock in sorted(ports_dir.glob("lane.*.lock")):
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd, lock.with_suffix(".sock")
            except BlockingIOError:
                os.close(fd)
        if time.monotonic() > deadline:
            raise SystemExit(NO_PORT_STATUS)
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    ports_dir, request_file = Path(argv[0]), Path(argv[1])
    proto = codec()
    lock_fd, sock_path = take_port(ports_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(sock_path))
    except OSError as exc:
        print(f"lane-arm64: cannot reach the lane at {sock_path}: {exc}", file=sys.stderr)
        return LANE_ERROR_STATUS
    stop_requested = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    sock.sendall(proto.encode(b"R", request_file.read_bytes()))
    reader = proto.FrameReader()
    stdin_open = True
    stop_sent = False
    out = sys.stdout.buffer
    try:
        while True:
            if stop_requested and not stop_sent:
                sock.sendall(proto.encode(b"K", b""))
                stop_sent = True
            fds = [sock] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.5)
            except InterruptedError:
                continue
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    sock.sendall(proto.encode(b"I", data))
                else:
                    stdin_open = False
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    print("lane-arm64: the lane closed the port (lane stopped?)", file=sys.stderr)
                    return LANE_ERROR_STATUS
                for kind, payload in reader.feed(data):
                    if kind == b"O":
                        out.write(payload)
                        out.flush()
                    elif kind == b"X":
                        return int(json.loads(payload)["status"])
                    elif kind == b"E":
                        print(f"lane-arm64: {payload.decode(errors='replace')}", file=sys.stderr)
                        return LANE_ERROR_STATUS
    finally:
        sock.close()
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
