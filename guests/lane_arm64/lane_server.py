"""The ARM64 lane's server: one lane boot, many god machines (standard library only).

Runs in the lane (``/lane/server.py``, started by /init for ``lane.server`` on the kernel
command line). Each virtio-serial port named ``lane.N`` (/sys/class/virtio-ports) carries one
machine at a time: the host side (pytest_vmm/hypervisors/lane_arm64_client.py) sends a
request, the server starts ``python3 -m god run ...`` as a fresh process with its console on a
pipe, and streams it back until god exits. Frames, both ways: one type byte, a 4-byte
big-endian length, the payload:

    host -> lane   R  request (JSON: {"argv": [...], "copy": [[from, to], ...]})
                   I  console input (bytes for god's stdin)
                   K  stop: SIGTERM to god (SIGKILL after KILL_GRACE_S)
    lane -> host   O  console output
                   X  god is gone (JSON: {"status": N}); sent only after waitpid
                   E  the request failed (text)

When the host side goes away (its end of the port closes) god is killed and reaped. Files god
needs come from the host's / (read-only 9p at /host); a writable disk is copied into the
lane's /tmp first (its changes stay in the lane, as under god-svm) and removed afterwards.

The same file is the host side's codec: FRAME_HEADER, encode() and read_frames() are imported
by the client, so the two ends share one definition of the protocol.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

FRAME_HEADER = struct.Struct(">cI")
KILL_GRACE_S = 10.0
PORTS_DIR = "/sys/class/virtio-ports"
PORT_PREFIX = "lane."
READY_LINE = "@@lane-server ready"


def encode(kind: bytes, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Accumulates bytes, yields complete (kind, payload) frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        frames = []
        while len(self.buf) >= FRAME_HEADER.size:
            kind, n = FRAME_HEADER.unpack_from(self.buf)
            if len(self.buf) < FRAME_HEADER.size + n:
                break
            frames.append((kind, bytes(self.buf[FRAME_HEADER.size:FRAME_HEADER.size + n])))
            del self.buf[:FRAME_HEADER.size + n]
        return frames


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def log(msg: str) -> None:
    print(f"lane-server: {msg}", flush=True)


class Port:
    def __init__(self, name: str, dev: str) -> None:
        self.name, self.dev, self.serial = name, dev, 0

    def serve(self) -> None:
        while True:
            try:
                self.one_session()
            except Exception as exc:  # noqa: BLE001 - a broken session must not end the port
                log(f"{self.name}: {exc!r}")
                time.sleep(0.5)

    def one_session(self) -> None:
        """Wait for a request, run one god, report its exit."""
        fd = os.open(self.dev, os.O_RDWR)
        try:
            reader = FrameReader()
            request = None
            while request is None:
                select.select([fd], [], [])
                data = os.read(fd, 65536)
                if not data:  # no host connected: poll again
                    time.sleep(0.2)
                    continue
                frames = reader.feed(data)
                while frames and request is None:
                    kind, payload = frames.pop(0)
                    if kind == b"R":
                        request = json.loads(payload)
            self.run(fd, reader, request, frames)
        finally:
            os.close(fd)

    def run(self, fd: int, reader: FrameReader, request: dict, early: list[tuple[bytes, bytes]]) -> None:
        """Run one god for ``request``; ``early``: frames that came with the request."""
        self.serial += 1
        scratch = f"/tmp/{self.name}-{self.serial}"
        os.makedirs(scratch, exist_ok=True)
        try:
            for src, dst in request.get("copy", []):
                shutil.copyfile(src, dst)
            env = {**os.environ, **request.get("env", {})}
            proc = subprocess.Popen(request["argv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, cwd=scratch,
                                    start_new_session=True)
        except (OSError, KeyError, ValueError) as exc:
            write_all(fd, encode(b"E", f"cannot start god: {exc}".encode()))
            shutil.rmtree(scratch, ignore_errors=True)
            return
        assert proc.stdin is not None and proc.stdout is not None
        out = proc.stdout.fileno()
        kill_at = None
        host_gone = False
        pending = list(early)
        try:
            while True:
                for kind, payload in pending:
                    if kind == b"I":
                        try:
                            proc.stdin.write(payload)
                            proc.stdin.flush()
                        except OSError:
                            pass
                    elif kind == b"K" and kill_at is None:
                        os.killpg(proc.pid, signal.SIGTERM)
                        kill_at = time.monotonic() + KILL_GRACE_S
                pending = []
                fds = [out] + ([] if host_gone else [fd])
                ready, _, _ = select.select(fds, [], [], 0.5)
                if kill_at is not None and time.monotonic() > kill_at and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                if out in ready:
                    data = os.read(out, 65536)
                    if not data:
                        break
                    if not host_gone:
                        try:
                            write_all(fd, encode(b"O", data))
                        except OSError:
                            host_gone = True
                if fd in ready and not host_gone:
                    data = os.read(fd, 65536)
                    if not data:  # the host side closed: the machine is stopped
                        host_gone = True
                        os.killpg(proc.pid, signal.SIGKILL)
                        continue
                    pending = reader.feed(data)
            status = proc.wait()
            try:  # god's group, in case god left a child behind
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
        status = status if status >= 0 else 128 - status
        if not host_gone:
            try:
                write_all(fd, encode(b"X", json.dumps({"status": status}).encode()))
            except OSError:
                pass


def find_ports() -> list[Port]:
    ports = []
    for vport in sorted(os.listdir(PORTS_DIR)) if os.path.isdir(PORTS_DIR) else []:
        try:
            with open(f"{PORTS_DIR}/{vport}/name") as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith(PORT_PREFIX):
            ports.append(Port(name, f"/dev/{vport}"))
    return ports


def main() -> int:
    ports = find_ports()
    if not ports:
        log(f"error: no virtio-serial port named {PORT_PREFIX}N")
        return 2
    for port in ports:
        threading.Thread(target=port.serve, name=port.name, daemon=True).start()
    print(f"{READY_LINE} ports={len(ports)}", flush=True)
    threading.Event().wait()  # the lane ends when its QEMU is stopped
    return 0


if __name__ == "__main__":
    sys.exit(main())
