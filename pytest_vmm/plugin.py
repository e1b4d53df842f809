"""The pytest plugin (entry point ``pytest11: vmm``): options, hooks, fixtures, markers, reports."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from _pytest._code.code import ExceptionRepr

from pytest_vmm import availability as availability_mod
from pytest_vmm import baseline, hookspecs, hypothesis_profiles, options, shared_state
from pytest_vmm.capabilities import CAPABILITIES, unknown_capabilities
from pytest_vmm.errors import MachineError, MachineLeak, TargetUnavailable
from pytest_vmm.factory import MachineFactory
from pytest_vmm.hypervisor import ARCH_CHECK_NAMES, ARCHES, TIMEOUT_MULTIPLIERS
from pytest_vmm.machine import Machine
from pytest_vmm.matrix import (
    PROP_CHECK,
    PROP_SPEC_ALLOWS,
    PROP_SUITE,
    PROP_TARGET,
    Matrix,
    text_table,
)
from pytest_vmm.profile import REPORT_ATTR, PhaseProfile
from pytest_vmm.registry import Target
from pytest_vmm.report import plugin as report_plugin
from pytest_vmm.session import MachinePool, VmmSession, build_registry
from pytest_vmm.stack import BootTransform

SESSION_KEY = pytest.StashKey[VmmSession]()
MACHINES_KEY = pytest.StashKey[list[Machine]]()
PHASE_REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
POOL_KEY = pytest.StashKey[MachinePool]()
FACTORY_KEY = pytest.StashKey[MachineFactory]()
BASELINE_KEY = pytest.StashKey[baseline.Baseline]()

hypothesis_profiles.register()


# ------------------------------------------------------------------ configuration
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("vmm_list"):
        _print_vmm_list(config)
        return 0
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vmm_requires(*capabilities): the test needs these stack capabilities; "
                                       "skipped with the reason on stacks that lack one")
    config.addinivalue_line("markers", "vmm_stacks(*names): run the test only on these stacks (or STACK@HV targets)")
    config.addinivalue_line("markers", "vmm_arch(*arches): the check is about one architecture's devices "
                                       "(x86_64, aarch64); skipped on targets of another architecture")
    config.addinivalue_line("markers", "vmm_shared(True|False): the check leaves the guest as it found it, so its "
                                       "`machine` may be the target's shared, health-checked guest (False: a fresh one)")
    config.addinivalue_line("markers", f"{shared_state.MARKER}(probe=fn): fn(machine) reads the device registers the "
                                       "module's shared checks must put back; the shared guest is rebooted when a check "
                                       "leaves them changed (probe=None, reason=...: why the module needs none)")
    config.addinivalue_line("markers", "vmm_spec_allows(clause, *properties): recorded values (names or globs) "
                                       "that may differ between targets, by the named spec clause")
    config.stash[SESSION_KEY] = VmmSession(config)
    baseline_path = options.get(config, "vmm_baseline")
    if baseline_path:
        try:
            config.stash[BASELINE_KEY] = baseline.load(Path(str(baseline_path)))
        except baseline.BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None
    if not _is_xdist_worker(config):
        config.pluginmanager.register(MatrixReporter(config), MatrixReporter.NAME)
        config.pluginmanager.register(PhaseProfile(), PhaseProfile.NAME)
        config.pluginmanager.register(shared_state.RebootReporter(), shared_state.RebootReporter.NAME)
        report_plugin.register(config)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With plain ``-n N`` (dist=load), schedule a target's tests by module (xdist_scheduling)."""
    if config.getoption("dist", "no") != "load":
        return None  # the user chose a distribution mode: respect it
    from pytest_vmm.xdist_scheduling import TargetScheduling

    targets = _session(config).targets
    return TargetScheduling(config, log, [t.id for t in targets],
                            [t.id for t in targets if t.hypervisor.one_worker])


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in (MatrixReporter.NAME, PhaseProfile.NAME, shared_state.RebootReporter.NAME):
        reporter = config.pluginmanager.get_plugin(name)
        if reporter is not None:
            config.pluginmanager.unregister(reporter)
    report_plugin.unregister(config)


