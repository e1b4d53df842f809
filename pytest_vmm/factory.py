"""MachineFactory: the one owner of a machine's life, from image to leak check.

Every machine of the plugin comes from a factory (the ``machine`` fixture, the shared pool,
suites that boot variants such as zosia's modes), in the spirit of Firecracker's
``microvm_factory``: build the target's image (cached), apply the boot variant (a
``BootSpec`` transform) before the machine exists, start it (``Machine.start`` cleans up
after its own failure), hand it to ``on_machine`` (failure reports, JUnit properties,
metrics) and, at ``close()``, shut every machine down with the leak check. The time of each
phase goes to ``phases`` for the run's profile (--vmm-profile).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from pytest_vmm.machine import Machine
from pytest_vmm.registry import Target
from pytest_vmm.stack import BootTransform

# Phases of a machine's life, in order, as the profile names them.
PHASES = ("build", "boot", "check", "shutdown")


class MachineFactory:
    def __init__(self, session: object, artifacts_dir: Path,
                 on_machine: Callable[[Machine], None] | None = None) -> None:
        # session: a VmmSession (typed loosely: session.py imports this module).
        self.session = session
        self.artifacts_dir = artifacts_dir
        self.on_machine = on_machine
        self.machines: list[Machine] = []
        self.phases: dict[str, float] = {}

    def _add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def build(self, target: Target, *variants: BootTransform, name: str | None = None) -> Machine:
        """An unstarted machine for ``target``: image built (cached), ``variants`` applied to its
        BootSpec in order. Raises TargetUnavailable when the target cannot boot here."""
        began = time.monotonic()
        try:
            folder = self.artifacts_dir / re.sub(r"[^\w.@-]+", "_", name) if name else self.artifacts_dir
            machine: Machine = self.session.new_machine(target, folder, variants)  # type: ignore[attr-defined]
        finally:
            self._add("build", time.monotonic() - began)
        self.machines.append(machine)
        if self.on_machine is not None:
            self.on_machine(machine)
        return machine

    def boot(self, target: Target, *variants: BootTransform, name: str | None = None) -> Machine:
        """``build`` then start: a booted machine, owned (and shut down) by this factory."""
        machine = self.build(target, *variants, name=name)
        try:
            machine.start()
        finally:
            self._add("boot", machine.phases.get("boot", 0.0))
        return machine

    def shutdown(self, machine: Machine) -> None:
        """Stop one machine now (MachineLeak on a leak); the factory forgets it."""
        if machine in self.machines:
            self.machines.remove(machine)
        try:
            machine.shutdown()
        finally:
            self._add("shutdown", machine.phases.get("shutdown", 0.0))

    def close_errors(self) -> list[Exception]:
        """Shut every machine down (even when an earlier one leaked); the errors, one each."""
        errors: list[Exception] = []
        for machine in list(self.machines):
            try:
                self.shutdown(machine)
            except Exception as exc:  # noqa: BLE001 - report every leak, not just the first
                errors.append(exc)
        return errors

    def close(self) -> list[str]:
        """``close_errors`` as one line each."""
        return [str(exc) for exc in self.close_errors()]
