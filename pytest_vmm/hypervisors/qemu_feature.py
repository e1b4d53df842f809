"""Does this QEMU binary start with these arguments? The lanes ask it of TCG (SVM with nested
paging for god-svm, EL2 with GICv3 for god-arm64) before they promise a target.

The answer is kept per binary (path, size, mtime) in the process and in a small JSON file in the
build cache, because asking costs a QEMU start and the answer changes only with the binary."""

from __future__ import annotations

import functools
import json
import os
import subprocess

from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT


@functools.cache
def qemu_start_problem(qemu: str, args: tuple[str, ...], cache_name: str, lacks: str) -> str:
    """"" if ``qemu args -S`` starts (and quits at the monitor); else why not, as
    "<qemu>'s TCG <lacks> (<QEMU's last line>)"."""
    st = os.stat(qemu)
    key = f"{qemu}:{st.st_size}:{int(st.st_mtime)}"
    cache_file = DEFAULT_CACHE_ROOT / f"{cache_name}.json"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return str(cached["problem"])
    except (OSError, ValueError):
        pass
    try:
        res = subprocess.run([qemu, *args, "-display", "none", "-nodefaults", "-no-user-config", "-S",
                              "-monitor", "stdio"], input=b"quit\n", capture_output=True, timeout=20, check=False)
        last = (res.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        problem = "" if res.returncode == 0 else f"{qemu}'s TCG {lacks} ({last})"
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = f"cannot ask {qemu} whether its TCG {lacks.removeprefix('has no ')}: {exc}"
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps({"key": key, "problem": problem}) + "\n")
    except OSError:
        pass
    return problem
