"""One self-contained HTML page per run: matrix, differential table, console-log links, plots.

Plots are drawn with matplotlib's object API (no pyplot: no global backend state) and embedded
as base64 PNG, so the page is a single file a CI system can upload as an artifact.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_vmm.report.metrics import Record

BOOT_METRIC = "boot_ms"
TOKS_UNIT = "tok/s"
MAX_AB_PLOTS = 12
Logs = Mapping[str, Sequence[str]]  # "suite::check::target" -> console log paths

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.pass { background: #b7e4b0; } td.fail { background: #f4a6a6; }
td.skip { background: #ddd; color: #555; } td.mixed { background: #f5e3a1; } td.none { background: #fff; }
tr.differs td:first-child { font-weight: bold; }
td.regression { background: #f4a6a6; } td.improvement { background: #b7e4b0; } td.changed { background: #f5e3a1; }
img.plot { max-width: 100%; border: 1px solid #ccc; margin: 0.5em 0; }
.small { color: #666; font-size: 12px; }
"""


def render(matrix: Mapping[str, Any], records: Sequence[Record], comparisons: Sequence[Mapping[str, Any]] = (),
           logs: Logs | None = None, title: str = "pytest-vmm report", base: Path | None = None) -> str:
    """The page. ``comparisons`` are :meth:`Comparison.to_dict` results; ``base`` makes log links relative."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{_e(title)}</h1>", _environment(records)]
    parts += ["<h2 id='matrix-heading'>Conformance matrix (targets &times; suites)</h2>", _matrix_table(matrix)]
    parts += ["<h2>Checks by target</h2>",
              ("<p class='small'>Each check's outcome and recorded values per target; bold rows differ "
               "between targets.</p>"), _differential_table(matrix, logs or {}, base)]
    parts += ["<h2>Figures</h2>"]
    for plot_id, caption, png in _plots(records, comparisons):
        parts.append(f"<figure><img class='plot' id='{plot_id}' alt='{_e(caption)}' "
                     f"src='data:image/png;base64,{png}'><figcaption>{_e(caption)}</figcaption></figure>")
    if comparisons:
        parts += ["<h2>A/B comparison</h2>", _ab_table(comparisons)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _environment(records: Sequence[Record]) -> str:
    envs = {tuple(sorted(r.env.items())) for r in records if r.env}
    if not envs:
        return ""
    items = ["; ".join(f"{k}={v}" for k, v in env) for env in sorted(envs)][:5]
    return "<p class='small'>environment: " + "<br>".join(_e(i) for i in items) + "</p>"


def _outcome_class(cell: Mapping[str, int] | None) -> str:
    if not cell or not sum(cell.values()):
        return "none"
    if cell.get("failed", 0):
        return "fail"
    if cell.get("passed", 0) and cell.get("skipped", 0):
        return "mixed"
    return "pass" if cell.get("passed", 0) else "skip"


def _matrix_table(matrix: Mapping[str, Any]) -> str:
    suites, counts = matrix.get("suites", []), matrix.get("counts", {})
    rows = ["<table id='matrix'><tr><th>target</th>" + "".join(f"<th>{_e(s)}</th>" for s in suites) + "</tr>"]
    for target in matrix.get("targets", []):
        cells = []
        for suite in suites:
            cell = counts.get(target, {}).get(suite)
            text = "-" if not cell else (f"{cell.get('passed', 0)} passed, {cell.get('failed', 0)} failed, "
                                         f"{cell.get('skipped', 0)} skipped")
            cells.append(f"<td class='{_outcome_class(cell)}'>{_e(text)}</td>")
        rows.append(f"<tr><th>{_e(target)}</th>{''.join(cells)}</tr>")
    return "\n".join(rows) + "</table>"


_WORD = {"passed": ("pass", "pass"), "failed": ("FAIL", "fail"), "skipped": ("skip", "skip")}
_RESULT_KEYS = {"outcome", "values", "reason"}


def _differential_table(matrix: Mapping[str, Any], logs: Logs, base: Path | None) -> str:
    targets = list(matrix.get("targets", []))
    rows = ["<table id='differential'><tr><th>suite::check</th>"
            + "".join(f"<th>{_e(t)}</th>" for t in targets) + "</tr>"]
    for check in matrix.get("checks", []):
        name = f"{check.get('suite')}::{check.get('check')}"
        results = check.get("results", {})
        outcomes = {str(results.get(t, {}).get("outcome", "-")) for t in targets}
        cells = []
        for target in targets:
            result = results.get(target)
            if not result:
                cells.append("<td class='none'>-</td>")
                continue
            word, css = _WORD.get(str(result.get("outcome")), ("?", "none"))
            lines = [f"<b>{word}</b>"]
            lines += [f"{_e(k)}={_e(v)}" for k, v in sorted((result.get("values") or {}).items())]
            if result.get("reason"):
                lines.append(f"<span class='small'>{_e(result['reason'])}</span>")
            # Fields a newer matrix adds (per-instance verdicts...) are shown, not dropped.
            lines += [f"<span class='small'>{_e(k)}: {_e(_short(v))}</span>"
                      for k, v in sorted(result.items()) if k not in _RESULT_KEYS]
            for log in logs.get(f"{name}::{target}", ()):
                href = _href(log, base)
                lines.append(f"<a class='console-log' href='{_e(href)}'>console log</a>")
            cells.append(f"<td class='{css}'>" + "<br>".join(lines) + "</td>")
        extra = [f"{_e(k)}: {_e(_short(v))}" for k, v in sorted(check.items())
                 if k not in ("suite", "check", "results")]
        label = _e(name) + ("<br><span class='small'>" + "<br>".join(extra) + "</span>" if extra else "")
        differs = " class='differs'" if len(outcomes) > 1 else ""
        rows.append(f"<tr{differs}><td>{label}</td>{''.join(cells)}</tr>")
    return "\n".join(rows) + "</table>"


def _short(value: object, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _href(log: str, base: Path | None) -> str:
    path = Path(log)
    if base is not None and path.is_absolute():
        try:
            return os.path.relpath(path, base.resolve())
        except ValueError:
            pass
    return path.as_uri() if path.is_absolute() else str(path)


# ------------------------------------------------------------------ plots
def _plots(records: Sequence[Record], comparisons: Sequence[Mapping[str, Any]]) -> Iterable[tuple[str, str, str]]:
    boot = _by_target(r for r in records if r.name == BOOT_METRIC)
    if boot:
        yield "plot-boot", "boot time (ms) per target: distribution of every boot", _distribution(boot, "boot ms")
    toks = _by_target(r for r in records if r.unit == TOKS_UNIT)
    if toks:
        yield "plot-toks", "LLM tokens/s per target", _distribution(toks, "tok/s")
    if comparisons:
        yield "plot-ab", "A/B comparisons: samples of A and B per metric", _ab_plot(comparisons[:MAX_AB_PLOTS])


def _by_target(records: Iterable[Record]) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for record in records:
        grouped[record.target or "-"].append(record.value)
    return dict(sorted(grouped.items()))


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _distribution(groups: Mapping[str, list[float]], label: str) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, 1.4 * len(groups) + 2), 3.2))
    axes = figure.subplots()
    names = list(groups)
    axes.boxplot([groups[n] for n in names], showfliers=False)
    for i, name in enumerate(names, 1):
        values = groups[name]
        jitter = [i + 0.12 * ((k % 5) - 2) / 2 for k in range(len(values))]
        axes.scatter(jitter, values, s=16, color="tab:blue", zorder=3)
    axes.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    axes.set_ylabel(label)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def _ab_plot(comparisons: Sequence[Mapping[str, Any]]) -> str:
    from matplotlib.figure import Figure

    cols = min(4, len(comparisons))
    rows = (len(comparisons) + cols - 1) // cols
    figure = Figure(figsize=(3.2 * cols, 2.8 * rows))
    axes_list = figure.subplots(rows, cols, squeeze=False).ravel()
    colours = {"regression": "tab:red", "improvement": "tab:green", "changed": "tab:orange"}
    for axes, comparison in zip(axes_list, comparisons):
        a, b = list(comparison.get("a") or []), list(comparison.get("b") or [])
        axes.boxplot([a or [float("nan")], b or [float("nan")]], showfliers=False)
        axes.scatter([1] * len(a), a, s=10, color="tab:blue", zorder=3)
        axes.scatter([2] * len(b), b, s=10, color=colours.get(str(comparison.get("verdict")), "tab:gray"), zorder=3)
        axes.set_xticks([1, 2], ["A", "B"])
        target = comparison.get("target") or ""
        axes.set_title(f"{comparison.get('name')} {target}\n{comparison.get('verdict')}", fontsize=8)
        axes.tick_params(labelsize=7)
    for axes in axes_list[len(comparisons):]:
        axes.set_visible(False)
    figure.tight_layout()
    return _png(figure)


def _ab_table(comparisons: Sequence[Mapping[str, Any]]) -> str:
    rows = [("<table id='ab'><tr><th>metric</th><th>target</th><th>A</th><th>B</th><th>change</th>"
             "<th>p</th><th>verdict</th></tr>")]
    for c in comparisons:
        change = c.get("change")
        p = c.get("p_value")
        verdict = str(c.get("verdict"))
        rows.append(
            f"<tr><td>{_e(c.get('name'))}</td><td>{_e(c.get('target') or '-')}</td>"
            f"<td>{_num(c.get('mean_a'))} (n={c.get('n_a')})</td><td>{_num(c.get('mean_b'))} (n={c.get('n_b')})</td>"
            f"<td>{'-' if change is None else f'{change * 100:+.1f}%'}</td>"
            f"<td>{'-' if p is None else f'{p:.4f}'}</td>"
            f"<td class='{_e(verdict)}'>{_e(verdict)}</td></tr>")
    return "\n".join(rows) + "</table>"


def _num(value: object) -> str:
    return "-" if value is None else f"{float(value):.4g}"  # type: ignore[arg-type]
