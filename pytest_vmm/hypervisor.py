"""What runs a guest: the Hypervisor interface and the LaunchPlan it produces."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BootSpec

if TYPE_CHECKING:
    from pytest_vmm.machine import Machine

Accel = Literal["kvm", "tcg"]
AccelChoice = Literal["auto", "kvm", "tcg"]

# Boot timeouts are written for hardware KVM and scaled by how the guest really runs here.
# PVM emulates guest ring 0 (~4,000x slower per kernel instruction, PLATFORM.md) but our
# kernels keep ring 0 tiny; TCG emulates everything. Documented in docs/options.md.
TIMEOUT_MULTIPLIERS: dict[str, float] = {"kvm-vmx": 1.0, "kvm-svm": 1.0, "kvm-pvm": 3.0, "tcg": 4.0}


def timeout_multiplier(accel: str, host: HostInfo) -> tuple[str, float]:
    """The (label, factor) applied to boot timeouts for this accelerator on this host."""
    if accel == "kvm":
        label = f"kvm-{host.kvm_flavour}"
        return label, TIMEOUT_MULTIPLIERS.get(label, 1.0)
    return accel, TIMEOUT_MULTIPLIERS.get(accel, 1.0)


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


@dataclass
class LaunchPlan:
    """A process to start with the guest's serial console on its stdio."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # Files the hypervisor creates that the machine must see gone after shutdown.
    sockets: list[Path] = field(default_factory=list)
    companions: list[Companion] = field(default_factory=list)


class Hypervisor(abc.ABC):
    """Turns a BootSpec into a process. Subclasses are registered by entry point or hook."""

    name: str = ""
    description: str = ""
    accels: tuple[Accel, ...] = ("kvm",)
    # Capabilities this hypervisor can offer a guest beyond the console (e.g. "vsock").
    provides: frozenset[str] = frozenset()
    # What the host process (machine.pid) runs besides the VMM under test, "" when it is the
    # VMM alone: checks that read the VMM's CPU time from /proc say so and bound it accordingly.
    process_also_runs: str = ""

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

    @abc.abstractmethod
    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        """The command line that boots ``spec`` with the console on stdio."""

    def request_stop(self, machine: Machine) -> bool:
        """Ask the guest/hypervisor to stop gracefully; True if a request was sent."""
        return False
