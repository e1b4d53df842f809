"""Stand-in for guests/linux/foreign.py until it is on this branch: the same two calls.

``fetch_debs(names, arch)`` -> {name: unpacked root}; ``arm64_kernel()`` -> an object with
``.vmlinuz`` and ``.root``. Each package: ``apt-get download`` with arm64 lists kept in the
cache (no root needed, no change to the host's apt state), ``dpkg-deb -x``, cached under
``~/.cache/pytest-vmm/debs-arm64/``. Removed once foreign.py is merged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "linux"))
from vmmcache import cache_root, file_lock  # noqa: E402


def _apt_dir(arch: str) -> Path:
    return cache_root() / f"debs-{arch}"


def _apt_opts(d: Path, arch: str) -> list[str]:
    return ["-o", f"APT::Architectures={arch}", "-o", f"APT::Architecture={arch}",
            "-o", f"Dir::State::Lists={d}/lists", "-o", f"Dir::Cache={d}/cache",
            "-o", "Dir::State::status=/dev/null", "-o", "Debug::NoLocking=1"]


def _ensure_lists(d: Path, arch: str) -> None:
    if any((d / "lists").glob("*Packages*")):
        return
    for sub in ("lists/partial", "cache/archives/partial"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["apt-get", *_apt_opts(d, arch), "update"], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"apt-get update ({arch} lists) failed: {res.stderr[-2000:]}")


def fetch_debs(names: list[str], arch: str = "arm64") -> dict[str, Path]:
    d = _apt_dir(arch)
    out: dict[str, Path] = {}
    with file_lock(d.with_suffix(".lock")):
        _ensure_lists(d, arch)
        for name in names:
            root = d / "root" / name
            if (root / ".complete").exists():
                out[name] = root
                continue
            debs = d / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            for old in debs.glob(f"{name}_*.deb"):
                old.unlink()
            res = subprocess.run(["apt-get", *_apt_opts(d, arch), "download", f"{name}:{arch}"],
                                 cwd=debs, capture_output=True, text=True)
            got = sorted(debs.glob(f"{name}_*.deb"))
            if res.returncode != 0 or not got:
                raise RuntimeError(f"apt-get download {name}:{arch} failed: {res.stderr[-2000:]}")
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(got[-1]), str(root)], check=True)
            (root / ".complete").write_text(got[-1].name + "\n")
            out[name] = root
    return out


@dataclass
class UnpackedKernel:
    root: Path
    vmlinuz: Path


def arm64_kernel() -> UnpackedKernel:
    d = _apt_dir("arm64")
    with file_lock(d.with_suffix(".lock")):
        _ensure_lists(d, "arm64")
        res = subprocess.run(["apt-cache", *_apt_opts(d, "arm64"), "depends", "linux-image-arm64"],
                             capture_output=True, text=True, check=True)
    m = re.search(r"linux-image-6\.\d+\.\d+-\d+-arm64", res.stdout)
    if m is None:
        raise RuntimeError(f"no versioned arm64 kernel in: {res.stdout}")
    root = fetch_debs([m.group(0)], "arm64")[m.group(0)]
    return UnpackedKernel(root, sorted((root / "boot").glob("vmlinuz-*"))[-1])