def _session(config: pytest.Config) -> VmmSession:
    return config.stash[SESSION_KEY]


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    vmm = _session(session.config)
    if session.config.getoption("vmm_rebuild") and not _is_xdist_worker(session.config):
        for target in vmm.targets:
            if target.recipe is not None and target.recipe.sources.exists():
                vmm.cache.forget(target.recipe)


def pytest_report_header(config: pytest.Config) -> list[str]:
    vmm = _session(config)
    host = vmm.host
    lines = [f"vmm: host kvm={host.kvm_flavour} ({'usable' if host.kvm_usable else host.kvm_problem or 'absent'}), "
             f"boot timeout multipliers: " + ", ".join(f"{k} x{v:g}" for k, v in TIMEOUT_MULTIPLIERS.items())]
    for target in vmm.targets:
        avail = vmm.availability(target)
        state = "ready" if avail.ok else f"unavailable: {avail.problem}"
        lines.append(f"vmm: {target.id}: hypervisor {target.hypervisor.name}, accel {avail.accel} "
                     f"(timeouts x{avail.timeout_factor:g}), {state}")
    return lines


# ------------------------------------------------------------------- --vmm-list
def _print_vmm_list(config: pytest.Config) -> None:
    registry = build_registry(config)
    host = registry.host
    accel_choice = str(options.get(config, "vmm_accel") or "auto")
    out: list[str] = [
        f"host: KVM flavour {host.kvm_flavour}; /dev/kvm "
        + ("usable" if host.kvm_usable else f"not usable ({host.kvm_problem})"),
        "",
        "hypervisors:",
    ]
    for hv in registry.hypervisors.values():
        problem = hv.problem(host)
        out.append(f"  {hv.name:<12} {'available' if not problem else 'unavailable: ' + problem}")
        out.append(f"  {'':<12} {hv.description}; accel: {', '.join(hv.accels)}")
    out += ["", "stacks (target: can it boot here):"]
    for stack in registry.stacks.values():
        default = stack.pick_default_hypervisor(host)
        out.append(f"  {stack.name}: {stack.description}")
        out.append(f"    capabilities: {', '.join(sorted(stack.capabilities))}")
        for hv_name in registry.hypervisors_for(stack):
            if hv_name not in registry.hypervisors:
                out.append(f"    {stack.name}@{hv_name}: unavailable: hypervisor {hv_name} not registered")
                continue
            target = Target(stack, registry.hypervisors[hv_name], explicit_hypervisor=hv_name != default)
            avail = availability_mod.check(target, host, accel_choice)
            cached = ""
            if avail.ok and target.recipe is not None:
                from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
                cache_opt = options.get(config, "vmm_cache")
                cache = ArtifactCache(Path(str(cache_opt)).expanduser() if cache_opt else DEFAULT_CACHE_ROOT)
                cached = ", image cached" if cache.cached(target.recipe) else ", image built on first use"
            state = f"available (accel {avail.accel}{cached})" if avail.ok else f"unavailable: {avail.problem}"
            label = target.id + (" [default]" if hv_name == default else "")
            out.append(f"    {label}: {state}")
    for error in registry.load_errors:
        out.append(f"warning: {error}")
    print("\n".join(out))


