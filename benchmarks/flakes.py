#!/usr/bin/env python3
"""Flake gate: run the README's main job (the conformance suites on god, as
scripts/conformance.sh runs them, minus its bootstrap) or a chosen suite N times, optionally
with one core of background load, and print pass/fail counts per check. A check that is not
N of N is a flake (or a defect); the figure, not a timed test, is the gate.

    python benchmarks/flakes.py --runs 20
    python benchmarks/flakes.py --runs 10 --load 1
    python benchmarks/flakes.py --runs 5 --suite suites/test_timers.py --vmm god,god@qemu

Each run writes a JUnit XML report that is parsed per test case (known divergences from the
baseline are xfails and count as "known", not as failures). The load is a busy-loop process
per requested core, started before the first run and killed (by its pid) at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "suites" / "known-divergences.toml"
OUTCOMES = ("passed", "failed", "error", "skipped", "known")


def job_command(suite: str, vmm: str, junit: Path, extra: list[str]) -> list[str]:
    """scripts/conformance.sh's pytest command (without its bootstrap), reporting to ``junit``."""
    return [str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", *suite.split(), "-p", "no:cacheprovider",
            "-o", "testpaths=suites", f"--vmm={vmm}", f"--vmm-baseline={BASELINE}", "-q",
            f"--junitxml={junit}", *extra]


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> outcome, from one JUnit XML report."""
    result: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None:
            outcome = "failed"
        elif case.find("error") is not None:
            outcome = "error"
        elif (skipped := case.find("skipped")) is not None:
            outcome = "known" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            outcome = "passed"
        # a teardown error is reported as a second element: the worst outcome wins
        if result.get(test_id) not in ("failed", "error"):
            result[test_id] = outcome
    return result


def start_load(cores: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--load", type=int, default=0, metavar="CORES",
                        help="busy-loop processes running meanwhile (default 0; 1 = one core of load)")
    parser.add_argument("--suite", default="suites", help="pytest path(s) to run, space-separated (default: suites, the main job)")
    parser.add_argument("--vmm", default="god", help="--vmm targets (default god, as scripts/conformance.sh)")
    parser.add_argument("--logs", type=Path, default=None, metavar="DIR",
                        help="keep each run's pytest output as DIR/runN.log (default: failing runs' "
                             "assertion lines are printed, the rest dropped)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    if args.runs < 1 or args.load < 0:
        parser.error("--runs must be >= 1 and --load >= 0")

    counts: dict[str, Counter[str]] = defaultdict(Counter)
    runs: list[tuple[int, int, float, list[str]]] = []
    load = start_load(args.load)
    try:
        with tempfile.TemporaryDirectory(prefix="vmm-flakes-") as tmp:
            for i in range(1, args.runs + 1):
                junit = Path(tmp) / f"run{i}.xml"
                t0 = time.monotonic()
                proc = subprocess.run(job_command(args.suite, args.vmm, junit, args.pytest_args), cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
                if args.logs:
                    args.logs.mkdir(parents=True, exist_ok=True)
                    (args.logs / f"run{i}.log").write_text(proc.stdout)
                took = time.monotonic() - t0
                seen = outcomes(junit) if junit.exists() else {}
                bad = sorted(t for t, o in seen.items() if o in ("failed", "error"))
                for test_id, outcome in seen.items():
                    counts[test_id][outcome] += 1
                runs.append((i, proc.returncode, took, bad))
                print(f"run {i}/{args.runs}: exit {proc.returncode} in {took:.0f} s"
                      + (f", failed: {', '.join(bad)}" if bad else ""), flush=True)
                for line in proc.stdout.splitlines():
                    if bad and line.startswith("E   ") and "Error:" in line:
                        print(f"    {line[4:].strip()[:300]}", flush=True)
    finally:
        stop_load(load)

    load_text = f"{args.load} busy-loop core(s)" if args.load else "none"
    print(f"\n{args.suite} --vmm={args.vmm}: {args.runs} runs, background load: {load_text}, "
          f"host: {os.cpu_count()} cores, loadavg at the end {os.getloadavg()[0]:.1f}")
    green = sum(1 for _, rc, _, _ in runs if rc == 0)
    print(f"runs with exit status 0: {green}/{args.runs}")
    width = max((len(t) for t in counts), default=10)
    print(f"\n{'check':<{width}}  " + "  ".join(f"{o:>7}" for o in OUTCOMES))
    unsteady = []
    for test_id in sorted(counts):
        c = counts[test_id]
        if c["failed"] or c["error"]:
            unsteady.append(test_id)
        print(f"{test_id:<{width}}  " + "  ".join(f"{c[o]:>7}" for o in OUTCOMES))
    print(f"\nchecks that failed at least once: {len(unsteady)}")
    for test_id in unsteady:
        c = counts[test_id]
        print(f"  {test_id}: failed {c['failed'] + c['error']} of {sum(c.values())}")
    return 0 if green == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
