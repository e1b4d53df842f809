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
    assert both[0] == "probe" and set(both) <= {"probe", "zosia-aarch64"}


def test_unknown_name_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(RegistryError):
        prebuild.recipes_for("nope", HostInfo.detect())
    assert prebuild.main(["nope", "--cache", str(tmp_path), "--nice", "0"]) == 4
    assert "unknown stack 'nope'" in capsys.readouterr().err
