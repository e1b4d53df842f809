"""The plugin side of reports: --vmm-metrics, --vmm-ab-baseline, --vmm-report, --vmm-shard,
and a per-target progress line on runs over several targets.

:class:`ReportPlugin` runs on the controller only (like the matrix reporter), so under xdist it
sees every worker's reports; shard selection runs wherever collection runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_vmm import options
from pytest_vmm.matrix import PROP_CHECK, PROP_SUITE, PROP_TARGET, text_table
from pytest_vmm.report import shard
from pytest_vmm.report.metrics import Record, environment, make, read, unit_for, write

if TYPE_CHECKING:
    # scipy/numpy come with the report extra: imported only when an A/B comparison is asked for.
    from pytest_vmm.report import ab

NAME = "vmm-report"
BOOT_METRIC = "boot_ms"
CONSOLE_LOGS_ATTR = "vmm_console_logs"  # set on reports by the core plugin; survives xdist
# user_properties that describe the run, not a measurement.
LABELS = {PROP_TARGET, PROP_SUITE, PROP_CHECK, "stack", "hypervisor", "accel", "kvm_flavour", "timeout_factor"}


def register(config: pytest.Config) -> None:
    """Called from the core plugin's pytest_configure on the controller."""
    config.pluginmanager.register(ReportPlugin(config), NAME)


