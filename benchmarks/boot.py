#!/usr/bin/env python3
"""Boot to first agent reply: the probe kernel on god vs QEMU microvm (same image, same host).

Each boot goes through the plugin's own Machine (the launch plan the suites use): spawn the
hypervisor, wait for the agent's ready banner, send ``hello``, take its reply, shut down.
Reports the median and spread of spawn -> ready banner and spawn -> first reply per
hypervisor, the ratio god/QEMU, and god's interpreter start-up alone. Boots alternate between
the hypervisors so a change of host load hits both. Prints figures; asserts nothing.

    python benchmarks/boot.py [--boots 10] [--hypervisors god,qemu,god-legacy]

``god-legacy`` is god started as before the start-up work (``python -u -m god`` with site, and
whatever PYTHONDONTWRITEBYTECODE the environment has), for a before/after in one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
from pytest_vmm.availability import check
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors import god as god_hv
from pytest_vmm.machine import Machine, MachineConfig
from pytest_vmm.registry import Registry


def legacy_god_start() -> tuple[tuple[str, ...], object]:
    """Swap god's launch to the old start-up; returns what to restore."""
    saved = (god_hv.PYTHON_FLAGS, god_hv.god_python_env)
    god_hv.PYTHON_FLAGS = ("-u",)
    god_hv.god_python_env = lambda: {"PYTHONUNBUFFERED": "1"}  # type: ignore[assignment]
    return saved


def boot_once(registry: Registry, target_id: str, host: HostInfo, image: object, out: Path) -> tuple[float, float]:
    legacy = target_id.endswith("-legacy")
    saved = legacy_god_start() if legacy else None
    try:
        return _boot_once(registry, target_id.removesuffix("-legacy"), host, image, out)
    finally:
        if saved is not None:
            god_hv.PYTHON_FLAGS, god_hv.god_python_env = saved  # type: ignore[assignment]


def _boot_once(registry: Registry, target_id: str, host: HostInfo, image: object, out: Path) -> tuple[float, float]:
    target = registry.resolve(target_id)[0]
    avail = check(target, host, "auto")
    if not avail.ok:
        raise SystemExit(f"{target_id} cannot boot here: {avail.problem}")
    spec = target.stack.boot(image, host, target.hypervisor.name)  # type: ignore[arg-type]
    machine = Machine(MachineConfig(
        target_id=target.id, stack=target.stack.name, hypervisor=target.hypervisor, spec=spec,
        accel=avail.accel, host=host, artifacts_dir=out, boot_timeout_s=60.0,
        timeout_factor=avail.timeout_factor, channels=dict(target.stack.channels)))
    began = time.monotonic()
    try:
        machine.start()
        ready = time.monotonic() - began
        machine.agent.hello()
        reply = time.monotonic() - began
    finally:
        machine.shutdown()
    return ready, reply


def interpreter_start(boots: int) -> float:
    """Seconds for ``python -S -c 'import god.cli'`` as god is launched (median)."""
    env = god_hv.god_python_env()
    times = []
    for _ in range(boots):
        began = time.monotonic()
        subprocess.run([sys.executable, *god_hv.PYTHON_FLAGS, "-c", "import god.cli, god.machine"],
                       env={**__import__("os").environ, **env}, check=True)
        times.append(time.monotonic() - began)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=10)
    ap.add_argument("--hypervisors", default="god,qemu,god-legacy")
    a = ap.parse_args()
    host = HostInfo.detect()
    registry = Registry(host)
    registry.load_entry_points()
    stack = registry.stacks["god"]
    assert stack.recipe is not None
    image = ArtifactCache(DEFAULT_CACHE_ROOT, lambda line: print(line, file=sys.stderr)).build(stack.recipe)
    hvs = a.hypervisors.split(",")
    results: dict[str, list[tuple[float, float]]] = {hv: [] for hv in hvs}
    with tempfile.TemporaryDirectory(prefix="vmm-boot-bench-") as tmp:
        for i in range(a.boots):
            for hv in hvs:
                target = "god" if hv == "god" else "god-legacy" if hv == "god-legacy" else f"god@{hv}"
                results[hv].append(boot_once(registry, target, host, image, Path(tmp) / f"{hv}-{i}"))
    print(f"probe kernel, {a.boots} boots each, host KVM {host.kvm_flavour}")
    print(f"{'hypervisor':<10} {'ready ms (median, min..max)':<30} {'first reply ms (median, min..max)':<34}")
    medians = {}
    for hv, runs in results.items():
        ready = [r * 1000 for r, _ in runs]
        reply = [r * 1000 for _, r in runs]
        medians[hv] = statistics.median(reply)
        print(f"{hv:<10} {statistics.median(ready):7.1f} ({min(ready):6.1f}..{max(ready):6.1f})       "
              f"{statistics.median(reply):7.1f} ({min(reply):6.1f}..{max(reply):6.1f})")
    if "god" in medians and "qemu" in medians:
        print(f"god / qemu (first reply, medians): {medians['god'] / medians['qemu']:.2f}x")
    if "god" in medians and "god-legacy" in medians:
        print(f"god / god-legacy start (first reply, medians): {medians['god'] / medians['god-legacy']:.2f}x")
    if "god" in hvs:
        print(f"god's interpreter start-up (python {' '.join(god_hv.PYTHON_FLAGS)}, imports): "
              f"{interpreter_start(a.boots) * 1000:.1f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
