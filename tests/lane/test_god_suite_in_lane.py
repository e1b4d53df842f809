"""god's own test suite (guests/god/tests), run inside the SVM lane over the real kvm_amd.

Each inner test is its own item here (``test_in_lane[<inner node id>]``), collected from
the same files on the host; its outcome, message and output come from the JUnit document
the lane's pytest wrote. The whole suite runs in the session's one lane boot (conftest).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache

import pytest

from tests.lane.conftest import LaneBoot, inner_god_tests


def _junit_key(nodeid: str) -> tuple[str, str]:
    """JUnit (classname, name) of a pytest node id: tests/a/b.py::C::t -> (tests.a.b.C, t)."""
    path, *rest = nodeid.split("::")
    classname = ".".join([path[:-3].replace("/", "."), *rest[:-1]])
    return classname, rest[-1]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "inner" in metafunc.fixturenames:
        ids = _collected()
        metafunc.parametrize("inner", ids or ["(god's tests did not collect on the host)"],
                             ids=[i.replace("::", ".").removeprefix("tests/") for i in ids] or None)


@lru_cache(maxsize=1)
def _collected() -> list[str]:
    return inner_god_tests()


@lru_cache(maxsize=4)
def _results(junit: bytes) -> dict[tuple[str, str], ET.Element]:
    root = ET.fromstring(junit)
    return {(case.get("classname", ""), case.get("name", "")): case for case in root.iter("testcase")}


def test_in_lane(lane_boot: LaneBoot, inner: str) -> None:
    if lane_boot.junit is None:
        pytest.fail(f"the lane wrote no JUnit document (status {lane_boot.result.status}, "
                    f"timings {lane_boot.timings}); console: {lane_boot.result.log}\n"
                    + lane_boot.result.console[-3000:].decode(errors="replace"))
    case = _results(lane_boot.junit).get(_junit_key(inner))
    if case is None:
        pytest.fail(f"{inner} did not run in the lane (not in its JUnit document); console: {lane_boot.result.log}")
    for tag in ("failure", "error"):
        bad = case.find(tag)
        if bad is not None:
            detail = (bad.text or "")[-4000:]
            pytest.fail(f"in the lane ({tag}): {bad.get('message', '')}\n{detail}", pytrace=False)
    skipped = case.find("skipped")
    if skipped is not None:
        pytest.skip(f"in the lane: {skipped.get('message', '')}")
