#!/usr/bin/env python3
"""Interleaved A/B runs of a benchmark: A B A B ... (not AAAA BBBB, because a shared machine
drifts), each run's samples appended to OUT/A.jsonl and OUT/B.jsonl, then the verdicts of
``python -m pytest_vmm.report ab`` (exit status 1 when B regressed against A).

    python benchmarks/ab.py --runs 5 --out ab/ \\
        --a "benchmarks/god_exits.py --n 20000 --boots 3 --rounds 1" \\
        --b "benchmarks/god_exits.py --n 20000 --boots 3 --rounds 1" [--busy-b 1]

Each command is run with ``--json PATH`` appended (every benchmark in benchmarks/ takes it);
``--busy-b N`` keeps N busy-looping processes running during B's runs (the "one core busy"
configuration).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_vmm.report.__main__ import main as report_main

BUSY_LOOP = "while True: pass"


def run_once(command: list[str], out: Path, busy: int) -> None:
    loads = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
    try:
        with tempfile.TemporaryDirectory(prefix="vmm-ab-") as tmp:
            samples = Path(tmp) / "samples.jsonl"
            subprocess.run([*command, "--json", str(samples)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            with out.open("a") as stream:
                stream.write(samples.read_text())
    finally:
        for load in loads:
            load.kill()
            load.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--a", required=True, help="configuration A: a benchmark command line")
    ap.add_argument("--b", required=True, help="configuration B: a benchmark command line")
    ap.add_argument("--runs", type=int, default=5, help="runs of each configuration (default 5)")
    ap.add_argument("--out", type=Path, required=True, help="directory for A.jsonl, B.jsonl, ab.json")
    ap.add_argument("--busy-b", type=int, default=0, metavar="N", help="busy-looping processes during B's runs")
    ap.add_argument("--threshold", type=float, default=None, help="noise threshold (default 0.05)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    paths = {"A": a.out / "A.jsonl", "B": a.out / "B.jsonl"}
    for path in paths.values():
        path.write_text("")
    commands = {side: [sys.executable, *shlex.split(cmd)] if cmd.split()[0].endswith(".py") else shlex.split(cmd)
                for side, cmd in (("A", a.a), ("B", a.b))}
    for run in range(a.runs):
        for side in ("A", "B"):
            print(f"run {run + 1}/{a.runs}: {side}", flush=True)
            run_once(commands[side], paths[side], a.busy_b if side == "B" else 0)
    args = ["ab", str(paths["A"]), str(paths["B"]), "--json", str(a.out / "ab.json")]
    if a.threshold is not None:
        args += ["--threshold", str(a.threshold)]
    return report_main(args)


if __name__ == "__main__":
    sys.exit(main())
