"""The pytest plugin (entry point ``pytest11: vmm``): options, hooks, fixtures, markers, reports."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from _pytest._code.code import ExceptionRepr

from pytest_vmm import availability as availability_mod
from pytest_vmm import hookspecs, hypothesis_profiles, options
from pytest_vmm.capabilities import CAPABILITIES, unknown_capabilities
from pytest_vmm.errors import MachineError, TargetUnavailable
from pytest_vmm.hypervisor import TIMEOUT_MULTIPLIERS
from pytest_vmm.machine import Machine
from pytest_vmm.matrix import PROP_CHECK, PROP_SUITE, PROP_TARGET, Matrix, text_table
from pytest_vmm.registry import Target
from pytest_vmm.report import plugin as report_plugin
from pytest_vmm.session import MachinePool, VmmSession, build_registry

SESSION_KEY = pytest.StashKey[VmmSession]()
MACHINES_KEY = pytest.StashKey[list[Machine]]()
PHASE_REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
POOL_KEY = pytest.StashKey[MachinePool]()

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
    config.stash[SESSION_KEY] = VmmSession(config)
    if not _is_xdist_worker(config):
        config.pluginmanager.register(MatrixReporter(config), MatrixReporter.NAME)
        report_plugin.register(config)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With plain ``-n N`` (dist=load), keep each target's tests on one worker."""
    if config.getoption("dist", "no") != "load":
        return None  # the user chose a distribution mode: respect it
    from pytest_vmm.xdist_scheduling import TargetScheduling

    return TargetScheduling(config, log, [t.id for t in _session(config).targets])


def pytest_unconfigure(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin(MatrixReporter.NAME)
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
            if target.stack.recipe is not None and target.stack.recipe.sources.exists():
                vmm.cache.forget(target.stack.recipe)


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
        for hv_name in stack.hypervisors:
            if hv_name not in registry.hypervisors:
                out.append(f"    {stack.name}@{hv_name}: unavailable: hypervisor {hv_name} not registered")
                continue
            target = Target(stack, registry.hypervisors[hv_name], explicit_hypervisor=hv_name != default)
            avail = availability_mod.check(target, host, accel_choice)
            cached = ""
            if avail.ok and stack.recipe is not None:
                from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
                cache_opt = options.get(config, "vmm_cache")
                cache = ArtifactCache(Path(str(cache_opt)).expanduser() if cache_opt else DEFAULT_CACHE_ROOT)
                cached = ", image cached" if cache.cached(stack.recipe) else ", image built on first use"
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
            (PROP_TARGET, target.id), (PROP_SUITE, item.path.stem), (PROP_CHECK, item.originalname),  # type: ignore[attr-defined]
            ("stack", target.stack.name), ("hypervisor", target.hypervisor.name), ("accel", avail.accel),
            ("kvm_flavour", vmm.host.kvm_flavour),
        ]
        if not avail.ok:
            item.add_marker(pytest.mark.skip(reason=f"{target.id} cannot boot here: {avail.problem}"))
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


def _attach(request: pytest.FixtureRequest, machine: Machine) -> None:
    """Wire a machine into the running test: failure reports, JUnit properties, metrics."""
    node = request.node
    machines = node.stash.setdefault(MACHINES_KEY, [])
    if machine not in machines:
        machines.append(machine)
    if machine.boot_ms is not None:
        node.user_properties.append(("boot_ms", round(machine.boot_ms, 1)))

    def record(name: str, value: float) -> None:
        node.user_properties.append((name, value))

    machine.metric_listeners.append(record)


def _detach(request: pytest.FixtureRequest, machine: Machine) -> None:
    machine.metric_listeners.clear()


@pytest.fixture
def machine(request: pytest.FixtureRequest, vmm: VmmSession, vmm_stack: Target,
            vmm_artifacts_dir: Path) -> Iterator[Machine]:
    """A freshly booted guest for this test; shut down (and checked for leaks) afterwards."""
    try:
        booted = vmm.new_machine(vmm_stack, vmm_artifacts_dir)
    except TargetUnavailable as exc:
        pytest.skip(str(exc))
    request.node.stash.setdefault(MACHINES_KEY, []).append(booted)
    try:
        booted.start()
    except BaseException:
        booted.shutdown()
        raise
    _attach(request, booted)
    yield booted
    _detach(request, booted)
    call_report = request.node.stash.get(PHASE_REPORTS_KEY, {}).get("call")
    try:
        if call_report is not None and call_report.passed:
            booted.check_console()  # a panic the test did not look for still fails it
    finally:
        booted.shutdown()


@pytest.fixture(scope="session")
def _vmm_pool(vmm: VmmSession, pytestconfig: pytest.Config) -> Iterator[MachinePool]:
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    pool = MachinePool(vmm, worker)
    pytestconfig.stash[POOL_KEY] = pool
    yield pool
    del pytestconfig.stash[POOL_KEY]
    _close_pool(pool)


def _close_pool(pool: MachinePool) -> None:
    problems = pool.close()
    if problems:
        pytest.fail("shared machines left things behind: " + "; ".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Shared machines live as long as their module: an idle guest (a polling kernel spins its
    vCPU) must not take CPU from the tests that come after it."""
    result = yield
    pool = item.config.stash.get(POOL_KEY, None)
    if pool is not None and pool.machines and (nextitem is None or nextitem.path != item.path):
        _close_pool(pool)
    return result


@pytest.fixture
def shared_machine(request: pytest.FixtureRequest, vmm_stack: Target, _vmm_pool: MachinePool) -> Iterator[Machine]:
    """One booted guest per target per worker, shared by the tests of a module (shut down when
    the run leaves the module); health-checked and rebooted if it died."""
    try:
        booted = _vmm_pool.get(vmm_stack)
    except TargetUnavailable as exc:
        pytest.skip(str(exc))
    _attach(request, booted)
    yield booted
    _detach(request, booted)


# ------------------------------------------------------------------- reporting
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _unsupported_is_a_skip(item, call, report)
    item.stash.setdefault(PHASE_REPORTS_KEY, {})[report.when] = report
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


def _unsupported_is_a_skip(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """A guest agent answering ``err 8`` (UNSUPPORTED) skips the check, naming what it lacks:
    the guest said it cannot do that here, which is a limit, not a failure."""
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
        if len(matrix.targets) > 1:
            terminalreporter.section("vmm differential (check x target; * = differs)")
            for line in text_table(*matrix.differential_table()):
                terminalreporter.write_line(line)
        path = options.get(self.config, "vmm_matrix")
        if path:
            written = matrix.write(Path(str(path)))
            terminalreporter.write_line("vmm matrix written to " + ", ".join(str(p) for p in written))
