"""Build llama.cpp's CLI tools as static binaries (x86-64, aarch64), once, from a pinned sdist.

llama.cpp is vendored inside the ``llama-cpp-python`` sdist on PyPI, the one registry for
source we can reach here, so the sdist (pinned by version and sha256 in versions.json) is our
source tarball. The binaries must run inside a Linux guest whose userspace is only BusyBox,
hence ``-static``; and under QEMU TCG, whose ``-cpu max`` has AVX2/FMA/F16C but no AVX-512,
hence a fixed (non-native) instruction set. The aarch64 variant is cross-compiled with
Debian's aarch64-linux-gnu-gcc/g++ (its cmake flags carry the toolchain settings) for the
ARMv8.0-A baseline: NEON only, which QEMU TCG's ``-cpu max`` and Apple Silicon both run. A
build takes 4-8 minutes on 2 shared cores, so the result is cached under
``~/.cache/pytest-vmm/llama-<hash of version+flags>``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Appended, not prepended: guests/linux/build.py must not shadow PyPA's `build` package.
if str(HERE.parent / "linux") not in sys.path:
    sys.path.append(str(HERE.parent / "linux"))
from vmmcache import cached_dir, sha256_file, short_hash

# Bump when the way the binaries are produced changes in a way versions.json doesn't show.
RECIPE = 2

# llama.cpp's logger is an asynchronous thread that is deliberately never joined at exit
# (upstream issue 22142), so a quick run can exit before its last lines, the perf summary
# the tok/s tests parse, reach stderr: natively 2 runs in 10 lost it here. One line added
# before llama-completion's final return flushes the logger (common_log_pause joins it).
_FLUSH_PATCH = (
    "tools/completion/completion.cpp",
    "    llama_backend_free();\n\n    return 0;\n}",
    ("    llama_backend_free();\n\n"
     "    common_log_pause(common_log_main());  // zosia: flush the perf lines before exit\n\n"
     "    return 0;\n}"),
)


def _patch(src: Path) -> None:
    rel, old, new = _FLUSH_PATCH
    path = src / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"zosia: cannot apply the log-flush patch to {rel}: source changed?")
    path.write_text(text.replace(old, new))


def phase(text: str) -> None:
    """A phase line for pytest-vmm's build progress (pytest_vmm/progress.py: PHASE_PREFIX)."""
    print("pytest-vmm-phase: " + text, flush=True)


def load_versions() -> dict:
    return json.loads((HERE / "versions.json").read_text())


def variants(versions: dict | None = None, arch: str = "x86_64") -> list[str]:
    """The variants an image of ``arch`` ships (versions.json: each variant's "arch")."""
    v = (versions or load_versions())["llama_variants"]
    return sorted(name for name, var in v.items() if var.get("arch", "x86_64") == arch)


def llama_key(variant: str = "avx2", versions: dict | None = None) -> str:
    v = versions or load_versions()
    var = v["llama_variants"][variant]
    parts: list[object] = [RECIPE, _FLUSH_PATCH, v["llama_cpp_python"], var["targets"],
                           var["cmake_flags"]]
    if "strip" in var:  # only cross variants name one: the x86 keys stay what they were
        parts.append(var["strip"])
    return short_hash(*parts)


def fetch_sdist(versions: dict | None = None) -> Path:
    """The pinned sdist, downloaded with pip (hash-checked) into its own cache entry."""
    v = (versions or load_versions())["llama_cpp_python"]

    def produce(tmp: Path) -> None:
        req = tmp / "requirements.txt"
        # --require-hashes makes pip itself refuse a tarball that isn't the pinned one.
        req.write_text(f"llama-cpp-python=={v['version']} --hash=sha256:{v['sha256']}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
               # Only this package as source: ":all:" would also force pip to compile the
               # sdist's *build* dependencies (cmake, ninja...) from source to read metadata.
               "--no-binary", "llama-cpp-python", "-r", str(req), "-d", str(tmp)]
        print("zosia: $", " ".join(cmd), flush=True)
        res = subprocess.run(cmd, check=False)
        if res.returncode != 0:
            raise SystemExit(f"zosia: pip download failed; run by hand:\n  {' '.join(cmd)}")
        req.unlink()

    d = cached_dir("llama-sdist", v["sha256"][:16], produce)
    tarballs = sorted(d.glob("llama_cpp_python-*.tar.gz"))
    if len(tarballs) != 1 or sha256_file(tarballs[0]) != v["sha256"]:
        raise SystemExit(f"zosia: cached sdist in {d} does not match versions.json")
    return tarballs[0]


def _extract_vendor(sdist: Path, dest: Path) -> Path:
    """Unpack only vendor/llama.cpp (the sdist's Python bits are not needed)."""
    with tarfile.open(sdist) as tf:
        members = [m for m in tf.getmembers() if "/vendor/llama.cpp/" in m.name]
        if hasattr(tarfile, "data_filter"):  # 3.11.4+: refuse odd paths/links in the tarball
            tf.extractall(dest, members=members, filter="data")
        else:
            tf.extractall(dest, members=members)  # the sdist is pinned by sha256
    (src,) = dest.glob("llama_cpp_python-*/vendor/llama.cpp")
    return src


def build_llama(variant: str = "avx2", jobs: int | None = None) -> Path:
    """Return a cache dir holding ``bin/<target><suffix>`` static stripped binaries.

    Variants (versions.json) differ in instruction set: ``avx2`` for real CPUs, ``sse42``
    for QEMU TCG, which emulates SSE much faster than AVX2/FMA.
    """
    versions = load_versions()
    var = versions["llama_variants"][variant]
    key = llama_key(variant, versions)

    def produce(tmp: Path) -> None:
        t0 = time.monotonic()
        phase(f"llama.cpp {variant}: fetch source")
        sdist = fetch_sdist(versions)
        work = tmp / "work"
        src = _extract_vendor(sdist, work)
        _patch(src)
        bld = work / "build"
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        j = str(jobs or int(os.environ.get("ZOSIA_JOBS", "2")))
        cfg = ["cmake", "-S", str(src), "-B", str(bld), *var["cmake_flags"]]
        phase(f"llama.cpp {variant}: configure")
        print("zosia: $", " ".join(cfg), flush=True)
        subprocess.run(nice + cfg, check=True)
        bcmd = ["cmake", "--build", str(bld), "-j", j, "--target", *var["targets"]]
        phase(f"llama.cpp {variant}: compile ({len(var['targets'])} targets, -j {j})")
        print("zosia: $", " ".join(bcmd), flush=True)
        subprocess.run(nice + bcmd, check=True)
        out = tmp / "bin"
        out.mkdir()
        for t in var["targets"]:
            dst = out / (t + var["suffix"])
            shutil.copy2(bld / "bin" / t, dst)
            subprocess.run([var.get("strip", "strip"), "--strip-all", str(dst)], check=True)
        shutil.rmtree(work)
        info = {
            "llama_cpp_python": versions["llama_cpp_python"],
            "variant": variant,
            "arch": var.get("arch", "x86_64"),
            "cmake_flags": var["cmake_flags"],
            "targets": var["targets"],
            "build_seconds": round(time.monotonic() - t0, 1),
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"zosia: llama.cpp ({variant}) built in {info['build_seconds']} s", flush=True)

    return cached_dir("llama", key, produce)


if __name__ == "__main__":
    for name in sys.argv[1:] or variants():  # e.g. `llama_build.py neon` for aarch64
        print(name, build_llama(name))
