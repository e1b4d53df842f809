"""guests/linux/foreign.py: arm64 packages from apt lists kept in the cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "guests" / "linux"))
import foreign  # noqa: E402


def test_versioned_kernel_is_read_from_the_meta_package_depends() -> None:
    line = "linux-image-6.1.0-57-arm64 (= 6.1.192-3)"
    m = foreign.ARM64_PKG_RE.search(line)
    assert m and m.groups() == ("linux-image-6.1.0-57-arm64", "6.1.192-3")


def test_apt_is_pointed_at_lists_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The system's apt configuration is never touched: lists, cache and status are ours."""
    monkeypatch.setenv("PYTEST_VMM_CACHE", str(tmp_path))
    opts = " ".join(foreign.ForeignApt("arm64")._options())
    assert "APT::Architectures=arm64" in opts
    assert f"Dir::State::Lists={tmp_path}/apt-arm64/lists" in opts
    assert "Dir::State::status=/dev/null" in opts


def test_offline_without_a_cache_names_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_VMM_CACHE", str(tmp_path))
    monkeypatch.setattr(foreign.shutil, "which", lambda tool: None)
    with pytest.raises(foreign.KernelUnavailable, match="apt-get not found"):
        foreign.fetch_deb("busybox-static")
