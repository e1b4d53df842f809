"""Fixtures for the zigu guest's own tests: one build per session (guests/zigu/build.py into
a temporary directory), the host ABI library loaded from it, and a QEMU boot helper."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from zigu_testlib import ZIGU, qemu_unavailable


def _have_zig() -> bool:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def zigu_build(tmp_path_factory) -> Path:
    """OUT_DIR of `python guests/zigu/build.py --out OUT_DIR` (zigu.elf, libzigu_abi.so, header)."""
    if not _have_zig():
        pytest.skip("ziglang (PyPI) is not installed: pip install ziglang")
    out = tmp_path_factory.mktemp("zigu-build")
    r = subprocess.run(["nice", sys.executable, str(ZIGU / "build.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.fail(f"zigu build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return out


@pytest.fixture(scope="session")
def host_abi(zigu_build):
    os.environ["ZIGU_ABI_LIB"] = str(zigu_build / "libzigu_abi.so")
    import ukernel_abi

    ukernel_abi.load(zigu_build / "libzigu_abi.so")
    return ukernel_abi.HostAbi(zigu_build / "libzigu_abi.so")


@pytest.fixture
def zigu_guest(zigu_build, tmp_path, host_abi):
    """A booted zigu kernel on QEMU microvm (KVM if usable, else TCG); killed afterwards."""
    why = qemu_unavailable()
    if why:
        pytest.skip(why)
    from ukernel_channel import QemuGuest

    g = QemuGuest(zigu_build / "zigu.elf", log_path=str(tmp_path / "console.log"), boot_timeout=60.0)
    try:
        yield g
    finally:
        g.close()
        assert not g.child.isalive(), "the VM must be gone after the test"
