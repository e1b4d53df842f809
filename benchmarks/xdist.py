#!/usr/bin/env python3
"""Parallel speed-up: run one selection with ``-n 0`` and then ``-n N`` (pytest-xdist) in one
invocation, and print both wall times, their ratio and whether the two runs gave the same
result for every check.

    python benchmarks/xdist.py                       # suites/ on god, -n 0 vs -n 2
    python benchmarks/xdist.py --vmm all --suite "suites/test_boot.py suites/test_abi_caps.py"

The command is the flake gate's (scripts/conformance.sh's pytest job with the baseline);
outcomes come from each run's JUnit XML. The first run also warms the image cache, so run it
once before quoting figures from a cold cache. Goal (issue 16): ``-n 2`` at least 1.6x faster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flakes import ROOT, job_command, outcomes


def timed_run(suite: str, vmm: str, workers: int, junit: Path, extra: list[str]) -> tuple[int, float, dict[str, str]]:
    argv = job_command(suite, vmm, junit, [*extra, "-n", str(workers)])
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    took = time.monotonic() - t0
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:], file=sys.stderr)
    return proc.returncode, took, outcomes(junit) if junit.exists() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="suites", help="pytest path(s), space-separated (default: suites)")
    parser.add_argument("--vmm", default="god", help="--vmm targets (default god)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers of the parallel run (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vmm-xdist-") as tmp:
        serial = timed_run(args.suite, args.vmm, 0, Path(tmp) / "serial.xml", args.pytest_args)
        parallel = timed_run(args.suite, args.vmm, args.workers, Path(tmp) / "parallel.xml", args.pytest_args)
    print(f"{args.suite} --vmm={args.vmm} on {os.cpu_count()} cores")
    for label, (rc, took, seen) in (("-n 0", serial), (f"-n {args.workers}", parallel)):
        tally = {o: sum(1 for v in seen.values() if v == o) for o in sorted(set(seen.values()))}
        print(f"  {label:<6} exit {rc}  {took:7.1f} s  {tally}")
    print(f"  speed-up: {serial[1] / parallel[1]:.2f}x (goal >= 1.6x)")
    differ = sorted(t for t in serial[2].keys() | parallel[2].keys() if serial[2].get(t) != parallel[2].get(t))
    print(f"  checks whose outcome differs between the runs: {len(differ)}")
    for test_id in differ:
        print(f"    {test_id}: {serial[2].get(test_id)} vs {parallel[2].get(test_id)}")
    return 0 if serial[0] == parallel[0] == 0 and not differ else 1


if __name__ == "__main__":
    sys.exit(main())
