"""Build the SVM lane image: a QEMU TCG guest whose kernel runs the real kvm_amd, with god in it.

    python guests/lane/build.py --out OUT [--no-tests | --tests-only]

Writes into OUT:
  vmlinux            Debian's kernel (PVH ELF), from guests/linux (the one unpacker)
  lane.cpio(.gz)     base initramfs (boots use the uncompressed one): BusyBox, irqbypass/kvm/ccp/kvm_amd, a minimal Python
                     (Debian's python3.11, the stdlib modules god imports), god, /init
  tests.cpio.gz      appended when god's own test suite runs in the lane: pytest and the
                     stdlib it needs, god's tests, the prebuilt test guests (lane_replay)
  lane.json          what is inside (module lists, sizes, the kernel package)

Reproducible: sorted entries, mtime SOURCE_DATE_EPOCH (0), uid/gid 0, gzip -n, .pyc in
unchecked-hash mode. Run by the plugin's ArtifactCache (pytest_vmm/hypervisors/lane.py) as
two recipes: ``lane`` (--no-tests: kernel + lane.cpio.gz; inputs guests/lane, god's sources,
guests/linux) and ``lane-tests`` (--tests-only: tests.cpio.gz; inputs add god's tests), so
that editing god's tests does not rebuild the image every lane boot uses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUESTS = HERE.parent
GOD_SRC = GUESTS / "god" / "src"
GOD_TESTS = GUESTS / "god" / "tests"
sys.path[:0] = [str(HERE), str(GUESTS / "linux")]

import debkernel  # guests/linux: the one Debian kernel unpacker
import pyset
from initramfs import Tree

LANE_MODULES = ("irqbypass", "kvm", "ccp", "kvm_amd")  # insmod order (PLATFORM.md)
PYTHON = pyset.GUEST_PYTHON
BUSYBOX = "/bin/busybox"
PYVER = "3.11"
# Third-party packages never shipped even if imported during the collection run.
OPTIONAL_SITE: tuple[str, ...] = ()

_COMPILE = r"""
import json, py_compile, sys
for src, cfile, dfile in json.load(sys.stdin):
    py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def log(msg: str) -> None:
    print(f"lane: {msg}", flush=True)


def check_static(path: str) -> None:
    head = Path(path).read_bytes()[:4096]
    if b"/lib64/ld-linux" in head or b"ld-linux-x86-64" in Path(path).read_bytes()[:65536]:
        raise SystemExit(f"lane: {path} is not static: apt-get install busybox-static")


def add_busybox(tree: Tree) -> None:
    if not Path(BUSYBOX).exists():
        raise SystemExit("lane: /bin/busybox missing: apt-get install busybox-static")
    check_static(BUSYBOX)
    tree.copy("bin/busybox", Path(BUSYBOX))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for name in sorted(set(applets) - {"busybox"}):
        tree.symlink(f"bin/{name}", "busybox")
    tree.symlink("sbin", "bin")
    tree.symlink("usr/sbin", "../bin")


def shared_libs(paths: list[str]) -> list[str]:
    """Resolved shared-library dependencies (ldd) of ELF files, the loader included."""
    libs: set[str] = set()
    for p in paths:
        out = subprocess.run(["ldd", p], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].split("(")[0].strip()
                if target.startswith("/"):
                    libs.add(target)
            elif line.startswith("/"):
                libs.add(line.split()[0])
    return sorted(libs)


def add_libs(tree: Tree, libs: list[str]) -> None:
    for lib in libs:
        name = os.path.basename(lib)
        if name.startswith("ld-linux"):
            tree.copy(f"lib64/{name}", Path(lib))
        else:
            tree.copy(f"lib/x86_64-linux-gnu/{name}", Path(lib))


def compile_pycs(tree: Tree, sources: list[tuple[Path, str]], work: Path) -> None:
    """Add SRC.py at its lane path plus __pycache__/NAME.cpython-311.pyc (unchecked hash)."""
    jobs = []
    for i, (src, lane_path) in enumerate(sources):
        stem = os.path.basename(lane_path)[:-3]
        cdir = os.path.dirname(lane_path)
        jobs.append((str(src), str(work / f"{i}.pyc"), "/" + lane_path))
        tree.copy(lane_path, src)
    subprocess.run([PYTHON, "-I", "-c", _COMPILE], input=json.dumps(jobs), text=True, check=True)
    for i, (src, lane_path) in enumerate(sources):
        stem = os.path.basename(lane_path)[:-3]
        cdir = os.path.dirname(lane_path)
        tree.file(f"{cdir}/__pycache__/{stem}.cpython-311.pyc", (work / f"{i}.pyc").read_bytes())


