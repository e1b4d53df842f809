"""The CI workflow example is valid: YAML, a minimal GitHub Actions schema (the official one is
not downloadable at test time), and it uses this project's real options and commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from pytest_vmm.report.__main__ import main as report_main

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "conformance.yml"

# The parts of https://json.schemastore.org/github-workflow.json this workflow relies on.
STEP = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "uses": {"type": "string", "pattern": r"^[\w.-]+/[\w.-]+@v\d+$"},
                   "run": {"type": "string"}, "with": {"type": "object"}, "if": {"type": ["string", "boolean"]},
                   "env": {"type": "object"}, "id": {"type": "string"}},
    "additionalProperties": False,
    "oneOf": [{"required": ["uses"]}, {"required": ["run"]}],
}
JOB = {
    "type": "object",
    "required": ["runs-on", "steps"],
    "properties": {
        "name": {"type": "string"}, "runs-on": {"type": ["string", "array"]},
        "needs": {"type": ["string", "array"]}, "if": {"type": ["string", "boolean"]},
        "timeout-minutes": {"type": "number"}, "env": {"type": "object"},
        "strategy": {"type": "object", "properties": {"fail-fast": {"type": "boolean"},
                                                      "matrix": {"type": "object"}},
                     "additionalProperties": False},
        "steps": {"type": "array", "minItems": 1, "items": STEP},
    },
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "required": ["name", "on", "jobs"],
    "properties": {"name": {"type": "string"}, "on": {"type": ["object", "string", "array"]},
                   "permissions": {"type": "object"}, "env": {"type": "object"},
                   "jobs": {"type": "object", "minProperties": 1,
                            "patternProperties": {r"^[A-Za-z_][\w-]*$": JOB}, "additionalProperties": False}},
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    if True in data:  # YAML 1.1 reads the bare key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def test_workflow_matches_the_schema(workflow: dict) -> None:
    jsonschema.validate(workflow, SCHEMA)
    for job in workflow["jobs"].values():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in workflow["jobs"], f"needs unknown job {need}"


def test_shards_cover_every_index(workflow: dict) -> None:
    shard_job = workflow["jobs"]["shard"]
    shards = shard_job["strategy"]["matrix"]["shard"]
    total = int(workflow["env"]["SHARDS"])
    assert sorted(shards) == list(range(1, total + 1))
    run = next(s["run"] for s in shard_job["steps"] if "--vmm-shard" in s.get("run", ""))
    assert "--vmm-shard=${{ matrix.shard }}/$SHARDS" in run
    # Every expression names something that exists: matrix keys only in the matrix job.
    for name, job in workflow["jobs"].items():
        text = yaml.safe_dump(job)
        for key in re.findall(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", text):
            assert key in job.get("strategy", {}).get("matrix", {}), f"{name} uses matrix.{key}"


def test_the_workflow_uses_real_options_and_commands(workflow: dict, pytestconfig: pytest.Config) -> None:
    runs = " ".join(s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"])
    for option in set(re.findall(r"(--vmm[\w-]*)=", runs)) | {"--junitxml", "--hypothesis-profile"}:
        dest = option.lstrip("-").replace("-", "_")
        if option.startswith("--vmm"):
            assert pytestconfig.getoption(dest, default="missing") != "missing", f"unknown option {option}"
    merge = next(s["run"] for s in workflow["jobs"]["merge"]["steps"] if "pytest_vmm.report merge" in s.get("run", ""))
    argv = shlex.split(merge.split("pytest_vmm.report", 1)[1])
    assert argv[0] == "merge" and "--summary" in argv and "--out" in argv
    with pytest.raises(SystemExit) as exc:
        report_main([*argv[:1], "--help"])
    assert exc.value.code == 0
    uploads = [s for job in workflow["jobs"].values() for s in job["steps"]
               if s.get("uses", "").startswith("actions/upload-artifact")]
    assert len(uploads) == 2 and any(s["with"]["path"] == "out/" for s in uploads)
    assert "GITHUB_STEP_SUMMARY" in merge
