"""The content-hashed build cache: once per input hash across processes, logs kept on failure."""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

import pytest

from pytest_vmm.artifacts import ArtifactCache, BuildError, hash_inputs
from pytest_vmm.stack import ImageRecipe

BUILD_SCRIPT = """
import sys, time, pathlib
out = pathlib.Path(sys.argv[1])
counter = pathlib.Path(sys.argv[2])
with counter.open("a") as f:
    f.write("built\\n")
time.sleep(0.3)  # long enough for concurrent builders to collide
if (pathlib.Path(__file__).parent / "FAIL").exists():
    print("compiler says: no", flush=True)
    sys.exit(2)
(out / "kernel.elf").write_text("kernel")
(out / "image.json").write_text('{"kernel": "kernel.elf"}')
"""


def _recipe(src: Path, counter: Path) -> ImageRecipe:
    return ImageRecipe(name="demo", sources=src,
                       command=(sys.executable, str(src / "build.py"), "{out}", str(counter)))


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    src = tmp_path / "guest"
    src.mkdir()
    (src / "build.py").write_text(BUILD_SCRIPT)
    (src / "kernel.c").write_text("int main;")
    return src


def _build_in_process(args: tuple[str, str, str]) -> str:
    src, counter, cache = map(Path, args)
    return str(ArtifactCache(cache).build(_recipe(src, counter)).path)


