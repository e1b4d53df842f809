"""The end of `god run` that both architectures share: report a host error, or run the built
machine until it exits, with SIGINT/SIGTERM/SIGHUP asking it to stop cleanly."""

from __future__ import annotations

import signal
import sys

from god.devices.console import Console
from god.machine_base import MachineBase
from god.vcpu.runner import STATUS_HOST_ERROR, STATUS_OK, VmExit


def host_error(e: BaseException, console: Console | None = None, machine: MachineBase | None = None) -> int:
    """Close what was opened so far and say what went wrong: god's host-error status."""
    if console is not None:
        console.close()
    if machine is not None:
        machine.close()
    print(f"god: error: {e}", file=sys.stderr)
    return STATUS_HOST_ERROR


def run_until_exit(machine: MachineBase, stats: bool = False) -> int:
    """Run ``machine`` to its exit, close it, print why it stopped (and with ``stats`` its
    device counters, one `god: stats:` line); its status is god's."""
    def on_signal(signum: int, frame: object) -> None:
        machine.request_stop(VmExit(STATUS_OK, f"terminating on signal {signum}", "signal"))

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        result = machine.run()
    finally:
        machine.close()
    if result.message:
        print(f"god: {result.message}", file=sys.stderr)
    if stats:
        figures = " ".join(f"{k}={v}" for k, v in machine.stats().items())
        print(f"god: stats: {figures or 'none'}", file=sys.stderr)
        for runner in machine.runners:
            if runner.stopped_at:
                print(f"god: vCPU {runner.vcpu.index} stopped {runner.stopped_at}", file=sys.stderr)
    return result.status
