"""Where a run's time goes, by phase of a machine's life: build, boot, check, shutdown.

Each test's factory (and the shared pool) measures build/boot/shutdown; the plugin puts the
seconds on the test's teardown report as ``vmm_phases`` (a plain dict, so it crosses xdist
workers with the report); the call report's duration is the check. What the setup and
teardown reports took beyond build, boot and shutdown is the "fixtures" column (attaching
channels, health checks, leak checks, other fixtures), so each row sums to the tests' own time.
``PhaseProfile`` runs on the controller and prints the table at the end (``--vmm-profile``, or
always at ``-v``), with the run's wall time beside the tests' summed time: the gap is what
pytest spends outside any test (collection, hooks, reporting) or, under xdist, the overlap.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from pytest_vmm.factory import PHASES
from pytest_vmm.matrix import PROP_TARGET, text_table

REPORT_ATTR = "vmm_phases"
# The column for setup/teardown time outside the factory's phases (all but the check).
FIXTURES = "fixtures"
FACTORY_PHASES = tuple(p for p in PHASES if p != "check")


class PhaseProfile:
    NAME = "vmm-phase-profile"

    def __init__(self) -> None:
        # target -> phase -> [seconds, count]
        self.totals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
        # target -> seconds of its setup and teardown reports (the fixtures column is this
        # minus build, boot and shutdown)
        self.setup_teardown: dict[str, float] = defaultdict(float)
        self.tests_seconds = 0.0
        self.began = time.monotonic()

    def _add(self, target: str, phase: str, seconds: float) -> None:
        cell = self.totals[target][phase]
        cell[0] += seconds
        cell[1] += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.tests_seconds += report.duration
        target = dict(report.user_properties).get(PROP_TARGET)
        if target is None:
            return
        if report.when == "call":
            self._add(str(target), "check", report.duration)
        else:
            self.setup_teardown[str(target)] += report.duration
        for phase, seconds in (getattr(report, REPORT_ATTR, None) or {}).items():
            if seconds > 0:
                self._add(str(target), phase, float(seconds))

    def _fixtures(self, target: str) -> float:
        phases = self.totals[target]
        inside = sum(phases[p][0] for p in FACTORY_PHASES if p in phases)
        return max(0.0, self.setup_teardown.get(target, 0.0) - inside)

    def rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["target", *(f"{p} s (n)" for p in PHASES), f"{FIXTURES} s", "total s"]
        rows = []
        grand: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for target in sorted(self.totals):
            phases = self.totals[target]
            fixtures = self._fixtures(target)
            grand[FIXTURES][0] += fixtures
            row = [target]
            for phase in PHASES:
                seconds, count = phases.get(phase, [0.0, 0])
                grand[phase][0] += seconds
                grand[phase][1] += count
                row.append(f"{seconds:.1f} ({int(count)})")
            row += [f"{fixtures:.1f}", f"{sum(phases[p][0] for p in phases) + fixtures:.1f}"]
            rows.append(row)
        if len(rows) > 1:
            rows.append(["all", *(f"{grand[p][0]:.1f} ({int(grand[p][1])})" for p in PHASES),
                         f"{grand[FIXTURES][0]:.1f}", f"{sum(v[0] for v in grand.values()):.1f}"])
        return header, rows

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        if not self.totals:
            return
        if not (config.getoption("vmm_profile", False) or config.getoption("verbose", 0) > 0):
            return
        terminalreporter.section("vmm phase profile (seconds summed over tests; n = how many)")
        for line in text_table(*self.rows()):
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            f"run wall time {time.monotonic() - self.began:.1f} s; every test's setup, call and "
            f"teardown summed {self.tests_seconds:.1f} s (of which targets' above; the rest are "
            "tests without a target)")