def test_concurrent_builders_build_once(sources: Path, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    args = (str(sources), str(counter), str(tmp_path / "cache"))
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.map(_build_in_process, [args] * 3)
    assert len(set(paths)) == 1
    assert counter.read_text().count("built") == 1
    image = ArtifactCache(tmp_path / "cache").build(_recipe(sources, counter))
    assert image.manifest == {"kernel": "kernel.elf"}
    assert image.file("kernel.elf").read_text() == "kernel"
    assert Path(paths[0]).name.startswith("demo-")


def test_hash_changes_with_inputs_but_not_with_build_junk(sources: Path, tmp_path: Path) -> None:
    recipe = _recipe(sources, tmp_path / "count")
    first = hash_inputs(recipe)
    (sources / "__pycache__").mkdir()
    (sources / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (sources / "zig-out").mkdir()
    assert hash_inputs(recipe) == first
    (sources / "kernel.c").write_text("int main2;")
    assert hash_inputs(recipe) != first


def test_hash_is_the_same_for_the_same_sources_in_another_checkout(sources: Path, tmp_path: Path) -> None:
    """The command names the checkout's paths and this interpreter; the key must not: a fresh
    clone elsewhere reuses the images a first one built."""
    import shutil

    other = tmp_path / "clone2" / "guest"
    shutil.copytree(sources, other)
    assert hash_inputs(_recipe(sources, sources.parent / "count")) == hash_inputs(_recipe(other, other.parent / "count"))
    (other / "kernel.c").write_text("int changed;")
    assert hash_inputs(_recipe(sources, sources.parent / "count")) != hash_inputs(_recipe(other, other.parent / "count"))


def test_hash_ignores_where_the_extra_inputs_and_source_folders_are(tmp_path: Path) -> None:
    """The lane's god layer: its builder is an extra input in a sibling folder, and the
    command names the folder above the sources; neither place may reach the key."""
    import shutil

    def layer(checkout: Path) -> ImageRecipe:
        src, tool = checkout / "god" / "src", checkout / "lane" / "build.py"
        return ImageRecipe(name="layer", sources=src / "god", extra_inputs=(tool,),
                           command=(sys.executable, str(tool), "--god-layer", str(src), "--out", "{out}"))

    first = tmp_path / "a"
    (first / "god" / "src" / "god").mkdir(parents=True)
    (first / "god" / "src" / "god" / "vm.py").write_text("x = 1")
    (first / "lane").mkdir()
    (first / "lane" / "build.py").write_text("pass")
    shutil.copytree(first, tmp_path / "b")
    assert hash_inputs(layer(first)) == hash_inputs(layer(tmp_path / "b"))
    (tmp_path / "b" / "lane" / "build.py").write_text("changed")
    assert hash_inputs(layer(first)) != hash_inputs(layer(tmp_path / "b"))


def test_failed_build_keeps_log_and_names_it(sources: Path, tmp_path: Path) -> None:
    (sources / "FAIL").write_text("")
    cache = ArtifactCache(tmp_path / "cache")
    recipe = _recipe(sources, tmp_path / "count")
    with pytest.raises(BuildError) as info:
        cache.build(recipe)
    log = info.value.log
    assert log.exists() and "compiler says: no" in log.read_text()
    assert str(log) in str(info.value) and "exit status 2" in str(info.value)
    # A cached failure is not rebuilt silently; forget() (--vmm-rebuild) retries.
    with pytest.raises(BuildError, match="cached failure"):
        cache.build(recipe)
    assert (tmp_path / "count").read_text().count("built") == 1
    cache.forget(recipe)
    with pytest.raises(BuildError, match="exit status 2"):
        cache.build(recipe)
    assert (tmp_path / "count").read_text().count("built") == 2
    assert not list((tmp_path / "cache").glob("*.tmp-*")), "staging dirs must not be left behind"


def test_progress_lines_are_reported(sources: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    ArtifactCache(tmp_path / "cache", progress=lines.append).build(_recipe(sources, tmp_path / "count"))
    assert lines[0].startswith("pytest-vmm: building demo (demo-") and "log:" in lines[0]
    assert lines[1].startswith("pytest-vmm: built demo in")


RECIPE_CONFTEST = '''
import sys
from pathlib import Path

from pytest_vmm import BootSpec, ImageRecipe, Stack
from tests.fake_stack import FAKE_GUEST

SRC = Path(__file__).parent / "guest"


def boot(image, host, hypervisor):
    assert image.file("kernel.elf").read_text() == "kernel"
    return BootSpec(kernel=FAKE_GUEST, cmdline="ok", ready=rb"fake: ready")


def pytest_vmm_register(registry):
    from conftest_hv import ProcessHypervisor
    registry.add_hypervisor(ProcessHypervisor())
    registry.add_stack(Stack(
        name="built", description="needs a build", boot=boot, default_hypervisor="proc",
        hypervisors=("proc",), capabilities=frozenset({"serial"}),
        recipe=ImageRecipe(name="built", sources=SRC,
                           command=(sys.executable, str(SRC / "build.py"), "{out}", str(SRC.parent / "count"))),
    ))
'''

HV_MODULE = '''
import sys
from pytest_vmm import Hypervisor, LaunchPlan


class ProcessHypervisor(Hypervisor):
    name = "proc"
    accels = ("tcg",)

    def problem(self, host):
        return ""

    def launch_plan(self, spec, accel, run_dir, host):
        return LaunchPlan(argv=[sys.executable, "-u", str(spec.kernel), spec.cmdline])
'''


def _recipe_project(pytester: pytest.Pytester, fail: bool = False) -> None:
    pytester.makeconftest(RECIPE_CONFTEST)
    # A basename no other test module in this process uses (suites/ has a test_boot).
    pytester.makepyfile(conftest_hv=HV_MODULE, test_built_stack="def test_boot(machine): pass")
    guest = pytester.mkdir("guest")
    (guest / "build.py").write_text(BUILD_SCRIPT)
    if fail:
        (guest / "FAIL").write_text("")
    pytester.syspathinsert()


def test_fixture_builds_on_demand_once_and_rebuild_forces_it(pytester: pytest.Pytester) -> None:
    _recipe_project(pytester)
    cache = pytester.path / "cache"
    for _ in range(2):
        pytester.runpytest("--vmm=built", f"--vmm-cache={cache}").assert_outcomes(passed=1)
    assert (pytester.path / "count").read_text().count("built") == 1
    pytester.runpytest("--vmm=built", f"--vmm-cache={cache}", "--vmm-rebuild").assert_outcomes(passed=1)
    assert (pytester.path / "count").read_text().count("built") == 2


def test_build_failure_errors_the_test_and_names_the_log(pytester: pytest.Pytester) -> None:
    _recipe_project(pytester, fail=True)
    result = pytester.runpytest("--vmm=built", f"--vmm-cache={pytester.path / 'cache'}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*BuildError: building built failed: exit status 2: compiler says: no; "
                                 "build log: */cache/built-*.log*"])


def test_prune_removes_only_this_recipes_stale_entries(sources: Path, tmp_path: Path) -> None:
    """prune(): an entry of older sources unused for longer than asked goes (with its log); the
    current entry, a recently used old one and other recipes' entries stay."""
    import os

    cache = ArtifactCache(tmp_path / "cache")
    recipe = _recipe(sources, tmp_path / "count")
    old = cache.build(recipe).path
    (sources / "kernel.c").write_text("int v2;")
    recent = cache.build(recipe).path
    (sources / "kernel.c").write_text("int v3;")
    current = cache.build(recipe).path
    other = tmp_path / "cache" / "demo-aarch64-0123456789abcdef"
    other.mkdir()
    month_ago = time.time() - 30 * 86400
    for entry in (old, other):
        os.utime(entry / ".complete" if (entry / ".complete").exists() else entry, (month_ago, month_ago))
    removed = cache.prune(recipe, 14 * 86400)
    assert [key for key, _ in removed] == [old.name]
    assert not old.exists() and not (tmp_path / "cache" / f"{old.name}.log").exists()
    assert recent.exists() and current.exists() and other.exists()
    # a build that finds its entry marks it used: it is not pruned however old it was
    os.utime(current / ".complete", (month_ago, month_ago))
    cache.build(recipe)
    (sources / "kernel.c").write_text("int v4;")
    cache.build(recipe)
    assert cache.prune(_recipe(sources, tmp_path / "count"), 14 * 86400) == []


def test_cancelled_build_leaves_no_entry_and_no_cached_failure(sources: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """cancel_builds (prebuild's SIGTERM) kills a running build's process group: build() raises
    BuildInterrupted, nothing half-built stays, and the same recipe then builds for real: no
    failure was cached."""
    import threading

    from pytest_vmm.artifacts import BuildInterrupted, cancel_builds

    (sources / "build.py").write_text("import os, time\nif os.environ.get('DEMO_SLOW'):\n    time.sleep(60)\n"
                                      + BUILD_SCRIPT)
    cache = ArtifactCache(tmp_path / "cache")
    recipe = _recipe(sources, tmp_path / "count")
    monkeypatch.setenv("DEMO_SLOW", "1")
    timer = threading.Timer(0.5, cancel_builds)
    timer.start()
    began = time.monotonic()
    try:
        with pytest.raises(BuildInterrupted):
            cache.build(recipe)
    finally:
        timer.cancel()
    assert time.monotonic() - began < 30, "the build ran on after cancel_builds"
    assert not list((tmp_path / "cache").glob("*.tmp-*")), "staging dirs must not be left behind"
    monkeypatch.delenv("DEMO_SLOW")
    assert cache.build(recipe).file("kernel.elf").read_text() == "kernel"
