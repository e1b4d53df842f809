"""What runs a guest: the Hypervisor interface and the LaunchPlan it produces.

A hypervisor sees a ``BootSpec`` and writes a ``LaunchPlan``; when asked to stop it sees the
plan and a ``ProcessControl`` (two signals), never the Machine: layering is
host <- stack <- hypervisor <- machine, with no import going back up.
"""

from __future__ import annotations

import abc
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec, ImageRecipe

# hvf: macOS's Hypervisor.framework (qemu-virt on Apple Silicon).
Accel = Literal["kvm", "tcg", "hvf"]
AccelChoice = Literal["auto", "kvm", "tcg", "hvf"]

# Boot timeouts are written for hardware KVM and scaled by how the guest really runs here.
# PVM emulates guest ring 0 (~4,000x slower per kernel instruction, PLATFORM.md) but our
# kernels keep ring 0 tiny; TCG emulates everything. Documented in docs/options.md.
TIMEOUT_MULTIPLIERS: dict[str, float] = {"kvm-vmx": 1.0, "kvm-svm": 1.0, "kvm-pvm": 3.0, "tcg": 4.0}

# Architectures a hypervisor's guests run (Hypervisor.arch), as ``uname -m`` spells them.
ARCHES = ("x86_64", "aarch64")
# How a check of that architecture is named in a skip reason ("x86 check on aarch64 target").
ARCH_CHECK_NAMES = {"x86_64": "x86", "aarch64": "arm64"}


def timeout_multiplier(accel: str, host: HostInfo) -> tuple[str, float]:
    """The (label, factor) applied to boot timeouts for this accelerator on this host."""
    if accel == "kvm":
        label = f"kvm-{host.kvm_flavour}"
        return label, TIMEOUT_MULTIPLIERS.get(label, 1.0)
    return accel, TIMEOUT_MULTIPLIERS.get(accel, 1.0)


# Bounds of Hypervisor.idle_cpu_limit, in shares of one core.
IDLE_CPU_LIMIT = 0.10
NESTED_IDLE_CPU_LIMIT = 0.60


@dataclass
class Companion:
    """A helper process the hypervisor needs (e.g. a vhost-user device backend).

    Started before the hypervisor, in its own process group, and stopped after it.
    """

    name: str
    argv: list[str]
    # The hypervisor starts only once this file exists (e.g. the backend's Unix socket).
    ready_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


# How a hypervisor's process is asked to stop before the machine escalates to signals:
# "sigterm" (god, Firecracker: SIGTERM is an orderly stop), "qmp" (a quit command on
# ``control_socket``), "none" (only the machine's SIGTERM/SIGKILL escalation).
StopMethod = Literal["sigterm", "qmp", "none"]


class ProcessControl(Protocol):
    """What a hypervisor may do to its running process: signal the leader or the group."""

    def signal_leader(self, signum: int) -> None: ...

    def signal_group(self, signum: int) -> None: ...

    @property
    def pid(self) -> int | None: ...

    def note(self, text: str) -> None:
        """Add a line to what a failure report says about this machine."""


@dataclass
class LaunchPlan:
    """A process to start with the guest's serial console on its stdio, and everything else the
    hypervisor decided about it (its control socket, where the guest's vsock appears, how to stop
    it): nothing downstream rebuilds these paths."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # Files the hypervisor creates that the machine must see gone after shutdown.
    sockets: list[Path] = field(default_factory=list)
    companions: list[Companion] = field(default_factory=list)
    # A monitor socket (QEMU's QMP) when the hypervisor has one.
    control_socket: Path | None = None
    # Host side of the guest's vsock device (Firecracker-style hybrid Unix socket).
    vsock_socket: Path | None = None
    stop: StopMethod = "none"
    # The machine's run directory, for hypervisors whose stop step names files in it.
    run_dir: Path | None = None


class Hypervisor(abc.ABC):
    """Turns a BootSpec into a process. Subclasses are registered by entry point or hook."""

    name: str = ""
    description: str = ""
    accels: tuple[Accel, ...] = ("kvm",)
    # The guest architecture this hypervisor runs (one of ARCHES): stacks build their image
    # for it (Stack.recipe_for) and suites marked vmm_arch(...) skip on the other one.
    arch: str = "x86_64"
    # Capabilities this hypervisor can offer a guest beyond the console (e.g. "vsock").
    provides: frozenset[str] = frozenset()
    # What the host process (machine.pid) runs besides the VMM under test, "" when it is the
    # VMM alone: checks that read the VMM's CPU time from /proc say so and bound it accordingly.
    process_also_runs: str = ""
    # True when its machines share one costly resource per process (a lane booted once per
    # session): under xdist all its tests then go to one worker. Otherwise a target's test
    # modules spread over the workers, each worker booting its own shared machine (cheap).
    one_worker: bool = False
    # True when a boot costs seconds (a lane) and an idle guest little (idle_cpu_limit): its
    # shared machine then stays up from one test module to the next, health-checked and
    # state-probed as within a module, instead of being shut down when the run leaves a module.
    shared_across_modules: bool = False

    @property
    def idle_cpu_limit(self) -> float:
        """The share of a core the host process may use while its guest sleeps: a VMM that
        spins on an idle vCPU costs ~100% either way. Alone, a sleeping guest costs the VMM
        next to nothing (2-3% measured); a nested VMM's own time is not visible from here, so
        the bound covers the whole emulated machine, whose idle Linux costs a fraction of a
        core (the SVM lane: 8-12% measured in CI runs)."""
        return NESTED_IDLE_CPU_LIMIT if self.process_also_runs else IDLE_CPU_LIMIT

    @abc.abstractmethod
    def problem(self, host: HostInfo) -> str:
        """Why this hypervisor cannot run here ("" when it can)."""

    def accel_problem(self, accel: str, host: HostInfo) -> str:
        if accel not in self.accels:
            return f"{self.name} supports accel {', '.join(self.accels)}, not {accel}"
        if accel == "kvm" and not host.kvm_usable:
            return host.kvm_problem or "KVM is not usable here"
        return ""

    def pick_accel(self, choice: str, host: HostInfo, preferred: str | None) -> str:
        """Resolve --vmm-accel: explicit choice > the stack's preference > KVM when usable."""
        if choice != "auto":
            return choice
        if preferred and preferred in self.accels:
            return preferred
        if "kvm" in self.accels and host.kvm_usable:
            return "kvm"
        return "tcg" if "tcg" in self.accels else self.accels[0]

    def recipes(self, host: HostInfo) -> Sequence[ImageRecipe]:
        """Images this hypervisor needs for itself (the lane's Linux), built through the
        session's build cache like a stack's; ``launch_plan`` finds them in
        ``spec.hypervisor_images`` by recipe name."""
        return ()

    @abc.abstractmethod
    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        """The command line that boots ``spec`` with the console on stdio."""

    def request_stop(self, process: ProcessControl, plan: LaunchPlan) -> bool:
        """Ask the guest/hypervisor to stop gracefully; True if a request was sent."""
        if plan.stop == "sigterm":
            process.signal_leader(signal.SIGTERM)
            return True
        return False
