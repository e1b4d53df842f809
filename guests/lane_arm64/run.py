"""Developer command: boot the ARM64 lane with god from a source tree and run a command in it.

    python guests/lane_arm64/run.py [--god-src PATH] -- python3 -m god run /host/PATH/Image ...
    python guests/lane_arm64/run.py [--god-src PATH] --shell 'python3 -m god kvm info; uname -a'

The console (the lane's, with god's and its guest's output) goes to stdout; the command's exit
status is this command's exit status (124: timeout, 125: the lane gave no status). god's
package comes from PATH/god (default: this checkout's guests/god/src) and is on PYTHONPATH in
the lane; the host's / is visible read-only at /host, and the command starts in /host/$PWD.
The lane image is built once into ~/.cache/pytest-vmm (lane-arm64-*, lane-arm64-god-*).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's pytest_vmm

from pytest_vmm.hypervisors.lane_arm64 import GOD_SRC, command_script, run_once


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--god-src", type=Path, default=GOD_SRC,
                    help="directory holding the god package (default: %(default)s)")
    ap.add_argument("--shell", metavar="CMD", help="a shell command line to run instead of ARGV")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds (default %(default)s)")
    ap.add_argument("--mem", type=int, default=1024, help="lane RAM in MiB (default %(default)s)")
    ap.add_argument("--cpus", type=int, default=1, help="lane vCPUs (default %(default)s)")
    ap.add_argument("argv", nargs="*", help="the command (after --)")
    a = ap.parse_args(argv)
    if bool(a.shell) == bool(a.argv):
        ap.error("give either --shell CMD or -- ARGV...")
    if not (a.god_src / "god" / "__init__.py").exists():
        ap.error(f"--god-src {a.god_src}: no god package there (expected {a.god_src}/god/__init__.py)")
    script = command_script(a.argv, Path.cwd()) if a.argv else f"cd /host{Path.cwd()} 2>/dev/null\n{a.shell}\n"

    def echo(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    run = run_once(script, god_src=a.god_src.resolve(), timeout_s=a.timeout, mem_mib=a.mem, cpus=a.cpus,
                   stream=echo, progress=lambda line: print(line, file=sys.stderr, flush=True))
    if run.status is None:
        reason = "timed out" if run.qemu_status is None else f"QEMU exited {run.qemu_status} without a status"
        print(f"lane-arm64: {reason} after {run.seconds:.1f} s", file=sys.stderr)
        return 124 if run.qemu_status is None else 125
    print(f"lane-arm64: exit status {run.status} after {run.seconds:.1f} s", file=sys.stderr)
    return run.status


if __name__ == "__main__":
    sys.exit(main())