def unregister(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(NAME)
    if plugin is not None:
        config.pluginmanager.unregister(plugin)


def apply_shard(config: pytest.Config, items: list[pytest.Item], targets: list[str]) -> None:
    """Keep only this shard's targets' items (``--vmm-shard=i/N``)."""
    spec = options.get(config, "vmm_shard")
    if not spec:
        return
    index, total = shard.parse(str(spec))
    target_of = {item.nodeid: str(dict(item.user_properties)[PROP_TARGET]) for item in items
                 if PROP_TARGET in dict(item.user_properties)}
    kept, dropped = shard.select(items, target_of, targets, index, total)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def metrics_of(report: pytest.TestReport) -> list[Record]:
    """Every numeric value a check recorded (machine.record, record_property) plus boot_ms."""
    props = dict(report.user_properties)
    target = str(props.get(PROP_TARGET, ""))
    env = environment(**{k: str(props[k]) for k in ("stack", "hypervisor", "accel", "kvm_flavour") if k in props})
    records = []
    for key, value in report.user_properties:
        if key in LABELS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        records.append(make(str(key), float(value), unit_for(str(key)), target, context=report.nodeid, env=env))
    return records


class TargetProgress:
    """Which targets are done, failing and running; a line whenever that changes."""

    def __init__(self) -> None:
        self.expected: dict[str, int] = {}
        self.finished: dict[str, int] = {}
        self.failed: dict[str, set[str]] = {}
        self.started: set[str] = set()

    def expect(self, target_of: dict[str, str]) -> None:
        self.expected.clear()
        for target in target_of.values():
            self.expected[target] = self.expected.get(target, 0) + 1

    def update(self, report: pytest.TestReport) -> bool:
        """Feed a report; True when a target started, finished or failed (not on every count:
        in a CI log a line per test would bury the output)."""
        target = dict(report.user_properties).get(PROP_TARGET)
        if target is None:
            return False
        target = str(target)
        before = self._state()
        self.started.add(target)
        if report.failed:
            self.failed.setdefault(target, set()).add(report.nodeid)
        if report.when == "teardown":
            self.finished[target] = self.finished.get(target, 0) + 1
        return self._state() != before and len(self.expected | dict.fromkeys(self.started)) > 1

    def _state(self) -> tuple[frozenset[str], tuple[tuple[str, int], ...], frozenset[str]]:
        done = frozenset(t for t, total in self.expected.items() if self.finished.get(t, 0) >= total)
        failing = tuple(sorted((t, len(f)) for t, f in self.failed.items()))
        return done, failing, frozenset(self.started)

    def line(self) -> str:
        names = list(dict.fromkeys([*self.expected, *sorted(self.started)]))
        done, failing, running, waiting = [], [], [], []
        for t in names:
            n, total, bad = self.finished.get(t, 0), self.expected.get(t), len(self.failed.get(t, ()))
            complete = total is not None and n >= total
            of = f"{n}/{total if total is not None else '?'}"
            if bad:
                failing.append(f"{t} ({bad} failed" + ("" if complete else f", {of}") + ")")
            elif complete:
                done.append(t)
            elif t in self.started:
                running.append(f"{t} {of}")
            else:
                waiting.append(t)
        parts = [f"{label}: {', '.join(group)}" for label, group in
                 (("done", done), ("failing", failing), ("running", running), ("waiting", waiting)) if group]
        return "vmm targets: " + "; ".join(parts)


class ReportPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[Record] = []
        self.logs: dict[str, list[str]] = {}
        self.comparisons: list[ab.Comparison] = []
        self.written: list[str] = []
        self.progress = TargetProgress()
        self._last_line = ""
        # (target, the machines' console logs, boot_ms): a machine's log path is unique to it.
        self._boots: set[tuple[str, tuple[str, ...], float]] = set()
        baseline = self._path("vmm_ab_baseline")
        if baseline is not None and not baseline.is_file():
            # Said before the run, not after an hour of it.
            raise pytest.UsageError(f"--vmm-ab-baseline={baseline}: no such file")

    def _path(self, name: str) -> Path | None:
        value = options.get(self.config, name)
        return Path(str(value)).expanduser() if value else None

    # --------------------------------------------------------------- collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.progress.expect({i.nodeid: str(dict(i.user_properties)[PROP_TARGET]) for i in session.items
                              if PROP_TARGET in dict(i.user_properties)})

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        if self.progress.expected:
            return  # every worker collects the same items
        from pytest_vmm.plugin import SESSION_KEY
        from pytest_vmm.xdist_scheduling import target_scope

        targets = [t.id for t in self.config.stash[SESSION_KEY].targets]
        scopes = {nodeid: target_scope(nodeid, targets) for nodeid in ids}
        self.progress.expect({n: s.removeprefix("vmm:") for n, s in scopes.items() if s.startswith("vmm:")})

    # ------------------------------------------------------------------ reports
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        target = props.get(PROP_TARGET)
        if target is not None:
            key = f"{props.get(PROP_SUITE, '?')}::{props.get(PROP_CHECK, '?')}::{target}"
            for log in getattr(report, CONSOLE_LOGS_ATTR, None) or ():
                if str(log) not in self.logs.setdefault(key, []):
                    self.logs[key].append(str(log))
        if report.when == "teardown":
            for record in metrics_of(report):
                if record.name == BOOT_METRIC:
                    # A shared machine's one boot is attached to every test that uses it: one
                    # sample per boot, or the A/B test would count a boot many times.
                    boot = (record.target, tuple(getattr(report, CONSOLE_LOGS_ATTR, None) or ()), record.value)
                    if boot in self._boots:
                        continue
                    self._boots.add(boot)
                self.records.append(record)
        if self.progress.update(report):
            line = self.progress.line()
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None and line != self._last_line and self.config.option.verbose >= 0:
                reporter.write_line(line)
            self._last_line = line

    # ------------------------------------------------------------------ outputs
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        metrics_path = self._path("vmm_metrics")
        if metrics_path is not None:
            write(metrics_path, self.records)
            self.written.append(f"metrics: {metrics_path} ({len(self.records)} samples)")
        baseline = self._path("vmm_ab_baseline")
        if baseline is not None:
            from pytest_vmm.report import ab

            threshold = float(options.get(self.config, "vmm_ab_threshold") or ab.THRESHOLD)  # type: ignore[arg-type]
            self.comparisons = ab.compare(read(baseline), self.records, threshold=threshold)
            if ab.failed(self.comparisons) and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        matrix_path = self._path("vmm_matrix")
        if matrix_path is not None and self.logs:
            base = matrix_path.with_suffix("") if matrix_path.suffix in (".json", ".md") else matrix_path
            logs_path = base.with_name(base.name + ".logs.json")
            logs_path.parent.mkdir(parents=True, exist_ok=True)
            logs_path.write_text(json.dumps({"console_logs": self._existing_logs()}, indent=2, sort_keys=True))
        report_path = self._path("vmm_report")
        if report_path is not None:
            from pytest_vmm.plugin import MatrixReporter
            from pytest_vmm.report import html

            reporter = self.config.pluginmanager.get_plugin(MatrixReporter.NAME)
            matrix = reporter.matrix.to_json() if reporter is not None else {}
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(html.render(matrix, self.records, [c.to_dict() for c in self.comparisons],
                                               self._existing_logs(), base=report_path.parent))
            self.written.append(f"report: {report_path}")

    def _existing_logs(self) -> dict[str, list[str]]:
        """Console logs still on disk (a passing test's are removed unless --vmm-keep-logs)."""
        kept = {k: [p for p in v if Path(p).exists()] for k, v in self.logs.items()}
        return {k: v for k, v in kept.items() if v}

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.comparisons:
            from pytest_vmm.report import ab

            terminalreporter.section("vmm A/B against baseline")
            for line in text_table(*ab.table(self.comparisons)):
                terminalreporter.write_line(line)
            regressions = ab.failed(self.comparisons)
            terminalreporter.write_line(f"{len(regressions)} regression(s) in {len(self.comparisons)} metric(s)",
                                        red=bool(regressions))
        for line in self.written:
            terminalreporter.write_line("vmm " + line)

