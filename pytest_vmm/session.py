"""Per-process plugin state: registry, selected targets, build cache, machine factory, pool."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_vmm import availability, options
from pytest_vmm import config as declarations
from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
from pytest_vmm.errors import MachineError, TargetUnavailable
from pytest_vmm.factory import MachineFactory
from pytest_vmm.host import HostInfo
from pytest_vmm.machine import Machine, MachineConfig
from pytest_vmm.progress import Display
from pytest_vmm.registry import Registry, RegistryError, Target
from pytest_vmm.stack import BootTransform, BuiltImage, ChannelHost, ImageRecipe


def build_registry(config: pytest.Config) -> Registry:
    registry = Registry(HostInfo.detect())
    registry.load_entry_points()
    declarations.register(config, registry)  # vmm.toml: command-template hypervisors, declared stacks
    config.hook.pytest_vmm_register(registry=registry)
    return registry


class VmmSession:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.host = HostInfo.detect()
        self.registry = build_registry(config)
        spec = str(options.get(config, "vmm") or options.DEFAULT_STACKS)
        try:
            self.targets = self.registry.resolve(spec)
        except RegistryError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.accel_choice = str(options.get(config, "vmm_accel") or "auto")
        timeout = options.get(config, "vmm_boot_timeout")
        self.boot_timeout = float(timeout) if timeout is not None else None  # type: ignore[arg-type]
        cache = options.get(config, "vmm_cache")
        self._display = Display()
        self.cache = ArtifactCache(Path(str(cache)).expanduser() if cache else DEFAULT_CACHE_ROOT, self._progress,
                                   lambda line: self._progress(line, transient=True))
        artifacts = options.get(config, "vmm_artifacts")
        self._artifacts_root = Path(str(artifacts)).expanduser().resolve() if artifacts else None
        self.keep_logs = bool(options.get(config, "vmm_keep_logs"))
        self.min_tok_s = float(options.get(config, "vmm_min_tok_s") or options.DEFAULT_MIN_TOK_S)  # type: ignore[arg-type]
        self._availability: dict[str, availability.Availability] = {}
        self._images: dict[str, BuiltImage] = {}

    # --------------------------------------------------------------- targets
    def availability(self, target: Target) -> availability.Availability:
        if target.id not in self._availability:
            self._availability[target.id] = availability.check(target, self.host, self.accel_choice)
        return self._availability[target.id]

    def targets_for(self, names: tuple[str, ...] | None) -> list[Target]:
        """Selected targets, narrowed by a ``vmm_stacks(...)`` marker when given."""
        if not names:
            return list(self.targets)
        return [t for t in self.targets if t.stack.name in names or t.id in names]

    # -------------------------------------------------------------- artifacts
    def artifacts_root(self) -> Path:
        if self._artifacts_root is None:
            factory = self.config._tmp_path_factory  # type: ignore[attr-defined]
            self._artifacts_root = factory.getbasetemp() / "vmm-artifacts"
        return self._artifacts_root

    def artifacts_dir_for(self, name: str) -> Path:
        safe = re.sub(r"[^\w.@-]+", "_", name).strip("_")[-150:]
        path = self.artifacts_root() / safe
        path.mkdir(parents=True, exist_ok=True)
        return path

    def image(self, target: Target) -> BuiltImage:
        recipe = target.recipe
        if recipe is None:
            # A stack without a recipe boots files it names itself (e.g. a prebuilt kernel).
            return BuiltImage(target.stack.name, Path.cwd())
        return self.built(recipe)

    def built(self, recipe: ImageRecipe) -> BuiltImage:
        """``recipe`` through the build cache, resolved once per session: every machine of a
        run boots the same image even if its sources change while it runs."""
        if recipe.name not in self._images:
            self._images[recipe.name] = self.cache.build(recipe)
        return self._images[recipe.name]

    def _progress(self, line: str, transient: bool = False) -> None:
        """Show build progress on the real terminal even while output is captured."""
        capman = self.config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            with capman.global_and_fixture_disabled():
                self._display.write(sys.stderr, line, transient)
        else:
            self._display.write(sys.stderr, line, transient)

    # ---------------------------------------------------------------- machines
    def new_machine(self, target: Target, artifacts_dir: Path,
                    variants: Sequence[BootTransform] = ()) -> Machine:
        """Build (cached) and describe a machine for ``target``, its BootSpec passed through
        ``variants``; unstarted. Machines of a test come from a MachineFactory, which calls this."""
        avail = self.availability(target)
        if not avail.ok:
            raise TargetUnavailable(f"{target.id} cannot boot here: {avail.problem}")
        image = self.image(target)
        spec = target.stack.boot(image, self.host, target.hypervisor.name)
        from_options = target.stack.option_variant(lambda name: options.get(self.config, name),
                                                   target.hypervisor.name)
        if from_options is not None:
            spec = from_options(spec)
        for recipe in target.hypervisor.recipes(self.host):
            spec.hypervisor_images[recipe.name] = self.built(recipe)
        for variant in variants:
            spec = variant(spec)
        base = self.boot_timeout if self.boot_timeout is not None else spec.boot_timeout_s
        return Machine(MachineConfig(
            target_id=target.id,
            stack=target.stack.name,
            hypervisor=target.hypervisor,
            spec=spec,
            accel=avail.accel,
            host=self.host,
            artifacts_dir=artifacts_dir,
            boot_timeout_s=base * avail.timeout_factor,
            timeout_factor=avail.timeout_factor,
            channels=dict(target.stack.channels),
            capabilities=target.stack.capabilities,
            health=target.stack.health or (agent_answers if "agent" in target.stack.channels else None),
        ))


def agent_answers(machine: ChannelHost) -> bool:
    """Default health probe of a shared guest with an agent: it still answers ``ping``."""
    from pytest_vmm.agent.client import AgentError, AgentTimeout

    try:
        machine.channel("agent").ping()
    except (AgentError, AgentTimeout, MachineError, OSError):
        return False
    return True


class MachinePool:
    """One shared machine per target per process (xdist worker), rebooted if it died.

    Its machines come from one factory that outlives the tests using them."""

    def __init__(self, session: VmmSession, worker: str) -> None:
        self.session = session
        self.worker = worker
        self.machines: dict[str, Machine] = {}
        self.reboots: dict[str, int] = {}
        # The last device-state reading of each target's machine, by the probe that took it:
        # the state after one shared check is the state before the next.
        self.last_state: dict[str, tuple[object, dict[str, object]]] = {}
        self.factory = MachineFactory(session, session.artifacts_root())

    def get(self, target: Target) -> Machine:
        current = self.machines.get(target.id)
        if current is not None:
            if current.healthy() and not current.crashed():
                return current
            self.discard(target)
        name = f"shared-{target.id}-{self.worker}-{self.reboots.get(target.id, 0)}"
        self.machines[target.id] = self.factory.boot(target, name=name)
        return self.machines[target.id]

    def discard(self, target: Target) -> None:
        """Shut the target's shared machine down now: the next check gets a fresh one."""
        current = self.machines.pop(target.id, None)
        self.last_state.pop(target.id, None)
        if current is not None:
            self.reboots[target.id] = self.reboots.get(target.id, 0) + 1
            self.factory.shutdown(current)

    def take_phases(self) -> dict[str, float]:
        """Phase seconds spent since the last call (a test that booted a shared machine is
        charged with its boot)."""
        phases, self.factory.phases = self.factory.phases, {}
        return phases

    def close(self) -> list[str]:
        self.machines.clear()
        self.last_state.clear()
        return self.factory.close()

    def leave_module(self) -> list[str]:
        """The run leaves a test module: shut down the shared machines whose hypervisor does
        not keep them across modules (an idle guest must not take CPU from later tests); the
        problems, one line each."""
        problems = []
        for target_id, machine in list(self.machines.items()):
            if machine.config.hypervisor.shared_across_modules:
                continue
            del self.machines[target_id]
            self.last_state.pop(target_id, None)
            try:
                self.factory.shutdown(machine)
            except Exception as exc:  # noqa: BLE001 - report every leak, not just the first
                problems.append(str(exc))
        return problems
