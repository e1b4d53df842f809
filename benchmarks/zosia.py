#!/usr/bin/env python3
"""zosia on both architectures: boot to prompt (direct, and UEFI on aarch64) and tok/s.

For each target (``zosia``: x86_64 on QEMU microvm; ``zosia@qemu-virt``: aarch64 on QEMU virt)
the plugin's own Machine boots the image the suites use, in the prompt mode, ``--boots`` times
(alternating targets, so a change of host load hits all): the kernel's own ``zosia: prompt
ready t=`` stamp (the seed's "after kernel load" figure, budget 5 s) and the wall time from
QEMU's start. aarch64 also boots through the UEFI firmware. Then one ``zosia.perf=1`` boot per
target: in-VM eval tok/s, and the same binary, model and arguments on the host: natively
where the host runs the guest's architecture, else (aarch64 on x86_64) under qemu-aarch64
user-mode emulation, labelled as such (not a native baseline). Prints figures; asserts nothing.

    python benchmarks/zosia.py [--boots 5] [--targets zosia,zosia@qemu-virt] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
from pytest_vmm.availability import check
from pytest_vmm.host import HostInfo
from pytest_vmm.machine import Machine, MachineConfig
from pytest_vmm.registry import Registry
from pytest_vmm.stack import BootSpec, BootTransform, BuiltImage
from pytest_vmm.stacks import zosia

PROMPT_RE = rb"zosia: prompt ready t=([0-9.]+)(?=\s)"
PERF_RE = rb"zosia: perf eval_tok_s=([0-9.]+) runs=\S+ prompt_tok_s=\S+ threads=(\d+) isa=(\w+)(?=\s)"
EVAL_RE = re.compile(r"(?:perf_print|perf_context_print): +eval time .*?,\s*([0-9.]+) tokens per second")
TOKENS = 128


def boot(registry: Registry, host: HostInfo, target_id: str, image: BuiltImage, out: Path,
         *variants: BootTransform) -> Machine:
    target = registry.resolve(target_id)[0]
    avail = check(target, host, "auto")
    if not avail.ok:
        raise SystemExit(f"{target_id} cannot boot here: {avail.problem}")
    spec: BootSpec = target.stack.boot(image, host, target.hypervisor.name)
    for variant in variants:
        spec = variant(spec)
    machine = Machine(MachineConfig(
        target_id=target.id, stack=target.stack.name, hypervisor=target.hypervisor, spec=spec,
        accel=avail.accel, host=host, artifacts_dir=out, boot_timeout_s=spec.boot_timeout_s * avail.timeout_factor,
        timeout_factor=avail.timeout_factor, channels=dict(target.stack.channels)))
    machine.start()
    return machine


def prompt_boot(registry: Registry, host: HostInfo, target_id: str, image: BuiltImage, out: Path,
                uefi: bool = False) -> tuple[float, float]:
    """(kernel time of the prompt stamp, wall seconds from QEMU start)."""
    variants = [zosia.mode("", ready=PROMPT_RE)] + ([zosia.uefi()] if uefi else [])
    began = time.monotonic()
    machine = boot(registry, host, target_id, image, out, *variants)
    try:
        wall = time.monotonic() - began
        m = re.search(PROMPT_RE, machine.console_text())
        assert m, machine.tail()
        return float(m.group(1)), wall
    finally:
        machine.shutdown()


def host_tok_s(image: BuiltImage, info: dict, isa: str, threads: int) -> tuple[str, float | None]:
    arch = str(info.get("arch", "x86_64"))
    machine = os.uname().machine.lower()
    runner: list[str] = []
    if machine == arch or (arch == "aarch64" and machine == "arm64"):
        label = "native"
    elif arch == "aarch64" and shutil.which("qemu-aarch64-static"):
        label, runner = "qemu-aarch64 user-mode (emulated, not a native baseline)", [str(shutil.which("qemu-aarch64-static"))]
    else:
        return "none (the host cannot run this architecture)", None
    argv = [*runner, str(image.path / info["llama_binaries"][isa]), "-m", str(image.path / info["model"]),
            *info["perf_args"], "-t", str(threads), "-tb", str(threads), "-n", str(TOKENS)]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False)
    found = EVAL_RE.findall(r.stderr)
    return label, float(found[-1]) if r.returncode == 0 and found else None


def perf(registry: Registry, host: HostInfo, target_id: str, image: BuiltImage, out: Path) -> dict[str, object]:
    machine = boot(registry, host, target_id, image, out, zosia.mode(f"zosia.perf=1 zosia.perf.tokens={TOKENS}",
                                                                       ready=zosia.BOOT_OK))
    try:
        m = machine.expect(PERF_RE, timeout=600.0)
    finally:
        machine.shutdown()
    tok_s, threads, isa = float(m.group(1)), int(m.group(2)), m.group(3).decode()
    info = json.loads(image.file(zosia.MANIFEST).read_text())
    label, host_rate = host_tok_s(image, info, isa, threads)
    return {"tok_s": tok_s, "isa": isa, "threads": threads, "accel": machine.accel,
            "host_run": label, "host_tok_s": host_rate,
            "ratio": round(tok_s / host_rate, 4) if host_rate else None}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=5)
    ap.add_argument("--targets", default="zosia,zosia@qemu-virt")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = ap.parse_args()
    host = HostInfo.detect()
    registry = Registry(host)
    registry.load_entry_points()
    cache = ArtifactCache(DEFAULT_CACHE_ROOT, lambda line: print(line, file=sys.stderr))
    targets = a.targets.split(",")
    images = {}
    for t in targets:
        target = registry.resolve(t)[0]
        assert target.recipe is not None
        images[t] = cache.build(target.recipe)
    arch = {t: json.loads(images[t].file(zosia.MANIFEST).read_text()).get("arch", "x86_64") for t in targets}
    kinds = {t: ["direct"] + (["uefi"] if arch[t] == "aarch64" else []) for t in targets}
    boots: dict[str, dict[str, list[tuple[float, float]]]] = {t: {k: [] for k in kinds[t]} for t in targets}
    with tempfile.TemporaryDirectory(prefix="vmm-zosia-bench-") as tmp:
        for i in range(a.boots):
            for t in targets:
                for k in kinds[t]:
                    boots[t][k].append(prompt_boot(registry, host, t, images[t], Path(tmp) / f"{t}-{k}-{i}",
                                                   uefi=k == "uefi"))
        perfs = {t: perf(registry, host, t, images[t], Path(tmp) / f"{t}-perf") for t in targets}
    load = os.getloadavg()[0]
    result = {"host": os.uname().machine, "load": round(load, 2), "boots": a.boots, "targets": {
        t: {"arch": arch[t],
            "boot_to_prompt_kernel_s": {k: spread([r[0] for r in runs]) for k, runs in boots[t].items()},
            "boot_to_prompt_wall_s": {k: spread([round(r[1], 2) for r in runs]) for k, runs in boots[t].items()},
            "perf": perfs[t]} for t in targets}}
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"zosia, {a.boots} boots per kind, host {result['host']}, load {load:.1f}; seed budget: prompt < 5 s of kernel time")
    for t, r in result["targets"].items():
        for k in r["boot_to_prompt_kernel_s"]:
            kt, wt = r["boot_to_prompt_kernel_s"][k], r["boot_to_prompt_wall_s"][k]
            print(f"{t:<16} {r['arch']:<8} {k:<6} prompt at kernel t= {kt['median']:.2f} s ({kt['min']:.2f}..{kt['max']:.2f}); "
                  f"from QEMU start {wt['median']:.2f} s ({wt['min']:.2f}..{wt['max']:.2f})")
        p = r["perf"]
        host_rate = f"{p['host_tok_s']:.1f}" if p["host_tok_s"] else "n/a"
        print(f"{t:<16} {r['arch']:<8} perf   in-VM {p['tok_s']:.1f} tok/s ({p['isa']}, {p['threads']} thread, accel "
              f"{p['accel']}); host {p['host_run']}: {host_rate} tok/s; ratio {p['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
