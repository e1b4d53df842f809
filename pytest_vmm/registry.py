"""The registry of stacks and hypervisors, and parsing of --vmm target names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Hypervisor
from pytest_vmm.stack import ImageRecipe, Stack

STACK_GROUP = "pytest_vmm.stacks"
HYPERVISOR_GROUP = "pytest_vmm.hypervisors"


class RegistryError(ValueError):
    """A name that does not resolve; the message lists the valid names."""


@dataclass(frozen=True)
class Target:
    """One cell of the matrix: a stack booted by one hypervisor."""

    stack: Stack
    hypervisor: Hypervisor
    explicit_hypervisor: bool
    # The name the user selected the stack by when it was an alias (``probe`` for ``god``).
    label: str = ""

    @property
    def id(self) -> str:
        """``god`` for the default hypervisor, ``zigu@qemu`` when one was chosen."""
        name = self.label or self.stack.name
        if self.explicit_hypervisor:
            return f"{name}@{self.hypervisor.name}"
        return name

    @property
    def capabilities(self) -> frozenset[str]:
        return self.stack.capabilities_on(self.hypervisor.name)

    @property
    def arch(self) -> str:
        """The guest architecture: the hypervisor's."""
        return self.hypervisor.arch

    @property
    def recipe(self) -> ImageRecipe | None:
        """The stack's image for this hypervisor's architecture."""
        return self.stack.recipe_for(self.hypervisor.arch)


class Registry:
    def __init__(self, host: HostInfo) -> None:
        self.host = host
        self.stacks: dict[str, Stack] = {}
        self.hypervisors: dict[str, Hypervisor] = {}
        self.load_errors: list[str] = []
        # Other names of a stack: the god stack *is* the probe kernel, so ``--vmm=probe@myvmm``
        # reads as what it does, while ``--vmm=god`` stays what it always was.
        self.aliases: dict[str, str] = {"probe": "god"}
        # Hypervisors that take any stack (command templates from vmm.toml): they are not in
        # the stacks' own lists, so STACK@NAME is allowed for every stack.
        self.open_hypervisors: set[str] = set()

    def add_stack(self, stack: Stack) -> None:
        if stack.name in self.stacks and self.stacks[stack.name] is not stack:
            raise RegistryError(f"stack {stack.name!r} is registered twice")
        if "@" in stack.name or "," in stack.name or stack.name == "all":
            raise RegistryError(f"invalid stack name {stack.name!r}")
        self.stacks[stack.name] = stack

    def add_hypervisor(self, hypervisor: Hypervisor, any_stack: bool = False) -> None:
        if not hypervisor.name:
            raise RegistryError(f"{type(hypervisor).__name__} has no name")
        self.hypervisors[hypervisor.name] = hypervisor
        if any_stack:
            self.open_hypervisors.add(hypervisor.name)

    def hypervisors_for(self, stack: Stack) -> list[str]:
        """The hypervisors a stack can be asked for: its own, then the open ones."""
        return [*stack.hypervisors, *sorted(self.open_hypervisors - set(stack.hypervisors))]

    def load_entry_points(self) -> None:
        """Load stacks and hypervisors that packages publish by entry point."""
        for group, add in ((HYPERVISOR_GROUP, self.add_hypervisor), (STACK_GROUP, self.add_stack)):
            for ep in entry_points(group=group):
                try:
                    obj = ep.load()
                    add(obj() if isinstance(obj, type) or _is_factory(obj) else obj)
                except Exception as exc:  # noqa: BLE001 - a broken third-party plugin is reported, not fatal
                    self.load_errors.append(f"{group}:{ep.name}: {type(exc).__name__}: {exc}")

    def resolve(self, spec: str) -> list[Target]:
        """Parse ``--vmm`` (``NAME[,NAME...]``, ``all``, ``STACK@HYPERVISOR``)."""
        targets: list[Target] = []
        seen: set[str] = set()
        for raw in (part.strip() for part in spec.split(",")):
            if not raw:
                continue
            for target in self._resolve_one(raw):
                if target.id not in seen:
                    seen.add(target.id)
                    targets.append(target)
        if not targets:
            raise RegistryError(f"--vmm={spec!r} names no stack; {self.valid_names()}")
        return targets

    def _resolve_one(self, raw: str) -> Iterable[Target]:
        if raw == "all":
            for each in self.stacks.values():
                yield self._target(each, None)
            return
        stack_name, _, hv_name = raw.partition("@")
        label = stack_name if stack_name not in self.stacks and stack_name in self.aliases else ""
        stack = self.stacks.get(self.aliases[stack_name] if label else stack_name)
        if stack is None:
            raise RegistryError(f"unknown stack {stack_name!r} in --vmm={raw}; {self.valid_names()}")
        if hv_name and hv_name not in self.hypervisors:
            raise RegistryError(
                f"unknown hypervisor {hv_name!r} in --vmm={raw}; "
                f"valid hypervisors: {', '.join(sorted(self.hypervisors))}"
            )
        if hv_name and hv_name not in self.hypervisors_for(stack):
            raise RegistryError(
                f"stack {stack_name!r} does not run on {hv_name!r}; "
                f"its hypervisors: {', '.join(stack.hypervisors)}"
            )
        yield self._target(stack, hv_name or None, label)

    def _target(self, stack: Stack, hv_name: str | None, label: str = "") -> Target:
        name = hv_name or stack.pick_default_hypervisor(self.host)
        hypervisor = self.hypervisors.get(name)
        if hypervisor is None:
            raise RegistryError(f"stack {stack.name!r} wants hypervisor {name!r}, which is not registered")
        return Target(stack=stack, hypervisor=hypervisor, explicit_hypervisor=hv_name is not None, label=label)

    def valid_names(self) -> str:
        return (
            f"valid stacks: {', '.join(sorted(self.stacks)) or '(none)'}, all"
            + "".join(f", {a} (= {s})" for a, s in sorted(self.aliases.items()) if s in self.stacks) + "; "
            f"hypervisors (STACK@HYPERVISOR): {', '.join(sorted(self.hypervisors)) or '(none)'}"
        )


def _is_factory(obj: object) -> bool:
    return callable(obj) and not isinstance(obj, (Stack, Hypervisor))
