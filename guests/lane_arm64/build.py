"""Build the ARM64 lane image: QEMU TCG aarch64 (-M virt,virtualization=on) running Debian's
arm64 kernel with KVM built in, and god on it.

    python guests/lane_arm64/build.py --out OUT            # the base image (cached by the plugin)
    python guests/lane_arm64/build.py --god-layer SRC --out OUT   # god's sources only

Writes into OUT:
  vmlinuz          Debian's arm64 kernel: a gzip'd arm64 Image (QEMU's -kernel takes it)
  lane.cpio.gz     BusyBox (busybox-static:arm64), the virtio-mmio console and 9p modules,
                   Debian's arm64 python3.11 with its libraries and a trimmed stdlib, the lane
                   server, /init
  god.cpio.gz      (--god-layer) god's sources at /lane/god, with .pyc; appended to the
                   initrd per boot, so a change to god never rebuilds the base image
  lane.json        what is inside (packages, module list, sizes)

The arm64 packages come from Debian through guests/linux/foreign.py (apt-get download +
dpkg-deb -x, cached). Bytecode is architecture-independent, so the stdlib modules god imports
and god itself are precompiled on the build host by its own python3.11 (the same 3.11 as the
arm64 one) in unchecked-hash mode: no compiling under TCG. Reproducible as guests/lane is
(guests/lane/initramfs.py: sorted entries, mtime 0, gzip -n).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUESTS = HERE.parent
GOD_SRC = GUESTS / "god" / "src"
sys.path[:0] = [str(GUESTS / "lane")]
sys.path.append(str(GUESTS / "linux"))

import foreign  # guests/linux: arm64 Debian packages
import pyset  # guests/lane: the stdlib closure of god's imports
from initramfs import Tree  # guests/lane: the one cpio writer

PYVER = "3.11"
PYTHON_DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib")
LIB_DEBS = ("libc6", "libffi8", "zlib1g", "libexpat1")
BUSYBOX_DEB = "busybox-static"
# insmod order. Everything virtio in Debian's arm64 kernel but the core is a module: the
# virtio-mmio transport, the console (virtio-serial ports: the lane server's channels) and
# 9p over virtio (the host's files, read-only, at /host). KVM itself is built in (=y).
LANE_MODULES = ("virtio_mmio", "virtio_console", "netfs", "fscache", "9pnet", "9pnet_virtio", "9p")
# Stdlib parts never shipped: tests, GUIs, packaging tools, the build configuration.
NEVER = (*pyset.NEVER, "distutils", "venv", "config-3.11-aarch64-linux-gnu", "site-packages",
         "dist-packages", "__pycache__", "unittest", "sqlite3", "curses", "dbm")
HOST_PYTHON = pyset.GUEST_PYTHON  # the build host's python3.11: compiles the .pyc files

_COMPILE = r"""
import json, py_compile, sys
for src, cfile, dfile in json.load(sys.stdin):
    py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def log(msg: str) -> None:
    print(f"lane-arm64: {msg}", flush=True)


def add_host_file(tree: Tree, lane_path: str, src: Path) -> None:
    """A file of an unpacked package at ``lane_path``; symlinks stay symlinks."""
    if src.is_symlink():
        tree.symlink(lane_path, os.readlink(src))
    elif src.is_file():
        tree.copy(lane_path, src)


def add_tree(tree: Tree, root: Path, rel_dir: str, skip: tuple[str, ...] = ()) -> None:
    """Every file under ``root/rel_dir`` at the same path in the lane, minus ``skip`` parts."""
    base = root / rel_dir
    if not base.exists():
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for d in dirnames:
            p = Path(dirpath) / d
            if p.is_symlink():
                add_host_file(tree, str(p.relative_to(root)), p)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            add_host_file(tree, str(p.relative_to(root)), p)


def module_files(kroot: Path) -> dict[str, Path]:
    """{module name: .ko} for LANE_MODULES in the unpacked arm64 kernel package."""
    found: dict[str, Path] = {}
    for ko in sorted((kroot / "lib" / "modules").rglob("*.ko")):
        if ko.stem in LANE_MODULES:
            found[ko.stem] = ko
    missing = [m for m in LANE_MODULES if m not in found]
    if missing:
        raise SystemExit(f"lane-arm64: modules {missing} not in {kroot}")
    # The order above must satisfy each module's "depends=" (its .modinfo section).
    seen: set[str] = set()
    for name in LANE_MODULES:
        m = re.search(rb"depends=([^\0]*)", found[name].read_bytes())
        deps = [d for d in (m.group(1).decode().split(",") if m else []) if d]
        if any(d not in seen for d in deps):
            raise SystemExit(f"lane-arm64: {name} depends on {deps}, loaded later in {LANE_MODULES}")
        seen.add(name)
    return found


def compile_into(tree: Tree, jobs: list[tuple[Path, str]], work: Path) -> None:
    """For each (source, lane path NAME.py): __pycache__/NAME.cpython-311.pyc beside it."""
    work.mkdir(parents=True, exist_ok=True)
    spec = [(str(src), str(work / f"{i}.pyc"), "/" + lane) for i, (src, lane) in enumerate(jobs)]
    subprocess.run([HOST_PYTHON, "-I", "-c", _COMPILE], input=json.dumps(spec), text=True, check=True)
    for i, (_src, lane) in enumerate(jobs):
        d, stem = os.path.dirname(lane), os.path.basename(lane)[:-3]
        tree.file(f"{d}/__pycache__/{stem}.cpython-311.pyc", (work / f"{i}.pyc").read_bytes())


