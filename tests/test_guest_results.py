"""Guest-reported results become a JUnit document that always parses."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pytest_vmm.guest_results import GuestResult, parse_result_lines, write_junit


def test_parse_kvm_unit_tests_style_lines() -> None:
    console = (b"boot noise\nPASS: pit periodic\r\nFAIL: lapic oneshot: fired 0 times\n"
               b"SKIP: smp ipi: 1 vcpu\nlog PASS: not at line start\n")
    assert parse_result_lines(console) == [
        GuestResult("pit periodic", "passed"),
        GuestResult("lapic oneshot", "failed", "fired 0 times"),
        GuestResult("smp ipi", "skipped", "1 vcpu"),
    ]


def test_junit_document_escapes_guest_garbage(tmp_path: Path) -> None:
    results = [
        GuestResult("ok", "passed", output="fine"),
        GuestResult("bad\x00name", "failed", "got \x1b[31m\udcff", output="\x00\x07 raw"),
        GuestResult("later", "skipped", "no smp"),
    ]
    path = write_junit(tmp_path / "guest.xml", "zigu-in-guest", results, {"stack": "zigu"})
    root = ET.parse(path).getroot()  # raises if not well formed
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
