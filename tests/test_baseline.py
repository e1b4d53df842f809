"""The known-divergence baseline (--vmm-baseline) and the per-instance, judged differential."""

from __future__ import annotations

import json

import pytest

from pytest_vmm.baseline import check_instance_id

SUITE = """
import pytest

def test_diverges(vmm_stack):
    assert vmm_stack.id != "fake2", "deliberate divergence on fake2"

def test_fixed_now(vmm_stack):
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_param(vmm_stack, n):
    assert n == 2, "instance [1] fails everywhere"
"""


def _baseline(pytester: pytest.Pytester, body: str) -> str:
    path = pytester.path / "known.toml"
    path.write_text(body)
    return str(path)


def test_listed_failure_reports_as_known_divergence(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    known = _baseline(pytester, """
[[divergence]]
check = "test_suite.py::test_diverges"
targets = ["fake2"]
reason = "fake2 is built to differ"
""")
    result = pytester.runpytest("--vmm=fake,fake2", f"--vmm-baseline={known}", "-rx", "-k", "diverges")
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*vmm known divergences (baseline)*",
        "test_suite::test_diverges [[]fake2[]]: known divergence: fake2 is built to differ",
        "XFAIL test_suite.py::test_diverges[[]fake2[]]*known divergence: fake2 is built to differ*",
    ])


def test_stale_entry_fails_the_run(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    known = _baseline(pytester, """
[[divergence]]
check = "test_suite.py::test_fixed_now"
reason = "used to fail"
""")
    result = pytester.runpytest("--vmm=fake", f"--vmm-baseline={known}", "-k", "fixed_now")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*stale known divergence: test_suite.py::test_fixed_now[[]fake[]] passes*",
                                 "*vmm STALE baseline entries*"])


def test_intermittent_entry_reports_failure_as_known_and_pass_as_absent(fake_project) -> None:
    """An intermittent entry never goes stale: a pass stands and is listed as 'did not show',
    a failure is a known divergence marked intermittent."""
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    known = _baseline(pytester, """
[[divergence]]
check = "test_suite.py::test_diverges"
intermittent = true
reason = "a race in the nested platform"
""")
    result = pytester.runpytest("--vmm=fake,fake2", f"--vmm-baseline={known}", "-rx", "-k", "diverges")
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*vmm known divergences (baseline)*",
        "test_suite::test_diverges [[]fake2[]]: known divergence: (intermittent) a race in the nested platform",
        "*vmm intermittent known divergences that did not show (passed)*",
        "test_suite::test_diverges [[]fake[]]: a race in the nested platform",
    ])


def test_intermittent_must_be_a_boolean(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    known = _baseline(pytester, """
[[divergence]]
check = "test_suite.py::test_diverges"
intermittent = "sometimes"
reason = "r"
""")
    result = pytester.runpytest("--vmm=fake", f"--vmm-baseline={known}")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*divergence #1: 'intermittent' must be true or false, got 'sometimes'*"])


def test_entry_for_another_kvm_flavour_does_not_apply(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    known = _baseline(pytester, """
[[divergence]]
check = "test_suite.py::test_fixed_now"
kvm_flavour = "no-such-flavour"
reason = "only elsewhere"
""")
    result = pytester.runpytest("--vmm=fake", f"--vmm-baseline={known}", "-k", "fixed_now")
    result.assert_outcomes(passed=1)


def test_baseline_from_ini(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    _baseline(pytester, '[[divergence]]\ncheck = "test_suite.py::test_param[[]1]"\nreason = "r"\n')
    pytester.makeini("[pytest]\nvmm_baseline = known.toml\n")
    result = pytester.runpytest("--vmm=fake", "-k", "param")
    result.assert_outcomes(passed=1, xfailed=1)


@pytest.mark.parametrize(("body", "message"), [
    ("[[divergence]]\ncheck = 'x'\nreason = 'r'\n", "*'check' must be a check id*"),
    ("[[divergence]]\ncheck = 'a.py::t'\n", "*'reason' must say why*"),
    ("[[divergence]]\ncheck = 'a.py::t'\nreason = 'r'\ntarget = 'god'\n", "*unknown key(s) [[]'target'[]]*"),
    ("not toml [", "*not valid TOML*"),
])
def test_bad_baseline_is_a_usage_error(fake_project, body: str, message: str) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    known = _baseline(pytester, body)
    result = pytester.runpytest("--vmm=fake", f"--vmm-baseline={known}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_missing_baseline_file_is_a_usage_error(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--vmm=fake", "--vmm-baseline=nope.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no such file nope.toml*"])


def test_differential_rows_are_per_instance_and_judged(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite=SUITE + """
@pytest.mark.vmm_requires("agent")  # fake2 has no agent: a skip there
def test_only_on_fake(vmm_stack):
    pass
""")
    result = pytester.runpytest("--vmm=fake,fake2", "--vmm-matrix=m")
    result.assert_outcomes(passed=6, failed=3, skipped=1)
    # a failing [1] next to a passing [2]: two rows, each with its own outcome
    result.stdout.fnmatch_lines_random([
        "test_suite::test_param[[]1[]] *FAIL*FAIL*fail*",
        "test_suite::test_param[[]2[]] *pass*pass*same*",
        "test_suite::test_diverges *pass*FAIL*divergence (fake2 fail)*",
        "test_suite::test_only_on_fake *pass*skip*coverage*",
    ])
    checks = {c["check"]: c for c in json.loads((pytester.path / "m.json").read_text())["checks"]}
    assert checks["test_param[1]"]["results"]["fake"]["outcome"] == "failed"
    assert checks["test_param[2]"]["results"]["fake"]["outcome"] == "passed"
    assert checks["test_only_on_fake"]["verdict"] == "coverage"


def test_recorded_values_differing_are_judged(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_suite="""
import pytest

def test_unexplained(machine, vmm_stack):
    machine.record("width", len(vmm_stack.id))

@pytest.mark.vmm_spec_allows("Spec 1.2 §3: any width", "width")
def test_allowed(machine, vmm_stack):
    machine.record("width", len(vmm_stack.id))
""")
    result = pytester.runpytest("--vmm=fake,fake2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random([
        "test_suite::test_unexplained *divergence (values: width)*",
        "test_suite::test_allowed *spec-allows (Spec 1.2 §3: any width)*",
    ])


@pytest.mark.parametrize(("nodeid", "target", "expected"), [
    ("s.py::t[god]", "god", "s.py::t"),
    ("s.py::t[god-1000]", "god", "s.py::t[1000]"),
    ("s.py::t[1000-god]", "god", "s.py::t[1000]"),
    ("s.py::t[a-god@god-svm-b]", "god@god-svm", "s.py::t[a-b]"),
    ("s.py::t", "god", "s.py::t"),
])
def test_check_instance_id(nodeid: str, target: str, expected: str) -> None:
    assert check_instance_id(nodeid, target) == expected
