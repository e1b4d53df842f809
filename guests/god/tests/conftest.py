from __future__ import annotations

import os

import pytest
from guestbuild import have_gcc


def _kvm_usable() -> str | None:
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this host"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not accessible (kvm group?)"
    return None


@pytest.fixture
def kvm() -> None:
    why = _kvm_usable()
    if why:
        pytest.skip(why)


@pytest.fixture
def gcc() -> None:
    if not have_gcc():
        pytest.skip("gcc/objcopy not installed")
