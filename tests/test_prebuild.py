"""python -m pytest_vmm.prebuild: the images a --vmm selection needs, once each, through the
plugin's own cache (scripts/test.sh runs it beside the test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vmm import prebuild
from pytest_vmm.host import HostInfo
from pytest_vmm.registry import RegistryError


def test_recipes_of_a_selection_each_once_in_order() -> None:
    host = HostInfo.detect()
    names = [r.name for r in prebuild.recipes_for("god,god@qemu,probe", host)]
    assert names == ["probe"]  # god, god@qemu and the alias boot one image
    both = [r.name for r in prebuild.recipes_for("god,zosia@qemu-virt", host)]
    assert set(both) <= {"probe", "zosia-aarch64"}
    if len(both) == 2:  # the llama.cpp build (minutes) starts before the probe (seconds)
        assert both == ["zosia-aarch64", "probe"]


def test_longest_cold_builds_first_then_spec_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run needs the small images first and builds them itself in seconds; a long build
    started last is what it would wait for."""
    import dataclasses

    from pytest_vmm.stack import ImageRecipe

    made = [ImageRecipe(name=n, sources=Path("/x") / n, command=("true",), cold_build_s=s)
            for n, s in (("a", 0), ("llama", 500), ("b", 0), ("zig", 100))]
    assert [r.name for r in prebuild.build_order(made)] == ["llama", "zig", "a", "b"]
    assert dataclasses.replace(made[1], name="llama2").cold_build_s == 500


def test_unknown_name_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(RegistryError):
        prebuild.recipes_for("nope", HostInfo.detect())
    assert prebuild.main(["nope", "--cache", str(tmp_path), "--nice", "0"]) == 4
    assert "unknown stack 'nope'" in capsys.readouterr().err
