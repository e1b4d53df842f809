"""Results a guest reports about itself (kvm-unit-tests style ``PASS:/FAIL:/SKIP:`` lines,
in-guest ABI runs, tests run inside the SVM lane), kept as an extra JUnit document.

pytest's own ``--junitxml`` covers pytest items; this covers what ran inside a guest, written
with the ``junit-xml`` package rather than by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from pytest_vmm.console import printable

# "PASS: name", "FAIL: name: why", "SKIP: name (why)", as kvm-unit-tests prints them.
RESULT_LINE = re.compile(rb"^(PASS|FAIL|SKIP|XFAIL):\s*(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class GuestResult:
    name: str
    outcome: str  # "passed" | "failed" | "skipped"
    message: str = ""
    output: str = ""
    seconds: float | None = None


def parse_result_lines(console: bytes) -> list[GuestResult]:
    results = []
    for match in RESULT_LINE.finditer(console):
        word, rest = match.group(1).decode(), printable(match.group(2))
        name, _, message = rest.partition(": ")
        outcome = {"PASS": "passed", "XFAIL": "passed", "FAIL": "failed", "SKIP": "skipped"}[word]
        results.append(GuestResult(name=name.strip(), outcome=outcome, message=message.strip()))
    return results


def to_junit(suite_name: str, results: list[GuestResult], properties: dict[str, str] | None = None) -> str:
    cases = []
    for result in results:
        # junit-xml writes strings as given: guest text must be made XML-safe first.
        case = TestCase(_safe(result.name), classname=_safe(suite_name), elapsed_sec=result.seconds,
                        stdout=_safe(result.output) if result.output else None)
        if result.outcome == "failed":
            case.add_failure_info(message=_safe(result.message or "failed in the guest"))
        elif result.outcome == "skipped":
            case.add_skipped_info(message=_safe(result.message or "skipped by the guest"))
        cases.append(case)
    return str(to_xml_report_string([TestSuite(suite_name, cases, properties=properties)], encoding="utf-8"))


def write_junit(path: Path, suite_name: str, results: list[GuestResult],
                properties: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_junit(suite_name, results, properties), encoding="utf-8")
    return path


def _safe(text: str) -> str:
    return printable(text.encode("utf-8", errors="surrogateescape"))
