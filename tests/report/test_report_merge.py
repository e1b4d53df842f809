"""Merging shard matrices: counts summed, checks unioned, fields a newer matrix adds kept."""

from __future__ import annotations

from pytest_vmm.report import html
from pytest_vmm.report.merge import matrix_markdown, merge_junit, merge_matrices


def shard(target: str, outcome: str, **extra) -> dict:
    return {"targets": [target], "suites": ["test_boot"],
            "counts": {target: {"test_boot": {"passed": int(outcome == "passed"), "failed": int(outcome == "failed"),
                                              "skipped": 0}}},
            "checks": [{"suite": "test_boot", "check": "test_ready", "judged": {target: "ok"},
                        "results": {target: {"outcome": outcome, "values": {"boot_ms": "12"}, "reason": "",
                                             "instances": [{"id": "0", "verdict": "same"}]}}}],
            **extra}


def test_merge_unions_checks_and_keeps_added_fields() -> None:
    merged = merge_matrices([shard("god", "passed", baseline={"a": 1}, notes=["x"]),
                             shard("zigu", "failed", baseline={"b": 2}, notes=["y"])])
    assert merged["targets"] == ["god", "zigu"]
    assert merged["counts"]["zigu"]["test_boot"] == {"passed": 0, "failed": 1, "skipped": 0}
    [check] = merged["checks"]
    assert set(check["results"]) == {"god", "zigu"}
    assert check["results"]["god"]["instances"] == [{"id": "0", "verdict": "same"}]
    assert check["judged"] == {"god": "ok"}  # a check-level field: from the first shard that has it
    assert merged["baseline"] == {"a": 1, "b": 2} and merged["notes"] == ["x", "y"]
    markdown = matrix_markdown(merged)
    assert "| god | 1/0/0 |" in markdown and "| test_boot::test_ready * | pass boot_ms=12 | FAIL boot_ms=12 |" in markdown
    page = html.render(merged, [])
    assert "instances: [{&#x27;id&#x27;: &#x27;0&#x27;, &#x27;verdict&#x27;: &#x27;same&#x27;}]" in page


def test_the_same_target_on_two_shards_sums_its_counts() -> None:
    merged = merge_matrices([shard("god", "passed"), shard("god", "failed")])
    assert merged["counts"]["god"]["test_boot"] == {"passed": 1, "failed": 1, "skipped": 0}


def test_junit_files_with_a_bare_testsuite_root_merge(tmp_path) -> None:
    (tmp_path / "a.xml").write_text('<testsuite name="pytest" tests="1"><testcase classname="a" name="t1"/></testsuite>')
    (tmp_path / "b.xml").write_text('<testsuites><testsuite name="pytest" tests="1" failures="1">'
                                    '<testcase classname="b" name="t2"><failure message="no"/></testcase>'
                                    '</testsuite></testsuites>')
    from junitparser import JUnitXml

    out = merge_junit([tmp_path / "a.xml", tmp_path / "b.xml"], tmp_path / "m.xml")
    merged = JUnitXml.fromfile(str(out))
    assert (merged.tests, merged.failures) == (2, 1)
    assert sorted(c.name for s in merged for c in s) == ["t1", "t2"]