def stdlib_sources(rel_files: list[str], stdlib: str, dynload: str) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(python sources, extension modules) as (host path, lane path)."""
    py, so = [], []
    for rel in rel_files:
        src = Path(stdlib) / rel
        lane = f"usr/lib/python{PYVER}/{rel}"
        if rel.endswith(".py"):
            py.append((src, lane))
        elif rel.endswith(".so"):
            so.append((src, lane))
    return py, so


def god_closure() -> dict[str, str]:
    imports = [m for m in pyset.source_imports(GOD_SRC / "god") if not m.startswith("god")]
    mods = pyset.closure([*imports, *pyset.LAZY_STDLIB])
    return {n: f for n, f in mods.items() if not n.startswith("god")}


def build_base(out: Path | None, kernel: dict, kdir: Path, work: Path) -> dict:
    tree = Tree()
    for d in ("dev", "proc", "sys", "tmp", "root", "lane", "etc", "mnt"):
        tree.dir(d)
    tree.chardev("dev/console", 5, 1)
    tree.file("init", (HERE / "init.sh").read_bytes(), 0o755)
    add_busybox(tree)
    for name in LANE_MODULES:
        tree.copy(f"lib/modules/lane/{name}.ko", kdir / kernel["modules"][name]["file"])

    stdlib, dynload = pyset.stdlib_dirs()
    mods = god_closure()
    rel, _other = pyset.split_files(mods, stdlib)
    py, so = stdlib_sources(rel, stdlib, dynload)
    tree.copy(f"usr/bin/python{PYVER}", Path(PYTHON))
    tree.symlink("usr/bin/python3", f"python{PYVER}")
    tree.symlink("bin/python3", f"../usr/bin/python{PYVER}")
    # The interpreter finds its prefix through this landmark; an empty lib-dynload exists too.
    tree.dir(f"usr/lib/python{PYVER}/lib-dynload")
    for src, lane in so:
        tree.copy(lane, src)
    libs = shared_libs([PYTHON, *(str(s) for s, _ in so)])
    add_libs(tree, libs)
    god_files = [(p, "lane/god/" + str(p.relative_to(GOD_SRC))) for p in sorted((GOD_SRC / "god").rglob("*.py"))
                 if "__pycache__" not in p.parts]
    compile_pycs(tree, [*py, *god_files], work / "pyc-base")
    data = tree.gz() if out is not None else b""
    if out is not None:
        (out / "lane.cpio.gz").write_bytes(data)
        # What boots use: unpacked, the lane's Linux copies it instead of inflating 21 MB under
        # TCG (~0.6 s of each ~6 s lane boot). The .gz stays as the image's reproducible record.
        (out / "lane.cpio").write_bytes(tree.cpio())
    return {
        "stdlib_modules": sorted(mods),
        "stdlib_files": rel,
        "shared_libs": libs,
        "god_files": [lane for _, lane in god_files],
        "uncompressed_bytes": tree.size(),
        "gz_bytes": len(data),
        "files": sorted(tree.entries),
    }


def site_packages_of(modfiles: dict[str, str], path: list[str], stdlib: str) -> list[tuple[Path, str]]:
    """Third-party files (pytest, pluggy, ...) as (host path, lane path under lane/site)."""
    tops: set[tuple[str, str]] = set()
    for f in modfiles.values():
        if f.startswith(stdlib + "/") and "-packages/" not in f:
            continue
        for entry in path:
            if f.startswith(entry.rstrip("/") + "/"):
                top = f[len(entry.rstrip("/")) + 1:].split("/")[0]
                if top not in ("guests", "tests", "docs"):  # the repository root is a path entry
                    tops.add((entry, top))
                break
    files: list[tuple[Path, str]] = []
    for entry, top in sorted(tops):
        src = Path(entry) / top
        if src.is_dir():
            for p in sorted(src.rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".pyi")):
                    files.append((p, f"lane/site/{p.relative_to(entry)}"))
        else:
            files.append((src, f"lane/site/{top}"))
    return files


def record_test_guests(work: Path) -> Path:
    """Run god's tests on the build host in lane_replay record mode (builds, no boots)."""
    scratch = work / "godtests"
    shutil.copytree(GOD_TESTS, scratch / "tests", ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copy(GUESTS / "god" / "pyproject.toml", scratch / "pyproject.toml")
    records = work / "prebuilt.json"
    env = {**os.environ, "LANE_REPLAY": f"record:{records}", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), str(GOD_SRC)])}
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # god's tests use no plugin; keep the host's out
    # --basetemp inside the build's work dir: its tmp_path dirs go with it, not to /tmp/pytest-of-*.
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "lane_replay", "-p", "no:cacheprovider",
                          f"--basetemp={work / 'basetemp'}", "tests"],
                         cwd=scratch, env=env, capture_output=True, text=True, timeout=1200, check=False)
    if not records.exists():
        raise SystemExit(f"lane: recording god's test guests failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}")
    n = len(json.loads(records.read_text()))
    log(f"recorded {n} test-guest builds from god's tests")
    return records


