"""Build the guest images a ``--vmm`` selection needs, before (or beside) the run that boots them.

    python -m pytest_vmm.prebuild god,zosia@qemu-virt [--cache DIR]

Each image goes through the same content-hashed cache (and its file lock) as the plugin, so a
pytest run that needs an image while this is still building it waits for that build instead of
starting its own, and one that finds it built boots at once. scripts/test.sh starts it at the
lowest CPU priority beside the test run: the long builds (llama.cpp for zosia's images) then use
the CPU time the tests leave idle, instead of stopping the run when the first zosia test comes.
Targets that cannot run here are passed over (the run itself reports them); a failed build is
printed and left for the run, which reports it as an error with its log.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from pytest_vmm import availability
from pytest_vmm.artifacts import (
    DEFAULT_CACHE_ROOT,
    ArtifactCache,
    BuildError,
    BuildInterrupted,
    cancel_builds,
)
from pytest_vmm.host import HostInfo
from pytest_vmm.registry import Registry, RegistryError
from pytest_vmm.stack import ImageRecipe


def recipes_for(spec: str, host: HostInfo) -> list[ImageRecipe]:
    """The recipes of every target in ``spec`` that can run here, each once: the longest cold
    builds (``ImageRecipe.cold_build_s``) first, the rest in spec order."""
    registry = Registry(host)
    registry.load_entry_points()
    for error in registry.load_errors:  # a stack that failed to import builds nothing: say so
        print(f"prebuild: not loaded: {error}", file=sys.stderr)
    recipes: dict[str, ImageRecipe] = {}
    for target in registry.resolve(spec):
        if not availability.check(target, host).ok:
            continue
        for recipe in (target.recipe, *target.hypervisor.recipes(host)):
            if recipe is not None:
                recipes.setdefault(recipe.name, recipe)
    return build_order(list(recipes.values()))


def build_order(recipes: list[ImageRecipe]) -> list[ImageRecipe]:
    """The longest cold builds first, the rest as given: a run builds the small images it
    needs first itself, in seconds, and would otherwise wait on the lock of a long build that
    the prebuild started last."""
    return sorted(recipes, key=lambda r: -r.cold_build_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pytest_vmm.prebuild", description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="targets, as --vmm takes them (e.g. all,god@qemu)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE_ROOT, help="build cache (default %(default)s)")
    ap.add_argument("--nice", type=int, default=19, help="CPU priority increment (default 19: idle time only)")
    ap.add_argument("--log", type=Path, default=None,
                    help="also write the report here (default: CACHE/prebuild.log, kept like the build logs)")
    ap.add_argument("--prune-days", type=float, default=None, metavar="DAYS",
                    help="then remove the selection's older cache entries (other sources than "
                         "today's) that no run has used for DAYS days")
    a = ap.parse_args(argv)
    if a.nice:
        os.nice(a.nice)
    # SIGTERM (scripts/test.sh, when its run ends first): kill the running build's process
    # group first, then unwind like Ctrl-C (the cache drops the half-built entry). Should the
    # SystemExit be swallowed (a signal landing in a finalizer), the killed build still ends
    # as BuildInterrupted below, and nothing more is built.
    stopped: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopped.append(signum)
        cancel_builds()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    host = HostInfo.detect()
    try:
        recipes = recipes_for(a.spec, host)
    except RegistryError as exc:
        print(f"prebuild: {exc}", file=sys.stderr)
        return 4
    cache = ArtifactCache(a.cache)
    a.cache.mkdir(parents=True, exist_ok=True)
    log_path: Path = a.log or a.cache / "prebuild.log"
    failed = 0
    with log_path.open("w") as log:
        def report(line: str) -> None:
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()

        report(f"prebuild: {a.spec}: {', '.join(r.name for r in recipes)}")
        for recipe in recipes:
            if stopped:
                return 128 + stopped[0]
            t0 = time.monotonic()
            try:
                image = cache.build(recipe)
            except BuildInterrupted:
                report(f"prebuild: {recipe.name}: interrupted")
                return 128 + (stopped[0] if stopped else signal.SIGTERM)
            except BuildError as exc:
                failed += 1
                report(f"prebuild: {recipe.name}: FAILED: {exc}")
                continue
            report(f"prebuild: {recipe.name}: {image.path} ({time.monotonic() - t0:.1f} s)")
        if a.prune_days is not None:
            for recipe in recipes:
                for key, size in cache.prune(recipe, a.prune_days * 86400):
                    report(f"prebuild: pruned {key} ({size / 2**20:.1f} MiB, unused for {a.prune_days:g}+ days)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