def god_closure_rel(god_src: Path) -> list[str]:
    """Stdlib files (relative to the stdlib dir) god's imports load: computed with the build
    host's python3.11 (the module graph of pure-Python stdlib is the same on arm64)."""
    imports = [m for m in pyset.source_imports(god_src / "god") if not m.startswith("god")]
    mods = pyset.closure([*imports, *pyset.LAZY_STDLIB])
    stdlib, _ = pyset.stdlib_dirs()
    rel, _other = pyset.split_files({n: f for n, f in mods.items() if not n.startswith("god")}, stdlib)
    return [r for r in rel if r.endswith(".py")]


def build_base(out: Path, work: Path) -> dict:
    t0 = time.monotonic()
    kernel = foreign.arm64_kernel()
    debs = foreign.fetch_debs([BUSYBOX_DEB, *PYTHON_DEBS, *LIB_DEBS], arch="arm64")
    log(f"packages ready in {time.monotonic() - t0:.1f} s")
    tree = Tree()
    for d in ("dev", "proc", "sys", "tmp", "root", "lane", "etc", "mnt", "host", "usr/bin"):
        tree.dir(d)
    tree.chardev("dev/console", 5, 1)
    tree.file("init", (HERE / "init.sh").read_bytes(), 0o755)
    tree.copy("bin/busybox", debs[BUSYBOX_DEB] / "bin" / "busybox")
    tree.symlink("bin/sh", "busybox")  # /init runs busybox --install -s for the rest
    tree.symlink("sbin", "bin")
    mods = module_files(kernel.root)
    for name, ko in mods.items():
        tree.copy(f"lib/modules/lane/{name}.ko", ko)
    tree.file("lib/modules/lane/order", (" ".join(LANE_MODULES) + "\n").encode())
    # Libraries (Debian's bookworm layout: the loader at /lib, the rest under the multiarch
    # directories ld.so searches by default).
    for name in LIB_DEBS:
        add_tree(tree, debs[name], "lib", skip=("gconv", "audit"))
        add_tree(tree, debs[name], "usr/lib/aarch64-linux-gnu", skip=("gconv", "audit"))
    # Python: the interpreter, the trimmed stdlib and its extension modules.
    for name in PYTHON_DEBS:
        add_tree(tree, debs[name], "usr/bin")
        add_tree(tree, debs[name], f"usr/lib/python{PYVER}", skip=NEVER)
    tree.symlink("usr/bin/python3", f"python{PYVER}")
    tree.symlink("bin/python3", f"../usr/bin/python{PYVER}")
    stdlib_arm64 = f"usr/lib/python{PYVER}"
    rel = [r for r in god_closure_rel(GOD_SRC) if f"{stdlib_arm64}/{r}" in tree.entries]
    compile_into(tree, [(debs_path(debs, stdlib_arm64, r), f"{stdlib_arm64}/{r}") for r in rel], work / "pyc")
    tree.file("lane/server.py", (HERE / "lane_server.py").read_bytes(), 0o755)
    data = tree.gz()
    (out / "lane.cpio.gz").write_bytes(data)
    shutil.copyfile(kernel.vmlinuz, out / "vmlinuz")
    return {
        "kernel": {"package": kernel.package.name, "version": kernel.package.version},
        "packages": sorted(debs),
        "modules": list(LANE_MODULES),
        "precompiled_stdlib": len(rel),
        "uncompressed_bytes": tree.size(),
        "gz_bytes": len(data),
        "files": len(tree.entries),
    }


def debs_path(debs: dict[str, Path], stdlib: str, rel: str) -> Path:
    for name in PYTHON_DEBS:
        p = debs[name] / stdlib / rel
        if p.exists():
            return p
    raise FileNotFoundError(rel)


def god_layer(god_src: Path, work: Path | None = None) -> bytes:
    """god's sources (``god_src/god``) at /lane/god with their .pyc, as one gzip'd cpio."""
    pkg = god_src / "god"
    if not (pkg / "__init__.py").exists():
        raise SystemExit(f"lane-arm64: {pkg} is not god's package (no __init__.py)")
    tree = Tree()
    files = [(p, "lane/god/" + str(p.relative_to(god_src))) for p in sorted(pkg.rglob("*.py"))
             if "__pycache__" not in p.parts]
    for src, lane in files:
        tree.copy(lane, src)
    with tempfile.TemporaryDirectory(prefix="lane-arm64-pyc-") as tmp:
        compile_into(tree, files, work or Path(tmp))
    return tree.gz()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--god-layer", type=Path, metavar="SRC",
                    help="write only god.cpio.gz from SRC (the directory holding the god package)")
    a = ap.parse_args(argv)
    out: Path = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not Path(HOST_PYTHON).exists():
        raise SystemExit(f"lane-arm64: {HOST_PYTHON} missing: apt-get install python3.11 (compiles the .pyc)")
    t0 = time.monotonic()
    if a.god_layer is not None:
        data = god_layer(a.god_layer.resolve())
        (out / "god.cpio.gz").write_bytes(data)
        (out / "image.json").write_text(json.dumps({"initrd": "god.cpio.gz"}) + "\n")
        log(f"god.cpio.gz: {len(data) / 1e6:.2f} MB in {time.monotonic() - t0:.1f} s")
        return 0
    with tempfile.TemporaryDirectory(prefix="lane-arm64-build-") as tmp:
        manifest = build_base(out, Path(tmp))
    (out / "lane.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (out / "image.json").write_text(json.dumps({"kernel": "vmlinuz", "initrd": "lane.cpio.gz"}) + "\n")
    log(f"lane.cpio.gz: {manifest['gz_bytes'] / 1e6:.1f} MB ({manifest['uncompressed_bytes'] / 1e6:.1f} MB "
        f"unpacked, {manifest['files']} entries); built in {time.monotonic() - t0:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