def build_tests(out: Path, base: dict, work: Path) -> dict:
    import pytest as host_pytest  # the build's pytest: copied into the lane, run by python3.11

    site = str(Path(host_pytest.__file__).resolve().parents[1])
    stdlib, dynload = pyset.stdlib_dirs()
    scratch = work / "collect"
    shutil.copytree(GOD_TESTS, scratch / "tests", ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copy(GUESTS / "god" / "pyproject.toml", scratch / "pyproject.toml")
    # god's virtio tests import the plugin's host-side helpers (pytest_vmm.vsock): ship it.
    path = [str(HERE), site, str(GOD_SRC), str(scratch / "tests"), str(GUESTS.parent)]
    mods = pyset.pytest_closure(["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "lane_replay",
                                 "-rA", f"--junitxml={scratch}/j.xml", "tests"], path, scratch)
    mods.update(pyset.closure(list(pyset.LAZY_STDLIB) + ["xml.etree.ElementTree", "pty", "tty", "termios",
                                                         "calendar", "socket", "shutil", "subprocess"]))
    rel, _other = pyset.split_files(mods, stdlib)
    have = set(base["stdlib_files"])
    rel = [r for r in rel if r not in have]
    py, so = stdlib_sources(rel, stdlib, dynload)
    third = site_packages_of({n: f for n, f in mods.items() if n.split(".")[0] not in
                              ("god", "conftest", "guestbuild", "lane_replay", *OPTIONAL_SITE)
                              and not n.startswith("test_")},
                             [site, str(GUESTS.parent)], stdlib)
    tree = Tree()
    for src, lane in so:
        tree.copy(lane, src)
    # Extension modules of third-party packages (e.g. hypothesis' native part) need their
    # shared libraries too, not just the stdlib's.
    third_ext = [str(src) for src, lane in third if lane.endswith(".so") or ".so." in lane]
    new_libs = [lib for lib in shared_libs([str(s) for s, _ in so] + third_ext) if lib not in base["shared_libs"]]
    add_libs(tree, new_libs)
    third_py = [(s, lane) for s, lane in third if lane.endswith(".py")]
    for s, lane in third:
        if not lane.endswith(".py"):
            tree.copy(lane, s)
    tree.file("lane/site/lane_replay.py", (HERE / "lane_replay.py").read_bytes())
    # god's tests, laid out as in the repository (rootdir guests/god) so node ids match.
    for p in sorted(GOD_TESTS.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts:
            tree.copy(f"lane/godtests/tests/{p.relative_to(GOD_TESTS)}", p)
    tree.copy("lane/godtests/pyproject.toml", GUESTS / "god" / "pyproject.toml")
    records = record_test_guests(work)
    tree.file("lane/godtests/prebuilt.json", records.read_bytes())
    compile_pycs(tree, [*py, *third_py], work / "pyc-tests")
    data = tree.gz()
    (out / "tests.cpio.gz").write_bytes(data)
    return {
        "stdlib_files": rel,
        "site_packages": sorted({lane.split("/")[2] for _, lane in third}),
        "shared_libs": new_libs,
        "uncompressed_bytes": tree.size(),
        "gz_bytes": len(data),
        "prebuilt_guests": len(json.loads(records.read_text())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--no-tests", action="store_true", help="skip tests.cpio.gz (god's test suite)")
    mode.add_argument("--tests-only", action="store_true", help="only tests.cpio.gz")
    a = ap.parse_args(argv)
    out: Path = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not Path(PYTHON).exists():
        raise SystemExit(f"lane: {PYTHON} missing: apt-get install python3.11")
    t0 = time.monotonic()
    kdir = out / "kernel"
    try:
        kernel = debkernel.build(kdir, LANE_MODULES)
    except debkernel.KernelUnavailable as e:
        print(f"lane: error: {e}", file=sys.stderr)
        return 2
    if a.tests_only:
        (kdir / "vmlinux").unlink()
    else:
        os.replace(kdir / "vmlinux", out / "vmlinux")
    for name in ("vmlinuz", "config"):
        (kdir / name).unlink(missing_ok=True)
    log(f"kernel {kernel['package']} {kernel['package_version']} in {time.monotonic() - t0:.1f} s")
    with tempfile.TemporaryDirectory(prefix="lane-build-") as tmp:
        work = Path(tmp)
        (work / "pyc-base").mkdir()
        (work / "pyc-tests").mkdir()
        base = build_base(None if a.tests_only else out, kernel, kdir, work)
        if not a.tests_only:
            log(f"lane.cpio.gz: {base['gz_bytes'] / 1e6:.1f} MB ({base['uncompressed_bytes'] / 1e6:.1f} MB "
            f"unpacked, {len(base['stdlib_modules'])} stdlib modules)")
        tests = None
        if not a.no_tests:
            tests = build_tests(out, base, work)
            log(f"tests.cpio.gz: {tests['gz_bytes'] / 1e6:.1f} MB, site packages {', '.join(tests['site_packages'])}")
    shutil.rmtree(kdir)
    manifest = {
        "kernel": {k: kernel[k] for k in ("package", "package_version", "release", "pvh_entry")},
        "modules": list(LANE_MODULES),
        "python": PYTHON,
        "base": base,
        "tests": tests,
    }
    (out / "lane.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (out / "image.json").write_text(json.dumps({
        "kernel": None if a.tests_only else "vmlinux",
        "initrd": None if a.tests_only else "lane.cpio.gz",
        "tests_initrd": "tests.cpio.gz" if tests else None}) + "\n")
    log(f"built in {time.monotonic() - t0:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
