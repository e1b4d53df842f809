"""Copy stdin to one I/O port, byte by byte: god's stderr out of the SVM lane.

Inside the lane, god's stderr (its ``god:`` warnings, its stop line) would otherwise share the
lane's console with the guest's serial output, where a warning can land inside an agent reply.
The lane's QEMU has an ``isa-debugcon`` at ``--port`` whose chardev is QEMU's stderr on the
host (the machine's hypervisor-stderr.log); this copies its stdin there. A write to
``/dev/port`` of n bytes goes to n consecutive ports, so each byte is written on its own.

Standard library only; the lane runs it as ``python3 lane_port_log.py --port 0x402 <FIFO``.
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=lambda s: int(s, 0), required=True)
    port = ap.parse_args().port
    fd = os.open("/dev/port", os.O_WRONLY)
    while data := os.read(0, 4096):
        for byte in data:
            os.pwrite(fd, bytes((byte,)), port)


if __name__ == "__main__":
    main()
