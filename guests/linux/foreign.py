"""Debian packages of another architecture (arm64), fetched and unpacked, never installed.

The arm64 guests (the ARM64 lane, zosia's aarch64 image, god's arm64 Linux boot) need
Debian's arm64 kernel, BusyBox and Python. apt can fetch them on an amd64 machine without
changing the system's configuration: it is pointed at package lists of its own, kept in
``~/.cache/pytest-vmm/apt-<arch>`` (``APT::Architectures``, ``Dir::State::Lists``,
``Dir::Cache``), so neither ``dpkg --add-architecture`` nor root is needed.

- ``fetch_debs(["busybox-static"], arch="arm64")`` -> ``{"busybox-static": <unpacked root>}``,
  each package unpacked with ``dpkg-deb -x`` into ``~/.cache/pytest-vmm/deb-arm64-<name>-<hash
  of name+version>`` (done once);
- ``arm64_kernel()`` -> an ``UnpackedKernel`` of ``linux-image-6.1.0-N-arm64`` (``.vmlinuz`` is
  the gzip'd arm64 ``Image`` that QEMU and god boot; ``.root`` holds ``lib/modules/...``).

Offline, the newest complete cache entry of a package is used, so a machine that fetched
once keeps working.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))
from debkernel import (KernelPackage, KernelUnavailable, UnpackedKernel, _index_modules,
                       phase)
from vmmcache import cache_root, cached_dir, file_lock, short_hash

# Bump when the cached layout changes.
RECIPE = 1
# Package lists older than this are refreshed before a version is resolved: Debian's
# security archive removes superseded .debs, so stale lists name files that are gone.
LISTS_MAX_AGE_S = 24 * 3600


class ForeignApt:
    """apt-get/apt-cache with package lists of one foreign architecture, in the cache."""

    def __init__(self, arch: str = "arm64") -> None:
        self.arch = arch
        self.root = cache_root() / f"apt-{arch}"

    def _options(self) -> list[str]:
        return [
            "-o", f"APT::Architectures={self.arch}", "-o", f"APT::Architecture={self.arch}",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", f"Dir::Cache={self.root / 'cache'}",
            "-o", "Dir::State::status=/dev/null",
            "-o", "Debug::NoLocking=1", "-q",
        ]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        if not shutil.which(tool):
            raise KernelUnavailable(f"{tool} not found: arm64 packages are fetched with Debian's apt")
        return subprocess.run([tool, *self._options(), *args], text=True, capture_output=True,
                              cwd=cwd, check=False)

    def _lists_fresh(self) -> bool:
        stamp = self.root / "updated"
        return stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE_S

    def update(self, force: bool = False) -> None:
        with file_lock(self.root / ".lock"):
            if self._lists_fresh() and not force:
                return
            for sub in ("lists/partial", "cache/archives/partial"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            phase(f"apt: update {self.arch} package lists")
            res = self._run("apt-get", "update")
            if res.returncode != 0:
                raise KernelUnavailable(
                    f"apt-get update for {self.arch} failed: {res.stderr.strip()[-400:]}")
            (self.root / "updated").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))

    def candidate(self, name: str) -> tuple[str, str]:
        """(version, Depends line) of apt's candidate for ``name``."""
        res = self._run("apt-cache", "show", "--no-all-versions", name)
        if res.returncode != 0 or not res.stdout.strip():
            raise KernelUnavailable(f"no {self.arch} package {name!r} in Debian's lists "
                                    f"({res.stderr.strip()[-200:]})")
        version = re.search(r"^Version: (\S+)", res.stdout, re.MULTILINE)
        depends = re.search(r"^Depends: (.*)$", res.stdout, re.MULTILINE)
        if not version:
            raise KernelUnavailable(f"apt-cache show {name}: no Version field")
        return version.group(1), depends.group(1) if depends else ""

    def download(self, name: str, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        spec = f"{name}:{self.arch}={version}"
        res = self._run("apt-get", "download", spec, cwd=dest)
        debs = sorted(dest.glob(f"{name}_*_{self.arch}.deb"))
        if res.returncode != 0 or len(debs) != 1:
            raise KernelUnavailable(
                f"apt-get download {spec} failed ({res.stderr.strip()[-300:]}); the network "
                "must reach Debian's archive")
        return debs[0]


def _newest_cached(prefix: str) -> Path | None:
    entries = [d for d in cache_root().glob(f"{prefix}-*") if (d / ".complete").exists()]
    return max(entries, key=lambda d: d.stat().st_mtime) if entries else None


def _resolve(apt: ForeignApt, name: str) -> tuple[str, str] | None:
    """apt's candidate, or None when the lists cannot be had (offline)."""
    try:
        apt.update()
        return apt.candidate(name)
    except KernelUnavailable:
        return None


def fetch_deb(name: str, arch: str = "arm64") -> Path:
    """One package of ``arch``, unpacked; its root directory in the cache."""
    apt = ForeignApt(arch)
    prefix = f"deb-{arch}-{name}"
    found = _resolve(apt, name)
    if found is None:
        cached = _newest_cached(prefix)
        if cached is not None:
            return cached
        apt.update(force=True)  # raises with apt's own message
        found = apt.candidate(name)
    version, _ = found

    def produce(tmp: Path) -> None:
        phase(f"apt: download {name}:{arch}={version}")
        try:
            deb = apt.download(name, version, tmp / ".download")
        except KernelUnavailable:
            # Superseded in the archive since our lists were fetched: refresh once.
            apt.update(force=True)
            deb = apt.download(name, apt.candidate(name)[0], tmp / ".download")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        (tmp / "package.json").write_text(json.dumps(
            {"name": name, "arch": arch, "version": version, "deb": deb.name}, indent=2) + "\n")
        shutil.rmtree(tmp / ".download")

    return cached_dir(prefix, short_hash(RECIPE, name, version, arch), produce)


def fetch_debs(names: list[str], arch: str = "arm64") -> dict[str, Path]:
    """Several packages of ``arch``, unpacked: name -> root directory."""
    return {name: fetch_deb(name, arch) for name in names}


ARM64_META = "linux-image-arm64"
ARM64_PKG_RE = re.compile(r"(linux-image-\d+\.\d+\.\d+-\d+-arm64) \(= ([^)]+)\)")


def arm64_kernel() -> UnpackedKernel:
    """Debian's arm64 kernel, unpacked, with its module index (``modules.json``)."""
    apt = ForeignApt("arm64")
    found = _resolve(apt, ARM64_META)
    if found is None:
        cached = _newest_cached("linux-arm64")
        if cached is None:
            apt.update(force=True)
            found = apt.candidate(ARM64_META)
        else:
            info = json.loads((cached / "package.json").read_text())
            pkg = KernelPackage(info["name"], info["version"])
            return UnpackedKernel(cached, pkg, json.loads((cached / "modules.json").read_text()))
    m = ARM64_PKG_RE.search(found[1])
    if not m:
        raise KernelUnavailable(f"{ARM64_META} depends on no versioned kernel: {found[1]!r}")
    pkg = KernelPackage(m.group(1), m.group(2))
    root = fetch_deb(pkg.name, "arm64")

    def produce(tmp: Path) -> None:
        # Link the unpacked package's tree (it stays in its own cache entry) and index it.
        phase(f"kernel: index modules of {pkg.name}")
        shutil.copytree(root, tmp, symlinks=True, dirs_exist_ok=True, copy_function=_link)
        moddirs = [d for d in (tmp / "lib" / "modules" / pkg.release,
                               tmp / "usr" / "lib" / "modules" / pkg.release) if d.is_dir()]
        if not moddirs:
            raise KernelUnavailable(f"no modules directory for {pkg.release} in {pkg.name}")
        (tmp / "modules.json").write_text(
            json.dumps(_index_modules(moddirs[0]), indent=1, sort_keys=True) + "\n")
        (tmp / "package.json").write_text(json.dumps({
            "name": pkg.name, "version": pkg.version, "release": pkg.release, "arch": "arm64",
            "moddir": str(moddirs[0].relative_to(tmp)),
        }, indent=2) + "\n")

    kroot = cached_dir("linux-arm64", short_hash(RECIPE, pkg.name, pkg.version), produce)
    return UnpackedKernel(kroot, pkg, json.loads((kroot / "modules.json").read_text()))


def _link(src: str, dst: str) -> None:
    import os
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


if __name__ == "__main__":
    # python guests/linux/foreign.py [PACKAGE...]: fetch and print where they are.
    if sys.argv[1:]:
        for n, p in fetch_debs(sys.argv[1:]).items():
            print(n, p)
    else:
        k = arm64_kernel()
        print(k.package.name, k.package.version, k.vmlinuz)
