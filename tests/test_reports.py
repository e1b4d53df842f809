"""JUnit properties, the conformance matrix, and the same results with xdist."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

SUITE = """
import pytest

@pytest.mark.vmm_requires("agent")
def test_agent_check(machine):
    machine.sendline("metric")
    machine.expect(rb"tok_s=([0-9.]+)")
    machine.record("tok_s", float(machine.console.match.group(1)))

def test_console_check(machine):
    machine.sendline("ping 1")
    machine.expect(rb"pong 1")

@pytest.mark.vmm_stacks("fake2")
def test_fails_on_fake2(vmm_stack):
    assert False, "deliberate"
"""


def _properties(report: ET.Element, name: str) -> dict[str, str]:
    for case in report.iter("testcase"):
        if case.get("name") == name:
            return {p.get("name"): p.get("value") for p in case.iter("property")}  # type: ignore[misc]
    raise AssertionError(f"no testcase {name}")


def test_junit_properties_and_matrix(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--vmm=fake,fake2", "--junitxml=r.xml", "--vmm-matrix=out/matrix")
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    props = _properties(ET.parse(pytester.path / "r.xml").getroot(), "test_agent_check[fake]")
    assert props["stack"] == "fake" and props["hypervisor"] == "proc" and props["accel"] == "tcg"
    assert props["kvm_flavour"] in ("pvm", "vmx", "svm", "none")
    assert float(props["boot_ms"]) > 0
    assert float(props["tok_s"]) == 42.5
    result.stdout.fnmatch_lines([
        "*vmm conformance matrix*",
        "target (passed/failed/skipped)  test_suite",
        "fake  * 2/0/0*",
        "fake2 * 1/1/1*",
        "*vmm differential*",
        "test_suite::test_agent_check  *pass tok_s=42.5*skip*coverage*",  # skip vs pass: coverage
        "test_suite::test_console_check  *pass*pass*same*",
    ])
    data = json.loads((pytester.path / "out/matrix.json").read_text())
    assert data["counts"]["fake2"]["test_suite"] == {"passed": 1, "failed": 1, "skipped": 1, "known": 0}
    assert data["targets"] == ["fake", "fake2"]
    markdown = (pytester.path / "out/matrix.md").read_text()
    assert "| fake2 | 1/1/1 |" in markdown


def test_matrix_is_identical_with_xdist(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    serial = pytester.runpytest_subprocess("--vmm=fake,fake2", "--vmm-matrix=serial", "-p", "no:cacheprovider")
    serial.assert_outcomes(passed=3, failed=1, skipped=1)
    parallel = pytester.runpytest_subprocess("--vmm=fake,fake2", "--vmm-matrix=parallel", "-n", "2",
                                             "-p", "no:cacheprovider")
    parallel.assert_outcomes(passed=3, failed=1, skipped=1)
    one = json.loads((pytester.path / "serial.json").read_text())
    two = json.loads((pytester.path / "parallel.json").read_text())
    assert one["counts"] == two["counts"]
    assert sorted(json.dumps(c, sort_keys=True) for c in one["checks"]) == \
        sorted(json.dumps(c, sort_keys=True) for c in two["checks"])


def test_xdist_groups_each_target_on_one_worker(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import os

        def test_a(shared_machine):
            print("worker", os.environ.get("PYTEST_XDIST_WORKER"), shared_machine.pid)

        def test_b(shared_machine):
            pass

        def test_c(shared_machine):
            pass
    """)
    result = pytester.runpytest_subprocess("--vmm=fake,fake2", "-n", "2", "--junitxml=r.xml", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    boots: dict[str, set[str]] = {}
    for case in ET.parse(pytester.path / "r.xml").getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        boots.setdefault(props["vmm_target"], set()).add(props["boot_ms"])  # type: ignore[arg-type]
    # One boot per target: every test of a target saw the same boot time.
    assert {k: len(v) for k, v in boots.items()} == {"fake": 1, "fake2": 1}


@pytest.mark.parametrize("profile", ["vmm-ci", "vmm-fuzz"])
def test_hypothesis_profiles_are_registered(pytester: pytest.Pytester, profile: str) -> None:
    pytester.makepyfile("""
        from hypothesis import given, settings, strategies as st

        def test_profile():
            print("PROFILE", settings().max_examples, settings().deadline)
    """)
    # In a subprocess: loading a profile is global to Hypothesis and must not leak into this run.
    result = pytester.runpytest_subprocess(f"--hypothesis-profile={profile}", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    expected = "*PROFILE 50 None*" if profile == "vmm-ci" else "*PROFILE 20000 None*"
    result.stdout.fnmatch_lines([expected])


def test_target_scope_finds_the_target_among_parameters() -> None:
    from pytest_vmm.xdist_scheduling import target_scope

    targets = ["god", "god@qemu", "zigu"]
    assert target_scope("suites/t.py::test_x[god]", targets) == "vmm:god:suites/t.py"
    assert target_scope("suites/t.py::test_x[god@qemu]", targets) == "vmm:god@qemu:suites/t.py"
    assert target_scope("suites/t.py::test_x[god@qemu-7]", targets) == "vmm:god@qemu:suites/t.py"
    assert target_scope("suites/t.py::test_x[7-zigu]", targets) == "vmm:zigu:suites/t.py"
    # A one-worker target (the session's ARM64 lane) is one unit across its modules.
    assert target_scope("suites/t.py::test_x[god]", targets, {"god"}) == "vmm:god"
    assert target_scope("suites/u.py::test_x[god]", targets, {"god"}) == "vmm:god"
    # On no target: a module in a testpath is a unit; a subdirectory's modules are one unit
    # (they share its conftest's session fixtures).
    assert target_scope("tests/t.py::test_y[godly]", targets, roots={"tests"}) == "tests/t.py"
    assert target_scope("tests/t.py::test_z", targets, roots={"tests"}) == "tests/t.py"
    assert target_scope("tests/lane/a.py::test_z", targets, roots={"tests"}) == "dir:tests/lane"
    assert target_scope("tests/lane/b.py::test_z", targets, roots={"tests"}) == "dir:tests/lane"
    assert target_scope("t.py::test_z", targets) == "t.py"
