#!/usr/bin/env python3
"""A test-double VMM for command templates (tests/test_template.py): prints the argv it got as
JSON, then behaves like a booted guest console (``fake: ready``; ``ping N`` -> ``pong N``).

Options: --mode ok|silent|socket|usr1, --console-sock PATH (socket mode: serve the console
there, waiting for the connection), everything else is recorded and ignored.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time


def serve(read, write) -> None:  # read() -> bytes, write(bytes)
    buffer = b""
    while True:
        chunk = read()
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            words = line.strip().split()
            if words[:1] == [b"ping"]:
                write(b"pong " + b" ".join(words[1:]) + b"\n")
            elif words[:1] == [b"exit"]:
                sys.exit(int(words[1]))


def option(name: str, default: str = "") -> str:
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args else default


def main() -> None:
    mode = option("--mode", "ok")
    banner = b"template-vmm: argv=" + json.dumps(sys.argv[1:]).encode() + b"\n"
    if mode == "silent":
        os.write(1, banner)
        for i in range(3):
            os.write(1, f"template-vmm: still booting {i}\n".encode())
        time.sleep(3600)
    if mode == "usr1":
        # Stopped only by the template's stop_command (SIGUSR1), not by the default SIGTERM.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, lambda *_: os._exit(0))
    if mode == "socket":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(option("--console-sock"))
        server.listen(1)
        conn, _ = server.accept()
        conn.sendall(banner + b"fake: ready\n")
        serve(lambda: conn.recv(4096), conn.sendall)
        return
    os.write(1, banner + b"fake: ready\n")
    serve(lambda: os.read(0, 4096), lambda data: os.write(1, data))


if __name__ == "__main__":
    main()