# ------------------------------------------------------------------- collection
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vmm_stack" not in metafunc.fixturenames:
        return
    vmm = _session(metafunc.config)
    marker = metafunc.definition.get_closest_marker("vmm_stacks")
    names = tuple(marker.args) if marker else None
    targets = vmm.targets_for(names)
    if not targets:
        reason = f"none of the selected stacks ({', '.join(t.id for t in vmm.targets)}) is in vmm_stacks{names}"
        metafunc.parametrize("vmm_stack", [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-stack")],
                             indirect=True)
        return
    # xdist_group also serves --dist=loadgroup users (our default scheduler groups by target).
    params = [pytest.param(t, id=t.id, marks=pytest.mark.xdist_group(name=t.id)) for t in targets]
    metafunc.parametrize("vmm_stack", params, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    vmm = _session(config)
    for item in items:
        callspec = getattr(item, "callspec", None)
        target = callspec.params.get("vmm_stack") if callspec is not None else None
        if not isinstance(target, Target):
            continue
        avail = vmm.availability(target)
        item.user_properties += [
            (PROP_TARGET, target.id), (PROP_SUITE, item.path.stem),
            (PROP_CHECK, baseline.check_instance_id(item.nodeid, target.id).rpartition("::")[2]),
            ("stack", target.stack.name), ("hypervisor", target.hypervisor.name), ("accel", avail.accel),
            ("kvm_flavour", vmm.host.kvm_flavour),
        ]
        for allows in item.iter_markers("vmm_spec_allows"):
            clause, *names = allows.args
            item.user_properties.append((PROP_SPEC_ALLOWS, f"{clause}|{','.join(names) or '*'}"))
        if not avail.ok:
            item.add_marker(pytest.mark.skip(reason=f"{target.id} cannot boot here: {avail.problem}"))
            continue
        wrong_arch = _arch_skip_reason(item, target)
        if wrong_arch:
            item.add_marker(pytest.mark.skip(reason=wrong_arch))
            continue
        for marker in item.iter_markers("vmm_requires"):
            unknown = unknown_capabilities(marker.args)
            if unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: unknown capability {', '.join(unknown)} in vmm_requires; "
                    f"known: {', '.join(sorted(CAPABILITIES))}")
            missing = [c for c in marker.args if c not in target.capabilities]
            if missing:
                item.add_marker(pytest.mark.skip(
                    reason=f"stack {target.id} lacks capability {', '.join(missing)}"))
                break
    report_plugin.apply_shard(config, items, [t.id for t in vmm.targets])


def _arch_skip_reason(item: pytest.Item, target: Target) -> str:
    """Why a ``vmm_arch(...)`` check does not apply to this target's architecture ("" if it does)."""
    marker = item.get_closest_marker("vmm_arch")
    if marker is None:
        return ""
    unknown = [a for a in marker.args if a not in ARCHES]
    if unknown or not marker.args:
        raise pytest.UsageError(f"{item.nodeid}: vmm_arch needs architectures from {', '.join(ARCHES)}, "
                                f"got {', '.join(map(str, marker.args)) or 'none'}")
    if target.arch in marker.args:
        return ""
    names = "/".join(ARCH_CHECK_NAMES[a] for a in marker.args)
    return f"{names} check on {target.arch} target"


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def vmm(pytestconfig: pytest.Config) -> VmmSession:
    """The plugin's session state: registry, selected targets, build cache."""
    return _session(pytestconfig)


@pytest.fixture
def vmm_stack(request: pytest.FixtureRequest) -> Target:
    """The target (stack + hypervisor) this test instance runs on; parametrized from --vmm."""
    target = getattr(request, "param", None)
    if target is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses vmm_stack but no --vmm target was parametrized")
    return target


@pytest.fixture
def vmm_artifacts_dir(request: pytest.FixtureRequest, vmm: VmmSession) -> Iterator[Path]:
    """Per-test folder for console logs and metrics; removed after a pass unless --vmm-keep-logs."""
    path = vmm.artifacts_dir_for(request.node.nodeid)
    yield path
    reports = request.node.stash.get(PHASE_REPORTS_KEY, {})
    passed = all(not r.failed for r in reports.values())
    if passed and not vmm.keep_logs:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vmm_min_tok_s(vmm: VmmSession) -> float:
    """The tokens/s floor from --vmm-min-tok-s."""
    return vmm.min_tok_s


def _register(request: pytest.FixtureRequest, machine: Machine) -> None:
    """Name a machine in this test's failure reports (console tail), before it boots."""
    machines = request.node.stash.setdefault(MACHINES_KEY, [])
    if machine not in machines:
        machines.append(machine)


def _attach(request: pytest.FixtureRequest, machine: Machine) -> None:
    """Wire a machine into the running test: failure reports, JUnit properties, metrics."""
    node = request.node
    _register(request, machine)
    if machine.boot_ms is not None:
        node.user_properties.append(("boot_ms", round(machine.boot_ms, 1)))

    def record(name: str, value: float) -> None:
        node.user_properties.append((name, value))

    machine.metric_listeners.append(record)


def _detach(request: pytest.FixtureRequest, machine: Machine) -> None:
    machine.metric_listeners.clear()


class PerTestMachines(MachineFactory):
    """The factory of one test: its machines are in the test's failure reports from the
    moment they exist, and report boot time and metrics to its JUnit properties."""

    def __init__(self, request: pytest.FixtureRequest, session: VmmSession, artifacts_dir: Path) -> None:
        super().__init__(session, artifacts_dir, on_machine=lambda m: _register(request, m))
        self.request = request

    def boot(self, target: Target, *variants: BootTransform, name: str | None = None) -> Machine:
        try:
            machine = super().boot(target, *variants, name=name)
        except TargetUnavailable as exc:
            pytest.skip(str(exc))
        _attach(self.request, machine)
        return machine

    def build(self, target: Target, *variants: BootTransform, name: str | None = None) -> Machine:
        try:
            return super().build(target, *variants, name=name)
        except TargetUnavailable as exc:
            pytest.skip(str(exc))


@pytest.fixture
def machine_factory(request: pytest.FixtureRequest, vmm: VmmSession,
                    vmm_artifacts_dir: Path) -> Iterator[MachineFactory]:
    """Boots machines for this test (``machine_factory.boot(target, *variants, name=...)``; a
    variant is a ``BootSpec -> BootSpec`` transform) and owns them: after the test each one's
    console is checked for fail patterns (if the test passed) and it is shut down with the leak
    check."""
    factory = PerTestMachines(request, vmm, vmm_artifacts_dir)
    request.node.stash[FACTORY_KEY] = factory
    yield factory
    for booted in factory.machines:
        _detach(request, booted)
    call_report = request.node.stash.get(PHASE_REPORTS_KEY, {}).get("call")
    try:
        if call_report is not None and call_report.passed:
            for booted in factory.machines:
                booted.check_console()  # a panic the test did not look for still fails it
    finally:
        errors = factory.close_errors()
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise MachineLeak("; ".join(e.summary if isinstance(e, MachineError) else str(e) for e in errors))


def _may_share(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("vmm_shared")
    if marker is None or request.config.getoption("vmm_fresh", False):
        return False
    return bool(marker.args[0]) if marker.args else True


@pytest.fixture
def machine(request: pytest.FixtureRequest, machine_factory: MachineFactory, vmm_stack: Target) -> Machine:
    """A freshly booted guest for this test; shut down (and checked for leaks) afterwards.

    A check marked ``vmm_shared`` (it leaves the guest as it found it) gets the target's shared
    guest instead, health-checked before each use (``shared_machine``); ``--vmm-fresh`` undoes it.
    """
    if _may_share(request):
        return request.getfixturevalue("shared_machine")
    return machine_factory.boot(vmm_stack)


@pytest.fixture(scope="session")
def _vmm_pool(vmm: VmmSession, pytestconfig: pytest.Config) -> Iterator[MachinePool]:
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    pool = MachinePool(vmm, worker)
    pytestconfig.stash[POOL_KEY] = pool
    yield pool
    del pytestconfig.stash[POOL_KEY]
    _close_pool(pool)


def _close_pool(pool: MachinePool, leaving_module: bool = False) -> None:
    problems = pool.leave_module() if leaving_module else pool.close()
    if problems:
        pytest.fail("shared machines left things behind: " + "; ".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Shared machines live as long as their module: an idle guest (a polling kernel spins its
    vCPU) must not take CPU from the tests that come after it. Those of a hypervisor whose boots
    cost seconds (``shared_across_modules``, the lanes) live until the session ends."""
    result = yield
    pool = item.config.stash.get(POOL_KEY, None)
    if pool is not None and pool.machines:
        if nextitem is None:
            _close_pool(pool)
        elif nextitem.path != item.path:
            _close_pool(pool, leaving_module=True)
    return result


@pytest.fixture
def shared_machine(request: pytest.FixtureRequest, vmm_stack: Target, _vmm_pool: MachinePool) -> Iterator[Machine]:
    """One booted guest per target per worker, shared by the tests of a module (shut down when
    the run leaves the module); health-checked and rebooted if it died."""
    try:
        booted = _vmm_pool.get(vmm_stack)
    except TargetUnavailable as exc:
        pytest.skip(str(exc))
    probe = shared_state.probe_of(request.node)
    last = _vmm_pool.last_state.pop(vmm_stack.id, None)
    before: dict[str, object] = {}
    if probe is not None:
        before = last[1] if last is not None and last[0] is probe else shared_state.read(probe, booted)
    _attach(request, booted)
    yield booted
    _detach(request, booted)
    call_report = request.node.stash.get(PHASE_REPORTS_KEY, {}).get("call")
    if call_report is not None and call_report.passed:
        booted.check_console()  # a panic during this test fails it (and the guest is not reused)
    if probe is not None:
        try:
            after = shared_state.read(probe, booted)
            changed = shared_state.changes(before, after)
        except MachineError as exc:
            changed = [f"state unreadable after the check: {exc}"]
            after = {}
        if changed:  # the next check must not inherit what this one left behind
            request.node.user_properties.append((shared_state.PROP_STATE_CHANGED, "; ".join(changed)))
            _vmm_pool.discard(vmm_stack)
        else:
            _vmm_pool.last_state[vmm_stack.id] = (probe, after)


# ------------------------------------------------------------------- reporting
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _unsupported_is_a_skip(item, call, report)
    _apply_baseline(item, report)
    item.stash.setdefault(PHASE_REPORTS_KEY, {})[report.when] = report
    if report.when == "teardown":
        _put_phases(item, report)
    if item.stash.get(MACHINES_KEY, []):
        setattr(report, report_plugin.CONSOLE_LOGS_ATTR, [str(m.console_log) for m in item.stash[MACHINES_KEY]])
    already_shown = call.excinfo is not None and isinstance(call.excinfo.value, MachineError)
    if report.failed and not already_shown:
        for machine in item.stash.get(MACHINES_KEY, []):
            section = (f"console log: {machine.console_log}\n"
                       f"hypervisor: {machine.hypervisor_name}, accel {machine.accel}, "
                       f"exit status {machine.exit_status}\n{machine.tail()}")
            if isinstance(report.longrepr, ExceptionRepr):
                report.longrepr.addsection(f"vmm console tail: {machine.target_id}", section)
            else:
                report.sections.append((f"vmm console tail: {machine.target_id}", section))
    return report


def _put_phases(item: pytest.Item, report: pytest.TestReport) -> None:
    """The build/boot/shutdown seconds of this test's machines (and of the shared machines it
    booted or closed) on its teardown report, for the phase profile."""
    phases: dict[str, float] = {}
    factory = item.stash.get(FACTORY_KEY, None)
    pool = item.config.stash.get(POOL_KEY, None)
    for source in (factory.phases if factory else {}, pool.take_phases() if pool else {}):
        for phase, seconds in source.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    if phases:
        setattr(report, REPORT_ATTR, {k: round(v, 4) for k, v in phases.items()})


def _unsupported_is_a_skip(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """A guest agent answering ``err 8`` (UNSUPPORTED) skips the check, naming what it lacks:
    the guest said it cannot do that here (zosia's shell agent: 2/4-byte ports, RAM under
    STRICT_DEVMEM), which is a limit, not a failure. Where err 8 is the defect itself (``exit``:
    the exit port did not stop the machine) the client raises ExitIgnored instead, a failure."""
    from pytest_vmm.agent.client import AgentError
    from pytest_vmm.agent.protocol import ErrorCode

    if call.excinfo is None or not report.failed or report.when != "call":
        return
    error = call.excinfo.value
    if isinstance(error, AgentError) and error.code == ErrorCode.UNSUPPORTED:
        path, line, _ = item.reportinfo()
        report.outcome = "skipped"
        report.longrepr = (str(path), (line or 0) + 1,
                           f"Skipped: the guest agent does not support this: {error.text} [{error.request}]")


def _apply_baseline(item: pytest.Item, report: pytest.TestReport) -> None:
    """A check the baseline lists: its failure is a known divergence (an xfail carrying the
    reason); its pass makes the entry stale, a failure naming the entry to remove, unless the
    entry is intermittent: then the pass stands and is recorded as the divergence's absence."""
    known = item.config.stash.get(BASELINE_KEY, None)
    if known is None or report.when != "call" or report.skipped:
        return
    props = dict(item.user_properties)
    target = props.get(PROP_TARGET)
    if target is None:
        return
    entry = known.match(baseline.check_instance_id(item.nodeid, str(target)), str(target),
                        str(props.get("kvm_flavour", "")))
    if entry is None:
        return
    mark = baseline.INTERMITTENT_MARK if entry.intermittent else ""
    if report.failed:
        report.outcome = "skipped"
        report.wasxfail = baseline.KNOWN_PREFIX + mark + entry.reason
    elif entry.intermittent:
        report.user_properties.append((baseline.PROP_INTERMITTENT_ABSENT, entry.reason))
    else:
        report.outcome = "failed"
        report.longrepr = (f"{baseline.STALE_PREFIX}{item.nodeid} passes, but {known.path} lists "
                           f"{entry.check!r} as failing here ({entry.reason}): remove or narrow the entry")


class MatrixReporter:
    """Fills the conformance matrix from every report and prints/writes it at the end.

    Registered on the controller only: under xdist it receives every worker's reports,
    so the merge across workers is exact.
    """

    NAME = "vmm-matrix-reporter"

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.matrix = Matrix()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.matrix.add_report(report)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        matrix = self.matrix
        if not matrix.results:
            return
        terminalreporter.section("vmm conformance matrix")
        for line in text_table(*matrix.summary_table()):
            terminalreporter.write_line(line)
        known = matrix.known_divergences()
        if known:
            terminalreporter.section("vmm known divergences (baseline)")
            for check, target, reason in known:
                terminalreporter.write_line(f"{check} [{target}]: {reason}")
        absent = matrix.intermittent_absent()
        if absent:
            terminalreporter.section("vmm intermittent known divergences that did not show (passed)")
            for check, target, reason in absent:
                terminalreporter.write_line(f"{check} [{target}]: {reason}")
        stale = [r for r in matrix.results.values()
                 if r.outcome == "failed" and r.reason.startswith(baseline.STALE_PREFIX)]
        if stale:
            terminalreporter.section("vmm STALE baseline entries (these checks pass now)")
            for r in stale:
                terminalreporter.write_line(f"{r.suite}::{r.check} [{r.target}]: {r.reason}")
        if len(matrix.targets) > 1:
            terminalreporter.section("vmm differential (check instance x target, judged)")
            for line in text_table(*matrix.differential_table()):
                terminalreporter.write_line(line)
        path = options.get(self.config, "vmm_matrix")
        if path:
            written = matrix.write(Path(str(path)))
            terminalreporter.write_line("vmm matrix written to " + ", ".join(str(p) for p in written))
