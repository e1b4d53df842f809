"""The conformance matrix (targets x suites) and the per-check differential table.

Fed from ``pytest_runtest_logreport`` on the controller, so with xdist every worker's
reports arrive here and the merge is exact. Written as JSON and Markdown by --vmm-matrix.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_vmm.baseline import PROP_INTERMITTENT_ABSENT

# user_properties the plugin attaches to every item that runs on a target.
PROP_TARGET = "vmm_target"
PROP_SUITE = "vmm_suite"
PROP_CHECK = "vmm_check"  # the check instance: test name with its parameters, less the target's
PROP_SPEC_ALLOWS = "vmm_spec_allows"  # "clause|name,name": recorded values a spec clause lets differ
STANDARD_PROPS = {PROP_TARGET, PROP_SUITE, PROP_CHECK, PROP_SPEC_ALLOWS, "stack", "hypervisor", "accel",
                  "kvm_flavour", "boot_ms", "timeout_factor"}
OUTCOMES = ("passed", "failed", "skipped", "known")  # known: a baseline-listed failure
Table = tuple[list[str], list[list[str]]]


@dataclass
class CheckResult:
    target: str
    suite: str
    check: str
    outcome: str = "passed"
    values: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    allows: list[tuple[str, str]] = field(default_factory=list)  # (clause, name glob)
    intermittent_absent: str = ""  # the reason of an intermittent baseline entry that did not show


class Matrix:
    def __init__(self) -> None:
        self.results: dict[str, CheckResult] = {}
        self.targets: list[str] = []

    def add_report(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        target = props.get(PROP_TARGET)
        if target is None:
            return
        result = self.results.get(report.nodeid)
        if result is None:
            result = self.results[report.nodeid] = CheckResult(
                target=str(target), suite=str(props.get(PROP_SUITE, "?")), check=str(props.get(PROP_CHECK, "?")),
            )
            if result.target not in self.targets:
                self.targets.append(result.target)
        for key, value in report.user_properties:
            if key == PROP_SPEC_ALLOWS and report.when == "setup":
                clause, _, names = str(value).partition("|")
                result.allows += [(clause, n) for n in names.split(",")]
            elif key == PROP_INTERMITTENT_ABSENT:
                result.intermittent_absent = str(value)
            elif key not in STANDARD_PROPS:
                result.values[str(key)] = _short(value)
        wasxfail = getattr(report, "wasxfail", None)
        if report.skipped and wasxfail is not None and report.when == "call":
            result.outcome = "known"
            result.reason = str(wasxfail)
        elif report.skipped and report.when in ("setup", "call"):
            result.outcome = "skipped"
            result.reason = _skip_reason(report)
        elif report.failed:
            result.outcome = "failed"
            if isinstance(report.longrepr, str):
                result.reason = report.longrepr.splitlines()[0][:200]

    # ------------------------------------------------------------------ views
    def suites(self) -> list[str]:
        return sorted({r.suite for r in self.results.values()})

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """target -> suite -> outcome -> count"""
        table: dict[str, dict[str, dict[str, int]]] = {}
        for r in self.results.values():
            cell = table.setdefault(r.target, {}).setdefault(r.suite, dict.fromkeys(OUTCOMES, 0))
            cell[r.outcome] += 1
        return table

    def checks(self) -> dict[tuple[str, str], dict[str, CheckResult]]:
        """(suite, check) -> target -> result"""
        rows: dict[tuple[str, str], dict[str, CheckResult]] = {}
        for r in self.results.values():
            rows.setdefault((r.suite, r.check), {})[r.target] = r
        return dict(sorted(rows.items()))

    def summary_table(self) -> Table:
        """target x suite, cells "passed/failed/skipped"."""
        counts = self.counts()
        suites = self.suites()
        rows = [[t, *(_cell(counts.get(t, {}).get(s)) for s in suites)] for t in self.targets]
        return ["target (passed/failed/skipped)", *suites], rows

    def differential_table(self) -> Table:
        """check instance x target, and a verdict judging the row (see ``judge``)."""
        rows = []
        for (suite, check), by_target in self.checks().items():
            cells = [_check_cell(by_target.get(t)) for t in self.targets]
            rows.append([f"{suite}::{check}", *cells, judge(by_target)])
        return ["suite::check", *self.targets, "verdict"], rows

    def known_divergences(self) -> list[tuple[str, str, str]]:
        """(suite::check, target, reason) of every baseline-listed failure."""
        return [(f"{r.suite}::{r.check}", r.target, r.reason) for r in self.results.values() if r.outcome == "known"]

    def intermittent_absent(self) -> list[tuple[str, str, str]]:
        """(suite::check, target, reason) of every intermittent baseline entry whose check passed."""
        return [(f"{r.suite}::{r.check}", r.target, r.intermittent_absent)
                for r in self.results.values() if r.outcome == "passed" and r.intermittent_absent]

    def to_json(self) -> dict[str, object]:
        return {
            "targets": self.targets,
            "suites": self.suites(),
            "counts": self.counts(),
            "checks": [
                {"suite": s, "check": c,
                 "verdict": judge(by_target),
                 "results": {t: {"outcome": r.outcome, "values": r.values, "reason": r.reason}
                             for t, r in by_target.items()}}
                for (s, c), by_target in self.checks().items()
            ],
        }

    def to_markdown(self) -> str:
        parts = ["# pytest-vmm conformance matrix", "", *markdown_table(*self.summary_table()), "",
                 "## Checks by target", "", VERDICT_LEGEND, "",
                 *markdown_table(*self.differential_table()), ""]
        return "\n".join(parts)

    def write(self, path: Path) -> list[Path]:
        base = path.with_suffix("") if path.suffix in (".json", ".md") else path
        json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        md_path.write_text(self.to_markdown())
        return [json_path, md_path]


VERDICT_LEGEND = (
    "Verdicts: `same`; `coverage` (ran on some targets, skipped on others: not a difference); "
    "`divergence` (failed where another target passed, or recorded values differ with no clause "
    "allowing it); `spec-allows (clause)` (values differ as the check's vmm_spec_allows marker "
    "permits); `known` (a baseline-listed divergence); `fail` (failed everywhere it ran).")


def judge(by_target: dict[str, CheckResult]) -> str:
    """Classify one check instance across targets: skip vs pass is coverage, a failure next to a
    pass is a divergence (the check asserts the spec, so the failing side disagrees with it),
    and differing recorded values are spec-allowed only when the check names the clause."""
    ran = {t: r for t, r in by_target.items() if r.outcome != "skipped"}
    outcomes = {r.outcome for r in ran.values()}
    if "known" in outcomes:
        return "known"
    if "failed" in outcomes:
        failing = sorted(t for t, r in ran.items() if r.outcome == "failed")
        return f"divergence ({', '.join(failing)} fail)" if "passed" in outcomes else "fail"
    if len(ran) > 1:
        differing = sorted({k for r in ran.values() for k in r.values
                            if len({x.values.get(k) for x in ran.values()}) > 1})
        if differing:
            allows = [a for r in ran.values() for a in r.allows]
            unexplained = [k for k in differing if not any(fnmatch.fnmatchcase(k, g) for _, g in allows)]
            if unexplained:
                return f"divergence (values: {', '.join(unexplained)})"
            clauses = sorted({c for c, g in allows if any(fnmatch.fnmatchcase(k, g) for k in differing)})
            return f"spec-allows ({'; '.join(clauses)})"
    if len(ran) < len(by_target) and ran:
        return "coverage"
    return "same" if ran else "skipped"


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)[:40]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return ""


def _cell(counts: dict[str, int] | None) -> str:
    if not counts:
        return "-"
    cell = "/".join(str(counts[o]) for o in ("passed", "failed", "skipped"))
    return cell + (f" +{counts['known']} known" if counts.get("known") else "")


def _check_cell(result: CheckResult | None) -> str:
    if result is None:
        return "-"
    word = {"passed": "pass", "failed": "FAIL", "skipped": "skip", "known": "known"}[result.outcome]
    if result.values:
        word += " " + ",".join(f"{k}={v}" for k, v in sorted(result.values.items()))
    return word


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]
