"""Pairing and the verdict rule, on hand-made samples whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_vmm.report import ab
from pytest_vmm.report.__main__ import main
from pytest_vmm.report.metrics import Record, make, read, unit_for, write


def samples(name: str, values, target: str = "god", **dims) -> list[Record]:
    return [make(name, v, None, target, env={}, dims=dims) for v in values]


def tight(mean: float, n: int = 20, spread: float = 0.005, seed: int = 1) -> list[float]:
    """n samples within about +-0.5% of mean (a quiet machine)."""
    rng = np.random.default_rng(seed)
    return list(mean * (1 + rng.uniform(-spread, spread, n)))


def test_units_and_directions_follow_the_name() -> None:
    assert unit_for("tok_s") == "tok/s" and unit_for("boot_ms") == "ms" and unit_for("boot_to_prompt_s") == "s"
    assert unit_for("lapic_version") == ""
    assert make("tok_s", 1, env={}).better_direction() is True
    assert make("boot_ms", 1, env={}).better_direction() is False
    assert make("lapic_version", 1, env={}).better_direction() is None


def test_pairing_groups_by_name_target_and_dims_not_context() -> None:
    a = samples("tok_s", [1, 2], "zosia") + samples("tok_s", [5], "god") + samples("exits_per_s", [3], "god", kind="pio")
    b = [make("tok_s", 7, None, "zosia", context="suites/x.py::t[zosia]", env={"host": "b"})]
    pairs = {(c.name, c.target, tuple(c.dims.items())): c for c in ab.pair(a, b)}
    assert set(pairs) == {("tok_s", "zosia", ()), ("tok_s", "god", ()), ("exits_per_s", "god", (("kind", "pio"),))}
    assert pairs["tok_s", "zosia", ()].a == [1, 2] and pairs["tok_s", "zosia", ()].b == [7]
    assert pairs["tok_s", "god", ()].b == []


def test_identical_distributions_are_no_regression() -> None:
    values = tight(100.0, seed=3)
    [c] = ab.compare(samples("tok_s", values), samples("tok_s", values))
    assert c.verdict == ab.NO_CHANGE and c.p_value is not None and c.p_value > 0.5 and c.change == 0


def test_two_draws_of_one_distribution_are_no_regression() -> None:
    [c] = ab.compare(samples("boot_ms", tight(50.0, spread=0.1, seed=4)),
                     samples("boot_ms", tight(50.0, spread=0.1, seed=5)))
    assert c.verdict in (ab.NO_CHANGE, ab.BELOW_THRESHOLD)
    assert not ab.failed([c])


def test_a_20_percent_shift_with_tight_samples_is_a_regression() -> None:
    [slower] = ab.compare(samples("tok_s", tight(100.0)), samples("tok_s", tight(80.0, seed=2)))
    assert slower.verdict == ab.REGRESSION
    assert slower.p_value is not None and slower.p_value < 0.01
    assert slower.change == pytest.approx(-0.2, abs=0.01)
    # The same shift in a metric where lower is better is an improvement, not a regression.
    [faster_boot] = ab.compare(samples("boot_ms", tight(100.0)), samples("boot_ms", tight(80.0, seed=2)))
    assert faster_boot.verdict == ab.IMPROVEMENT
    assert ab.failed([slower, faster_boot]) == [slower]


def test_a_3_percent_shift_is_below_the_threshold() -> None:
    [c] = ab.compare(samples("tok_s", tight(100.0, spread=0.002)), samples("tok_s", tight(97.0, spread=0.002, seed=2)))
    assert c.p_value is not None and c.p_value < 0.01  # significant...
    assert c.verdict == ab.BELOW_THRESHOLD  # ...but inside the noise threshold
    [strict] = ab.compare(samples("tok_s", tight(100.0, spread=0.002)),
                          samples("tok_s", tight(97.0, spread=0.002, seed=2)), threshold=0.01)
    assert strict.verdict == ab.REGRESSION


def test_a_big_shift_in_noisy_samples_is_not_significant() -> None:
    [c] = ab.compare(samples("tok_s", [100, 60, 140]), samples("tok_s", [80, 120, 50]))
    assert c.verdict == ab.NO_CHANGE and c.p_value is not None and c.p_value > 0.01


def test_too_few_samples_and_one_sided_metrics_are_named() -> None:
    comparisons = ab.compare(samples("tok_s", [1.0]) + samples("boot_ms", [2, 3]), samples("tok_s", [2.0]))
    verdicts = {c.name: c.verdict for c in comparisons}
    assert verdicts == {"tok_s": ab.TOO_FEW, "boot_ms": ab.ONLY_A}


def test_a_metric_without_direction_that_moves_is_changed() -> None:
    [c] = ab.compare(samples("lapic_version", [20] * 6), samples("lapic_version", [25] * 6))
    assert c.verdict == ab.CHANGED and not ab.failed([c])


def test_records_round_trip_and_tolerate_added_fields(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    write(path, samples("tok_s", [1.5, 2.5], "zosia", variant="avx2"))
    with path.open("a") as out:
        out.write(json.dumps({"name": "x", "value": 3, "new_field": [1]}) + "\n\n")
    records = read(path)
    assert [r.value for r in records] == [1.5, 2.5, 3.0]
    assert records[0].dims == {"variant": "avx2"} and records[0].unit == "tok/s"
    (tmp_path / "bad.jsonl").write_text('{"value": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: .*needs 'name'"):
        read(tmp_path / "bad.jsonl")


def test_cli_exit_status_is_a_ci_gate(tmp_path, capsys) -> None:
    base, same, worse = tmp_path / "a.jsonl", tmp_path / "same.jsonl", tmp_path / "worse.jsonl"
    write(base, samples("tok_s", tight(100.0)))
    write(same, samples("tok_s", tight(100.0)))
    write(worse, samples("tok_s", tight(80.0, seed=2)))
    assert main(["ab", str(base), str(same)]) == 0
    assert main(["ab", str(base), str(worse), "--json", str(tmp_path / "ab.json")]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "-20." in out and "1 regression(s) in 1 metric(s)" in out
    data = json.loads((tmp_path / "ab.json").read_text())
    assert data["comparisons"][0]["verdict"] == "regression"
    assert main(["ab", str(base), str(tmp_path / "missing.jsonl")]) == 2
