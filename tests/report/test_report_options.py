"""The report options through pytest: --vmm-metrics, --vmm-ab-baseline, --vmm-report,
--vmm-shard, and a merge of real shard outputs equal to the unsplit run."""

from __future__ import annotations

import json

import matplotlib.figure  # noqa: F401 - loaded before pytester's in-process runs snapshot sys.modules:
import pytest
import scipy.stats  # noqa: F401 - a C extension cannot be imported twice in one process

from pytest_vmm.report import shard
from pytest_vmm.report.__main__ import main
from pytest_vmm.report.metrics import make, read, write

SUITE = """
import pytest

@pytest.mark.parametrize("round", range(5))
@pytest.mark.vmm_requires("agent")
def test_tok_s(machine, round):
    machine.sendline("metric")
    machine.expect(rb"tok_s=([0-9.]+)")
    machine.record("tok_s", float(machine.console.match.group(1)))

def test_console(machine):
    machine.sendline("ping 1")
    machine.expect(rb"pong 1")

@pytest.mark.vmm_stacks("fake2")
def test_fails_on_fake2(vmm_stack):
    assert False, "deliberate"

def test_no_target():
    pass
"""
TARGETS = "--vmm=fake,fake2,fake3"
MODES = {"fake": "ok", "fake2": "ok", "fake3": "ok"}


@pytest.fixture
def project(fake_project) -> pytest.Pytester:
    pytester = fake_project(MODES)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_metrics_are_written_as_json_lines(project) -> None:
    result = project.runpytest("--vmm=fake", "--vmm-metrics=out/m.jsonl", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, skipped=1)
    records = read(project.path / "out/m.jsonl")
    tok = [r for r in records if r.name == "tok_s"]
    boot = [r for r in records if r.name == "boot_ms"]
    assert [r.value for r in tok] == [42.5] * 5 and len(boot) == 6
    assert {r.unit for r in tok} == {"tok/s"} and {r.unit for r in boot} == {"ms"}
    first = tok[0]
    assert first.target == "fake" and first.context.startswith("test_suite.py::test_tok_s[")
    assert first.env["hypervisor"] == "proc" and first.env["accel"] == "tcg" and "host" in first.env
    result.stdout.fnmatch_lines(["*vmm metrics: out/m.jsonl (11 samples)*"])


def test_ini_equivalents(project) -> None:
    project.makeini("[pytest]\nvmm_metrics = ini.jsonl\nvmm_shard = 2/2\n")
    result = project.runpytest("--vmm=fake,fake2", "-p", "no:cacheprovider", "-k", "console")
    assert result.parseoutcomes()["passed"] == 1
    assert {r.target for r in read(project.path / "ini.jsonl")} == {"fake2"}


def _baseline(path, tok_values) -> None:
    write(path, [make("tok_s", v, None, "fake", env={}) for v in tok_values])


def test_ab_baseline_fails_the_run_on_a_regression(project) -> None:
    _baseline(project.path / "fast.jsonl", [100.0, 101.0, 99.5, 100.5, 100.2])
    result = project.runpytest("--vmm=fake", "--vmm-ab-baseline=fast.jsonl", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*vmm A/B against baseline*", "tok_s*fake*tok/s*-57.*%*0.0079*REGRESSION*",
                                 "1 regression(s) in 2 metric(s)"])


def test_ab_baseline_passes_on_the_same_figures(project) -> None:
    _baseline(project.path / "same.jsonl", [42.5] * 5)
    result = project.runpytest("--vmm=fake", "--vmm-ab-baseline=same.jsonl", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["tok_s*fake*+0.0%*no change*", "0 regression(s) in 2 metric(s)"])


def test_ab_baseline_names_a_missing_file(project) -> None:
    result = project.runpytest("--vmm=fake", "--vmm-ab-baseline=nope.jsonl", "-p", "no:cacheprovider", "-k", "console")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--vmm-ab-baseline=nope.jsonl: no such file" in result.stderr.str()
    assert "passed" not in result.stdout.str()


