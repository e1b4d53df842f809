"""A test-double stack + hypervisor registered through the public hook, for pytester tests.

``conftest_source(mode)`` returns a conftest.py that registers stack ``fake`` (and
``fake2``) on hypervisor ``proc``, which "boots" tests/fake_guest.py as a local process.
"""

from __future__ import annotations

from pathlib import Path

FAKE_GUEST = Path(__file__).with_name("fake_guest.py").resolve()

CONFTEST = '''
import sys
from pathlib import Path

import pytest

from pytest_vmm import BootSpec, Hypervisor, LaunchPlan, Stack
from pytest_vmm.hypervisor import Companion

FAKE_GUEST = Path({guest!r})
MODES = {modes!r}


class ProcessHypervisor(Hypervisor):
    name = "proc"
    description = "runs the guest as a local process (test double)"
    accels = ("tcg",)

    def problem(self, host):
        return ""

    def launch_plan(self, spec, accel, run_dir, host):
        mode = spec.cmdline.split()[0]
        companions = []
        if mode in ("with-companion", "bad-companion"):
            # A device backend: must create its socket before the hypervisor starts.
            ready = run_dir / "backend.sock"
            code = ("import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(3600)"
                    if mode == "with-companion" else "import sys; print('backend: bad config'); sys.exit(4)")
            companions.append(Companion(name="backend", argv=[sys.executable, "-c", code, str(ready), "fake_guest.py"],
                                        ready_path=ready))
        return LaunchPlan(argv=[sys.executable, "-u", str(spec.kernel), *spec.cmdline.split()],
                          companions=companions)


class MissingHypervisor(ProcessHypervisor):
    name = "missing"

    def problem(self, host):
        return "missing-hv binary not found on PATH"


class ArmProcessHypervisor(ProcessHypervisor):
    """The same process, said to run aarch64 guests (for vmm_arch)."""
    name = "proc-arm"
    arch = "aarch64"


class LaneLikeProcessHypervisor(ProcessHypervisor):
    """The same process, said to boot slowly: its shared machine outlives a module."""
    name = "proc-lane"
    shared_across_modules = True


def make_boot(mode):
    def boot(image, host, hypervisor):
        return BootSpec(kernel=FAKE_GUEST, cmdline=mode, ready=rb"fake: ready",
                        fail_patterns=[rb"Kernel panic - not syncing"], boot_timeout_s={timeout})
    return boot


def pytest_vmm_register(registry):
    registry.add_hypervisor(ProcessHypervisor())
    registry.add_hypervisor(MissingHypervisor())
    registry.add_hypervisor(ArmProcessHypervisor())
    registry.add_hypervisor(LaneLikeProcessHypervisor())
    for name, mode in MODES.items():
        registry.add_stack(Stack(
            name=name, description=f"test double ({{mode}})", recipe=None, boot=make_boot(mode),
            default_hypervisor="proc", hypervisors=("proc", "missing", "proc-arm", "proc-lane"),
            capabilities=frozenset({{"serial", "agent"}} if name == "fake" else {{"serial"}}),
        ))

'''


def conftest_source(modes: dict[str, str] | None = None, timeout: float = 10.0) -> str:
    return CONFTEST.format(guest=str(FAKE_GUEST), modes=modes or {"fake": "ok", "fake2": "ok"}, timeout=timeout)
