#!/usr/bin/env python3
"""Build contract of the zigu guest: ``python guests/zigu/build.py --out OUT_DIR``.

Runs ``zig build`` (Zig from PyPI: ``python -m ziglang``) and copies into OUT_DIR:
  zigu.elf          the PVH kernel (Xen note type 18, 32-bit entry)
  libzigu_abi.so    the same ABI source built for the host (ctypes)
  ukernel_abi.h     the C header
  build-info.txt    zig version, sizes, the SSE check
Zig's caches go to ~/.cache/pytest-vmm/zigu-zig-cache (shared, content addressed), so the
only outputs are in OUT_DIR. Fails if ring-0 code contains SSE/x87 instructions.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pytest-vmm" / "zigu-zig-cache"
SSE_RE = re.compile(r"%[xy]mm\d|%st\b|%st\(|\bf(ld|st|add|mul|div|sub|init|wait|xsave|xrstor)\w*\s")


def zig(*args: str, cwd: Path = HERE) -> None:
    cmd = [sys.executable, "-m", "ziglang", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def sse_lines(elf: Path) -> list[str]:
    """Instructions touching SSE/x87 state in the kernel image (must be none)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return []
    out = subprocess.run([objdump, "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "\t" in line and SSE_RE.search(line.split("\t")[-1] + " ")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--optimize", default="small", choices=["debug", "safe", "fast", "small"])
    ap.add_argument("--test", action="store_true", help="also run `zig build test`")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zigu-build-") as tmp:
        prefix = Path(tmp) / "prefix"
        common = ["--cache-dir", str(CACHE), "--prefix", str(prefix)]
        zig("build", *common, f"-Doptimize={args.optimize}")
        if args.test:
            zig("build", "test", *common)
        elf = prefix / "bin" / "zigu.elf"
        lib = prefix / "lib" / "libzigu_abi.so"
        bad = sse_lines(elf)
        if bad:
            print("ring-0 image contains SSE/x87 instructions:", *bad[:20], sep="\n  ", file=sys.stderr)
            return 1
        shutil.copy2(elf, out / "zigu.elf")
        shutil.copy2(lib, out / "libzigu_abi.so")
        shutil.copy2(HERE / "include" / "ukernel_abi.h", out / "ukernel_abi.h")
        ver = subprocess.run([sys.executable, "-m", "ziglang", "version"], capture_output=True, text=True).stdout.strip()
        (out / "build-info.txt").write_text(
            f"zig {ver}\noptimize {args.optimize}\nzigu.elf {elf.stat().st_size} bytes\n"
            f"libzigu_abi.so {lib.stat().st_size} bytes\nsse_check {'objdump: none' if shutil.which('objdump') else 'skipped (no objdump)'}\n"
        )
    print(f"zigu: built into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