@pytest.mark.parametrize("spec", ["0/2", "3/2", "x", "1/0"])
def test_bad_shard_specs_are_usage_errors(project, spec) -> None:
    result = project.runpytest(f"--vmm-shard={spec}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--vmm-shard={spec}" in result.stderr.str()


def test_shards_hold_whole_targets() -> None:
    assert shard.assign(["a", "b", "c"], 2) == {"a": 1, "b": 2, "c": 1}
    assert shard.parse("2/3") == (2, 3)


def test_two_shards_merged_equal_the_unsplit_run(project, tmp_path) -> None:
    common = [TARGETS, "-p", "no:cacheprovider", "-n", "2"]
    whole = project.runpytest_subprocess(*common, "--vmm-matrix=whole/matrix", "--junitxml=whole/junit.xml")
    # fake2 and fake3 lack the agent capability: test_tok_s skips there.
    whole.assert_outcomes(passed=9, failed=1, skipped=10)
    outcomes = {}
    for i in (1, 2):
        run = project.runpytest_subprocess(*common, f"--vmm-shard={i}/2", f"--vmm-matrix=shard{i}/matrix",
                                           f"--junitxml=shard{i}/junit.xml", f"--vmm-metrics=shard{i}/m.jsonl")
        outcomes[i] = run.parseoutcomes()
    # fake and fake3 on shard 1 (with the target-less test), fake2 on shard 2.
    assert (outcomes[1]["passed"], outcomes[1]["skipped"]) == (8, 5)
    assert (outcomes[2]["passed"], outcomes[2]["failed"], outcomes[2]["skipped"]) == (1, 1, 5)
    out = tmp_path / "merged"
    summary = tmp_path / "summary.md"
    assert main(["merge", str(project.path / "shard1"), str(project.path / "shard2"),
                 "--out", str(out), "--summary", str(summary)]) == 0
    merged = json.loads((out / "matrix.json").read_text())
    unsplit = json.loads((project.path / "whole/matrix.json").read_text())
    assert sorted(merged["targets"]) == sorted(unsplit["targets"])
    assert {k: v for k, v in merged.items() if k != "targets"} == {k: v for k, v in unsplit.items() if k != "targets"}
    from junitparser import JUnitXml

    def cases(path):
        return sorted((c.classname, c.name, type(c.result[0]).__name__ if c.result else "ok")
                      for suite in JUnitXml.fromfile(str(path)) for c in suite)

    assert cases(out / "junit.xml") == cases(project.path / "whole/junit.xml")
    merged_junit = JUnitXml.fromfile(str(out / "junit.xml"))
    assert (merged_junit.tests, merged_junit.failures) == (20, 1)
    assert "| fake2 | 1/1/5 |" in summary.read_text()
    assert "id='matrix'" in (out / "report.html").read_text()
    # fake: 5 tok_s + 6 boots; fake2 and fake3: test_console's boot.
    assert len(read(out / "metrics.jsonl")) == 5 + 6 + 1 + 1


def test_target_progress_lines(project) -> None:
    result = project.runpytest(TARGETS, "-p", "no:cacheprovider", "-k", "console or fails")
    result.stdout.fnmatch_lines(["*vmm targets: *running: fake 0/1*",
                                 "*vmm targets: done: fake*",
                                 "*vmm targets: done: fake, fake3; failing: fake2 (1 failed)"])


def test_a_shared_machine_boot_is_one_sample(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(test_shared="""
        def test_a(shared_machine):
            pass

        def test_b(shared_machine):
            pass

        def test_c(machine):
            pass
    """)
    result = pytester.runpytest("--vmm=fake", "--vmm-metrics=m.jsonl", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    boots = [r for r in read(pytester.path / "m.jsonl") if r.name == "boot_ms"]
    # test_a and test_b share one boot; test_c boots its own.
    assert len(boots) == 2, boots
