"""Run a VMM whose serial console is a Unix socket it serves, as if the console were stdio.

    python -m pytest_vmm.hypervisors.console_bridge SOCKET -- VMM ARGV...

The machine gives every hypervisor a pty as stdio. This process forks: the child relays
SOCKET <-> the pty, and the parent *execs the VMM*, so the machine's pid, signals, exit
status and CPU time are the VMM's own. The VMM's stdout goes to stderr (the hypervisor log),
not the console. The relay connects as soon as the VMM creates the socket; a VMM should wait
for that connection before it starts the guest (QEMU: ``server=on,wait=on``), or the first
console bytes are lost.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time

CONNECT_TIMEOUT_S = 120.0


def relay(path: str, console_fd: int, input_fd: int, vmm_pid: int) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            sock.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if os.getppid() != vmm_pid or time.monotonic() > deadline:
                return  # the VMM is gone, or never served its console
            time.sleep(0.02)
    while True:
        ready, _, _ = select.select([sock.fileno(), input_fd], [], [], 0.5)
        if sock.fileno() in ready:
            data = sock.recv(65536)
            if not data:
                return
            os.write(console_fd, data)
        if input_fd in ready:
            data = os.read(input_fd, 65536)
            if not data:
                return
            sock.sendall(data)
        if not ready and os.getppid() != vmm_pid:
            return


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m pytest_vmm.hypervisors.console_bridge SOCKET -- VMM ARGV...")
    path, vmm = argv[0], argv[2:]
    console_fd, input_fd = os.dup(1), os.dup(0)
    vmm_pid = os.getpid()
    if os.fork() == 0:
        try:
            relay(path, console_fd, input_fd, vmm_pid)
        finally:
            os._exit(0)
    os.close(console_fd)
    os.close(input_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    try:
        os.execvp(vmm[0], vmm)
    except OSError as exc:
        sys.stderr.write(f"console_bridge: cannot start {vmm[0]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
