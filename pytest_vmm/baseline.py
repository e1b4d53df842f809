"""The known-divergence baseline (``--vmm-baseline=PATH``, ini ``vmm_baseline``).

A TOML file listing checks known to fail on some targets, each with its reason, in the style
of MCP conformance's expected-failures list::

    [[divergence]]
    check = "suites/test_interrupts.py::test_eoi_releases_one_pending_interrupt"
    targets = ["god", "zigu"]      # optional globs over target ids; default: every target
    kvm_flavour = "pvm"            # optional: only on a host whose KVM is this flavour
    intermittent = false           # optional: the platform fails this check in some runs only
    reason = "PVM's in-kernel LAPIC clears ISR at delivery"

``check`` is a glob over the check instance id: the node id with the target's parameter
removed (``...::test_lapic_oneshot_latency[1000]``). A listed check that fails reports as
"known divergence: <reason>" (an xfail); one that passes is stale and fails, so the baseline
cannot rot.

``intermittent = true`` is for a platform defect that shows in some runs only (a race in a
nested hypervisor, say): its failure reports as "known divergence: (intermittent) <reason>",
its pass is a pass and is listed in the summary's "did not show" section, so the entry stays
visible either way. Keep such entries to traced platform defects: an intermittent failure of
the code under test is a bug to fix, not to list.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

KNOWN_PREFIX = "known divergence: "
INTERMITTENT_MARK = "(intermittent) "
PROP_INTERMITTENT_ABSENT = "vmm_intermittent_absent"  # on a pass: the listed platform failure did not show
STALE_PREFIX = "stale known divergence: "


class BaselineError(Exception):
    """The baseline file is missing or malformed: the message names the file and the problem."""


@dataclass(frozen=True)
class Divergence:
    check: str
    reason: str
    targets: tuple[str, ...] = ()
    kvm_flavour: str | None = None
    intermittent: bool = False

    def applies(self, check_id: str, target: str, kvm_flavour: str) -> bool:
        if not fnmatch.fnmatchcase(check_id, self.check):
            return False
        if self.targets and not any(fnmatch.fnmatchcase(target, t) for t in self.targets):
            return False
        return self.kvm_flavour is None or self.kvm_flavour == kvm_flavour


@dataclass(frozen=True)
class Baseline:
    path: Path
    entries: tuple[Divergence, ...]

    def match(self, check_id: str, target: str, kvm_flavour: str) -> Divergence | None:
        return next((e for e in self.entries if e.applies(check_id, target, kvm_flavour)), None)


_KEYS = {"check", "reason", "targets", "kvm_flavour", "intermittent"}


def load(path: Path) -> Baseline:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"--vmm-baseline: no such file {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BaselineError(f"--vmm-baseline {path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"divergence"}
    if unknown:
        raise BaselineError(f"--vmm-baseline {path}: unknown top-level key(s) {sorted(unknown)}; "
                            f"entries go in [[divergence]] tables")
    entries = []
    for i, raw in enumerate(data.get("divergence", []), 1):
        where = f"--vmm-baseline {path}, divergence #{i}"
        if not isinstance(raw, dict):
            raise BaselineError(f"{where}: expected a table")
        extra = set(raw) - _KEYS
        if extra:
            raise BaselineError(f"{where}: unknown key(s) {sorted(extra)}; known: {sorted(_KEYS)}")
        check, reason = raw.get("check"), raw.get("reason")
        if not isinstance(check, str) or "::" not in check:
            raise BaselineError(f"{where}: 'check' must be a check id like 'suites/test_x.py::test_y', got {check!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise BaselineError(f"{where}: 'reason' must say why the divergence is known")
        targets = raw.get("targets", [])
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise BaselineError(f"{where}: 'targets' must be a list of target ids, got {targets!r}")
        flavour = raw.get("kvm_flavour")
        if flavour is not None and not isinstance(flavour, str):
            raise BaselineError(f"{where}: 'kvm_flavour' must be a string, got {flavour!r}")
        intermittent = raw.get("intermittent", False)
        if not isinstance(intermittent, bool):
            raise BaselineError(f"{where}: 'intermittent' must be true or false, got {intermittent!r}")
        entries.append(Divergence(check, reason.strip(), tuple(targets), flavour, intermittent))
    return Baseline(path, tuple(entries))


def check_instance_id(nodeid: str, target: str) -> str:
    """The node id with the target's parameter taken out: ``f.py::t[god-1000]`` -> ``f.py::t[1000]``."""
    head, sep, params = nodeid.partition("[")
    if not sep:
        return nodeid
    parts = params.removesuffix("]")
    if parts == target:
        return head
    for candidate in (f"{target}-", f"-{target}"):
        if parts.startswith(candidate) and candidate.endswith("-"):
            return f"{head}[{parts[len(candidate):]}]"
        if parts.endswith(candidate) and candidate.startswith("-"):
            return f"{head}[{parts[:-len(candidate)]}]"
    middle = f"-{target}-"
    if middle in parts:
        return f"{head}[{parts.replace(middle, '-', 1)}]"
    return nodeid
