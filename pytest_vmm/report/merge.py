"""Combine shards: matrix JSONs into one matrix, JUnit files into one (junitparser), metrics.

Shards split by whole targets (``--vmm-shard=i/N``), so a target's results come from one shard;
the merge still unions per check and sums counts, so overlapping shards merge correctly too.
Fields a newer matrix adds are kept: lists are concatenated, mappings merged, scalars from the
first shard that has them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_vmm.matrix import OUTCOMES, markdown_table
from pytest_vmm.matrix import _cell as matrix_cell

KNOWN = {"targets", "suites", "counts", "checks"}


def merge_matrices(shards: Sequence[dict[str, Any]]) -> dict[str, Any]:
    targets: list[str] = []
    counts: dict[str, dict[str, dict[str, int]]] = {}
    checks: dict[tuple[str, str], dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    for shard in shards:
        for target in shard.get("targets", []):
            if target not in targets:
                targets.append(target)
        for target, by_suite in shard.get("counts", {}).items():
            for suite, cell in by_suite.items():
                into = counts.setdefault(target, {}).setdefault(suite, {})
                for outcome, n in cell.items():
                    into[outcome] = into.get(outcome, 0) + int(n)
        for check in shard.get("checks", []):
            key = (str(check.get("suite")), str(check.get("check")))
            merged = checks.setdefault(key, {k: v for k, v in check.items() if k != "results"} | {"results": {}})
            for k, v in check.items():
                if k != "results" and k not in merged:
                    merged[k] = v
            merged["results"].update(check.get("results", {}))
        for k, v in shard.items():
            if k in KNOWN:
                continue
            if isinstance(v, list):
                extra.setdefault(k, []).extend(x for x in v if x not in extra.get(k, []))
            elif isinstance(v, dict):
                extra.setdefault(k, {}).update(v)
            else:
                extra.setdefault(k, v)
    suites = sorted({s for shard in shards for s in shard.get("suites", [])})
    return {**extra, "targets": targets, "suites": suites, "counts": counts,
            "checks": [checks[k] for k in sorted(checks)]}


def matrix_markdown(matrix: dict[str, Any], title: str = "pytest-vmm conformance matrix") -> str:
    """The Markdown summary (the same tables ``--vmm-matrix`` writes), from matrix JSON."""
    targets, suites, counts = matrix.get("targets", []), matrix.get("suites", []), matrix.get("counts", {})
    summary = [[t, *(_cell(counts.get(t, {}).get(s)) for s in suites)] for t in targets]
    rows = []
    for check in matrix.get("checks", []):
        results = check.get("results", {})
        cells = [_check_cell(results.get(t)) for t in targets]
        marker = " *" if len({c.split(" ")[0] for c in cells}) > 1 else ""
        rows.append([f"{check.get('suite')}::{check.get('check')}{marker}", *cells])
    return "\n".join([f"# {title}", "", *markdown_table(["target (passed/failed/skipped)", *suites], summary), "",
                      "## Checks by target", "", "`*` marks a check whose outcome differs between targets.", "",
                      *markdown_table(["suite::check", *targets], rows), ""])


def _cell(cell: dict[str, int] | None) -> str:
    # The matrix's own cell format (passed/failed/skipped, +N known), one definition.
    return matrix_cell({o: int(cell.get(o, 0)) for o in OUTCOMES} if cell else None)


def _check_cell(result: dict[str, Any] | None) -> str:
    if not result:
        return "-"
    word = {"passed": "pass", "failed": "FAIL", "skipped": "skip"}.get(str(result.get("outcome")), "?")
    values = result.get("values") or {}
    if values:
        word += " " + ",".join(f"{k}={v}" for k, v in sorted(values.items()))
    return word


def merge_junit(paths: Iterable[Path], out: Path) -> Path:
    """One JUnit file with every shard's test suites (statistics recomputed)."""
    from junitparser import JUnitXml, TestSuite

    merged = JUnitXml()
    for path in paths:
        xml = JUnitXml.fromfile(str(path))
        suites = [xml] if isinstance(xml, TestSuite) else list(xml)
        for suite in suites:
            merged.add_testsuite(suite)
    merged.update_statistics()
    out.parent.mkdir(parents=True, exist_ok=True)
    merged.write(str(out), pretty=True)
    return out


def is_matrix(data: object) -> bool:
    return isinstance(data, dict) and "counts" in data and "checks" in data


def find_shard_files(shard: Path) -> dict[str, list[Path]]:
    """A shard's outputs: matrix JSON, JUnit XML, metrics JSONL (a directory, searched recursively)."""
    files = [shard] if shard.is_file() else sorted(p for p in shard.rglob("*") if p.is_file())
    found: dict[str, list[Path]] = {"matrix": [], "junit": [], "metrics": [], "ab": [], "logs": []}
    for path in files:
        if path.suffix == ".xml":
            found["junit"].append(path)
        elif path.suffix == ".jsonl":
            found["metrics"].append(path)
        elif path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if is_matrix(data):
                found["matrix"].append(path)
            elif isinstance(data, dict) and "comparisons" in data:
                found["ab"].append(path)
            elif isinstance(data, dict) and "console_logs" in data:
                found["logs"].append(path)
    return found


def merge_shards(shards: Sequence[Path], out: Path, title: str = "pytest-vmm conformance report") -> dict[str, Path]:
    """Write out/matrix.json, matrix.md, junit.xml, metrics.jsonl and report.html from shard dirs."""
    from pytest_vmm.report import html
    from pytest_vmm.report.metrics import read, write

    matrices, junits, metric_files, ab_files, log_files = [], [], [], [], []
    for shard in shards:
        if not shard.exists():
            raise FileNotFoundError(f"shard output {shard} does not exist")
        found = find_shard_files(shard)
        matrices += found["matrix"]
        junits += found["junit"]
        metric_files += found["metrics"]
        ab_files += found["ab"]
        log_files += found["logs"]
    if not matrices:
        raise ValueError(f"no matrix JSON (written by --vmm-matrix) in {', '.join(map(str, shards))}")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    matrix = merge_matrices([json.loads(p.read_text()) for p in matrices])
    written["matrix"] = out / "matrix.json"
    written["matrix"].write_text(json.dumps(matrix, indent=2, sort_keys=True) + "\n")
    written["markdown"] = out / "matrix.md"
    written["markdown"].write_text(matrix_markdown(matrix))
    if junits:
        written["junit"] = merge_junit(junits, out / "junit.xml")
    records = [r for p in metric_files for r in read(p)]
    if metric_files:
        written["metrics"] = out / "metrics.jsonl"
        write(written["metrics"], records)
    comparisons = [c for p in ab_files for c in json.loads(p.read_text())["comparisons"]]
    written["html"] = out / "report.html"
    logs: dict[str, list[str]] = {}
    for path in log_files:
        for key, paths in json.loads(path.read_text())["console_logs"].items():
            logs.setdefault(key, []).extend(paths)
    written["html"].write_text(html.render(matrix, records, comparisons, logs, title=title, base=out))
    return written
