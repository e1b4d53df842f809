"""The official MCP conformance tool (npm ``@modelcontextprotocol/conformance``, pinned in
tools/mcp-conformance, installed by scripts/bootstrap.sh) against the guest, through
``vmm-mcp bridge``'s Streamable HTTP endpoint, for both spec revisions.

The tool runs once per revision (``--requirements REV``: exactly the scenarios that revision
requires); each of its scenarios is one test here. What microkernelia does not implement by
design is in the tool's own expected-failures baseline (tools/mcp-conformance/
expected-failures.yml), each entry with its reason: such a scenario is an expected failure,
and one that starts passing fails as a stale entry. Everything else (lifecycle, tools, errors,
the wire-schema checks the tool runs on every response) must pass.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_vmm import Machine
from pytest_vmm.mcp import MCP_PORT, machine_socket

pytestmark = pytest.mark.vmm_requires("mcp")

TOOLS_DIR = Path(__file__).resolve().parents[1] / "tools" / "mcp-conformance"
CLI = TOOLS_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
SHIM = TOOLS_DIR / "node20-shim.mjs"
BASELINE = TOOLS_DIR / "expected-failures.yml"
REVISIONS = ("2025-11-25", "2026-07-28")
FAILED = ("FAILURE", "WARNING")  # the tool counts both against a scenario


def _node_argv() -> list[str] | None:
    node = shutil.which("node")
    if node is None or not CLI.is_file():
        return None
    return [node, "--import", str(SHIM), str(CLI)]


def missing_tool_reason() -> str:
    if shutil.which("node") is None:
        return "node is not installed (the conformance tool is a node program)"
    return f"the pinned conformance tool is not installed in {TOOLS_DIR} (scripts/bootstrap.sh runs npm ci)"


def scenarios(revision: str) -> list[str]:
    """The server scenarios the tool runs for ``revision`` (its own list, at collection; cached
    inside node_modules, which `npm ci` replaces with each install)."""
    argv = _node_argv()
    if argv is None:
        return []
    cache = CLI.parents[3] / f".pytest-vmm-scenarios-{revision}.json"
    if cache.is_file():
        return json.loads(cache.read_text())  # type: ignore[no-any-return]
    out = subprocess.run([*argv, "list", "--server", "--requirements", revision],
                         capture_output=True, text=True, timeout=60, cwd=TOOLS_DIR, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"conformance list failed ({out.returncode}): {out.stderr[-500:]}")
    required = re.search(r"^Server scenarios.*?\n(.*?)(?:\n\s*\n|\Z)", out.stdout, re.MULTILINE | re.DOTALL)
    names = re.findall(r"^\s+- (\S+)", required.group(1), re.MULTILINE) if required else []
    # Also run, though not scored for the revision: extensions, pending, added after release.
    names += [n for n in re.findall(r"^\s+- (\S+) \[server\]", out.stdout, re.MULTILINE) if n not in names]
    if names:
        cache.write_text(json.dumps(names))
    return names


@dataclass(frozen=True)
class Baseline:
    scenarios: dict[str, str]               # whole scenario -> reason
    checks: dict[tuple[str, str], str]      # (scenario, check id) -> reason


def read_baseline(path: Path = BASELINE) -> Baseline:
    whole: dict[str, str] = {}
    checks: dict[tuple[str, str], str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = re.match(r"^\s+-\s+([\w.:-]+)\s*(?:#\s*(.*))?$", line)
        if not m:
            continue
        entry, reason = m.group(1), (m.group(2) or "").strip()
        if not reason:
            raise ValueError(f"{path}:{n}: baseline entry {entry!r} has no reason (a `# why` comment)")
        if ":" in entry:
            scenario, check = entry.split(":", 1)
            checks[(scenario, check)] = reason
        else:
            whole[entry] = reason
    return Baseline(whole, checks)


PARAMS = [pytest.param(rev, sc, id=f"{rev}-{sc}") for rev in REVISIONS for sc in scenarios(rev)]
_RUNS: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}


def run_tool(machine: Machine, revision: str, out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Run the tool once for ``revision`` against a bridge on ``machine``: scenario -> checks."""
    from pytest_vmm.mcp_bridge import BridgeHTTPServer

    argv = _node_argv()
    assert argv is not None
    server = BridgeHTTPServer(machine_socket(machine), MCP_PORT)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="mcp-bridge-http")
    thread.start()
    try:
        proc = subprocess.run([*argv, "server", "--url", server.url, "--requirements", revision,
                               "--expected-failures", str(BASELINE), "-o", str(out_dir), "--timeout", "30000"],
                              capture_output=True, text=True, timeout=600, cwd=TOOLS_DIR, check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    (out_dir / "conformance.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    results: dict[str, list[dict[str, Any]]] = {}
    for checks in sorted(out_dir.glob("server-*/checks.json")):
        name = re.sub(r"-\d{4}-\d\d-\d\dT.*$", "", checks.parent.name.removeprefix("server-"))
        results[name] = json.loads(checks.read_text())
    if not results:
        raise AssertionError(f"the conformance tool produced no results (exit {proc.returncode}):\n"
                             f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    return results


def describe(check: dict[str, Any]) -> str:
    return f"{check['id']} [{check['status']}]: {check.get('errorMessage') or check.get('description', '')}"[:400]


def test_baseline_entries_have_reasons() -> None:
    """tools/mcp-conformance/expected-failures.yml (the conformance tool's expected-failures
    format): the baseline is not empty and every entry carries its reason."""
    baseline = read_baseline()
    assert baseline.scenarios or baseline.checks


@pytest.mark.skipif(not PARAMS, reason=missing_tool_reason())
@pytest.mark.parametrize("revision, scenario", PARAMS or [pytest.param("-", "-", id="no-tool")])
def test_conformance_scenario(shared_machine: Machine, tmp_path_factory: pytest.TempPathFactory,
                              revision: str, scenario: str) -> None:
    """The official MCP conformance tool's scenario of this name, for this revision (MCP
    2025-11-25 or 2026-07-28 "requirements"): it passes, or it is an expected failure with its
    reason in the baseline."""
    key = (str(machine_socket(shared_machine)), revision)
    if key not in _RUNS:
        _RUNS[key] = run_tool(shared_machine, revision, tmp_path_factory.mktemp(f"conformance-{revision}"))
    results = _RUNS[key]
    assert scenario in results, f"the tool ran no scenario {scenario!r} for {revision} (ran: {sorted(results)})"
    checks = results[scenario]
    failing = [c for c in checks if c.get("status") in FAILED]
    baseline = read_baseline()
    if scenario in baseline.scenarios:
        assert failing, (f"{scenario} now passes: remove it from {BASELINE.name} "
                         f"(it was expected to fail: {baseline.scenarios[scenario]})")
        pytest.xfail(f"by design: {baseline.scenarios[scenario]}")
    unexpected = [c for c in failing if (scenario, c["id"]) not in baseline.checks]
    assert not unexpected, f"{scenario} ({revision}):\n  " + "\n  ".join(map(describe, unexpected))
    by_id = {c["id"]: c for c in checks}
    stale = [cid for (sc, cid) in baseline.checks if sc == scenario and by_id.get(cid, {}).get("status") == "SUCCESS"]
    assert not stale, f"{scenario}: baselined checks now pass, remove them from {BASELINE.name}: {stale}"
