"""A/B verdicts: pair samples by metric, target and dimensions; a permutation test decides.

The rule (Firecracker's ``tools/ab_test.py``): a change counts only when the permutation test on
the difference of means gives p < 0.01 *and* the relative change exceeds a noise threshold
(default 5%). With a known direction (tok/s up is good, ms up is bad) the change is a regression
or an improvement; without one (a version, a count) it is "changed".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pytest_vmm.report.metrics import Record

ALPHA = 0.01
THRESHOLD = 0.05
RESAMPLES = 9_999
SEED = 20  # a fixed seed: the same samples give the same p-value on every machine

REGRESSION, IMPROVEMENT, CHANGED = "regression", "improvement", "changed"
NO_CHANGE, BELOW_THRESHOLD, TOO_FEW = "no change", "below threshold", "too few samples"
ONLY_A, ONLY_B = "only in A", "only in B"
FAILING = (REGRESSION,)


@dataclass
class Comparison:
    name: str
    target: str
    dims: dict[str, str]
    unit: str
    a: list[float]
    b: list[float]
    higher_is_better: bool | None = None
    p_value: float | None = None
    verdict: str = NO_CHANGE

    @property
    def mean_a(self) -> float | None:
        return float(np.mean(self.a)) if self.a else None

    @property
    def mean_b(self) -> float | None:
        return float(np.mean(self.b)) if self.b else None

    @property
    def change(self) -> float | None:
        """(mean B - mean A) / |mean A|."""
        if not self.a or not self.b:
            return None
        ma, mb = self.mean_a, self.mean_b
        assert ma is not None and mb is not None
        if ma == 0:
            return 0.0 if mb == 0 else math.copysign(math.inf, mb)
        return (mb - ma) / abs(ma)

    def label(self) -> str:
        where = ",".join(f"{k}={v}" for k, v in sorted(self.dims.items()))
        return self.name + (f"[{where}]" if where else "")

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "target": self.target, "dims": self.dims, "unit": self.unit,
                "n_a": len(self.a), "n_b": len(self.b), "mean_a": self.mean_a, "mean_b": self.mean_b,
                "change": self.change, "p_value": self.p_value, "verdict": self.verdict, "a": self.a, "b": self.b}


def pair(a: Iterable[Record], b: Iterable[Record]) -> list[Comparison]:
    """Group both sides' samples by (name, target, dims); every key of either side appears once."""
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], Comparison] = {}
    for side, records in (("a", a), ("b", b)):
        for record in records:
            key = record.key()
            comparison = groups.get(key)
            if comparison is None:
                comparison = groups[key] = Comparison(record.name, record.target, dict(record.dims), record.unit, [], [])
            getattr(comparison, side).append(record.value)
            if comparison.higher_is_better is None:
                comparison.higher_is_better = record.better_direction()
    return [groups[k] for k in sorted(groups)]


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def p_value(a: list[float], b: list[float], resamples: int = RESAMPLES, seed: int = SEED) -> float:
    """Two-sided permutation test on mean(B) - mean(A) (exact when there are few permutations)."""
    from scipy.stats import permutation_test

    if len(set(a) | set(b)) == 1:
        return 1.0  # every sample equal: nothing to test (and no variance to permute)
    result = permutation_test((np.asarray(a, float), np.asarray(b, float)), _mean_difference,
                              permutation_type="independent", vectorized=True, n_resamples=resamples,
                              alternative="two-sided", random_state=np.random.default_rng(seed))
    return float(result.pvalue)


def judge(comparison: Comparison, alpha: float = ALPHA, threshold: float = THRESHOLD) -> Comparison:
    if not comparison.a:
        comparison.verdict = ONLY_B
        return comparison
    if not comparison.b:
        comparison.verdict = ONLY_A
        return comparison
    if len(comparison.a) < 2 or len(comparison.b) < 2:
        comparison.verdict = TOO_FEW
        return comparison
    comparison.p_value = p_value(comparison.a, comparison.b)
    change = comparison.change
    assert change is not None
    if comparison.p_value >= alpha:
        comparison.verdict = NO_CHANGE
    elif abs(change) <= threshold:
        comparison.verdict = BELOW_THRESHOLD
    elif comparison.higher_is_better is None:
        comparison.verdict = CHANGED
    else:
        comparison.verdict = IMPROVEMENT if (change > 0) == comparison.higher_is_better else REGRESSION
    return comparison


def compare(a: Iterable[Record], b: Iterable[Record], alpha: float = ALPHA,
            threshold: float = THRESHOLD) -> list[Comparison]:
    comparisons = pair(a, b)
    for comparison in comparisons:
        judge(comparison, alpha, threshold)
    return comparisons


def failed(comparisons: Iterable[Comparison]) -> list[Comparison]:
    return [c for c in comparisons if c.verdict in FAILING]


def table(comparisons: Iterable[Comparison]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "target", "unit", "A (mean, n)", "B (mean, n)", "change", "p", "verdict"]
    rows = []
    for c in comparisons:
        change = c.change
        rows.append([
            c.label(), c.target or "-", c.unit or "-",
            _mean_cell(c.mean_a, len(c.a)), _mean_cell(c.mean_b, len(c.b)),
            "-" if change is None else f"{change * 100:+.1f}%",
            "-" if c.p_value is None else f"{c.p_value:.4f}",
            c.verdict.upper() if c.verdict in FAILING else c.verdict,
        ])
    return header, rows


def _mean_cell(mean: float | None, n: int) -> str:
    return "-" if mean is None else f"{mean:.4g} (n={n})"
