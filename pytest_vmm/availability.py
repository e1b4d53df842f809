"""Can a target boot here? One function, used by --vmm-list, skips and the fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import timeout_multiplier
from pytest_vmm.hypervisors.template import TemplateHypervisor
from pytest_vmm.registry import Target


@dataclass(frozen=True)
class Availability:
    accel: str
    problem: str  # "" when the target can boot here
    timeout_label: str
    timeout_factor: float

    @property
    def ok(self) -> bool:
        return not self.problem


def check(target: Target, host: HostInfo, accel_choice: str = "auto") -> Availability:
    stack, hv = target.stack, target.hypervisor
    accel = hv.pick_accel(accel_choice, host, stack.preferred_accel(host, hv.name))
    label, factor = timeout_multiplier(accel, host)
    missing = sorted(stack.needs_from_hypervisor - hv.provides)
    problems = [
        recipe_problem(target),
        f"{stack.name} needs {', '.join(missing)} from its hypervisor; {hv.name} does not provide it yet"
        if missing else "",
        hv.problem(host),
        hv.stack_problem(stack) if isinstance(hv, TemplateHypervisor) else "",
        hv.accel_problem(accel, host),
        stack.problem(host, hv.name),
    ]
    # The first problem is the root cause; later ones are usually consequences.
    problem = next((p for p in problems if p), "")
    return Availability(accel=accel, problem=problem, timeout_label=label, timeout_factor=factor)


def recipe_problem(target: Target) -> str:
    recipe = target.recipe
    if recipe is None:
        return ""
    for part in (recipe.sources, *recipe.command):
        path = Path(str(part))
        if path.is_absolute() and path.is_relative_to(recipe.sources) and not path.exists():
            return f"guest not implemented in this checkout: {path} is missing"
    host = HostInfo.detect()
    for requirement in recipe.requires:
        problem = requirement(host)
        if problem:
            return problem
    return ""
