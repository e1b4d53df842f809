#!/usr/bin/env python3
"""A test-double guest: a local process that behaves like a VM's serial console.

Modes (argv[1]): ok, hang, panic, garbage, die, ignore-term, orphan, slow-boot.
In ``ok`` mode it answers ``ping N`` with ``pong N`` and ``exit N`` by exiting N.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def out(data: bytes) -> None:
    os.write(1, data)


def serve() -> None:
    buffer = b""
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            words = line.strip().split()
            if words[:1] == [b"ping"]:
                out(b"log: noise before the reply\npong " + b" ".join(words[1:]) + b"\n")
            elif words[:1] == [b"exit"]:
                sys.exit(int(words[1]))
            elif words[:1] == [b"panic"]:
                out(b"Kernel panic - not syncing: asked to\n")
            elif words[:1] == [b"metric"]:
                out(b"metric tok_s=42.5\n")


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    out(b"fake firmware\n")
    if mode == "hang":
        time.sleep(3600)
    if mode == "panic":
        out(b"booting...\nKernel panic - not syncing: VFS: Unable to mount root fs\n")
        time.sleep(3600)
    if mode == "garbage":
        out(bytes(range(256)) + b"\xff\xfe\x00\x1b[31m\xc3\x28 not utf-8\n")
        time.sleep(3600)
    if mode == "slow-boot":
        time.sleep(float(sys.argv[2]))
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "orphan":
        # A grandchild that leaves the process group and would outlive its parent.
        child = subprocess.Popen([sys.executable, __file__, "escapee"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while os.getpgid(child.pid) == os.getpgrp() and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until it really left our process group
    if mode == "escapee":
        os.setsid()
        time.sleep(3600)
    if mode == "with-companion":
        assert os.path.exists("backend.sock"), "the companion must be ready before the hypervisor starts"
    out(b"fake: ready\n")
    if mode == "die":
        sys.exit(3)
    if mode == "garbage-after":
        out(b"\x00\x01\x02\xff\xfe invalid \xc3\x28\n")
    serve()


if __name__ == "__main__":
    main()
