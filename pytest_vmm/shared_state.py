"""The guard of a shared guest: the device state a ``vmm_shared`` check must leave as it found it.

A module of shared checks names a state probe (marker ``vmm_shared_state(probe=...)``): a function
of the machine that reads, without side effects, the registers its checks touch. The plugin
reads it before and after each shared check; when they differ, the shared guest is rebooted
before the next check. So a device whose "put back" is broken shows in the check that broke it,
not again in every check after it, and the run says which register it was
(``vmm shared guests rebooted`` in the terminal summary; the ``vmm_shared_state_changed``
property in JUnit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_vmm.errors import MachineError

StateProbe = Callable[[Any], Mapping[str, object]]

MARKER = "vmm_shared_state"
PROP_STATE_CHANGED = "vmm_shared_state_changed"


def probe_of(node: pytest.Item) -> StateProbe | None:
    """The state probe a check's closest ``vmm_shared_state`` marker names, if any.

    ``vmm_shared_state(probe=None, reason="...")`` says why a module needs none (its checks only
    read, or what they change no probe can read)."""
    marker = node.get_closest_marker(MARKER)
    if marker is None:
        return None
    # A keyword: pytest takes a marker's lone callable argument for the function it decorates.
    probe = marker.kwargs.get("probe")
    if probe is None and not marker.args and str(marker.kwargs.get("reason", "")).strip():
        return None
    if marker.args or not callable(probe):
        raise pytest.UsageError(f"{node.nodeid}: {MARKER} takes probe=callable (machine -> mapping), or "
                                f"probe=None with a reason; got {marker.args!r} {marker.kwargs!r}")
    return probe


def read(probe: StateProbe, machine: Any) -> dict[str, object]:
    """The probe's reading; any failure of it is a MachineError naming the probe."""
    try:
        return dict(probe(machine))
    except MachineError:
        raise
    except Exception as exc:
        name = getattr(probe, "__qualname__", repr(probe))
        raise MachineError(f"{machine.target_id}: shared-state probe {name} failed: {exc!r}") from exc


def changes(before: Mapping[str, object], after: Mapping[str, object]) -> list[str]:
    """What differs, one 'name: before -> after' per register, in the probe's order."""
    names = list(before) + [name for name in after if name not in before]
    return [f"{name}: {_shown(before.get(name))} -> {_shown(after.get(name))}"
            for name in names if before.get(name) != after.get(name)]


def _shown(value: object) -> str:
    return f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


class RebootReporter:
    """Lists, at the end of the run, each shared check after which its guest was rebooted
    because the device state had changed (registered on the controller: it sees every
    worker's reports)."""

    NAME = "vmm-shared-state-reporter"

    def __init__(self) -> None:
        self.reboots: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        self.reboots += [(report.nodeid, str(value)) for key, value in report.user_properties
                         if key == PROP_STATE_CHANGED]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.reboots:
            return
        terminalreporter.section("vmm shared guests rebooted (a check left device state changed)")
        for nodeid, what in self.reboots:
            terminalreporter.write_line(f"{nodeid}: {what}")
