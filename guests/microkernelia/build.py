"""Build microkernelia: `python guests/microkernelia/build.py --out OUT`.

Writes OUT/microkernelia.elf (PVH ELF, Xen note 18, 32-bit entry), OUT/model.img (the
virtio-blk model disk) and OUT/image.json. Rust: the installed stable toolchain for the host
triple, freestanding link (kernel/link.ld), crates only from Debian's registry
(/usr/share/cargo/registry: apt-get install librust-serde-json-dev). Offline.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REGISTRY = Path("/usr/share/cargo/registry")


def mcp_port() -> int:
    """The port the kernel listens on, as mcp_core defines it (image.json reports it)."""
    src = (HERE / "mcp_core" / "src" / "lib.rs").read_text()
    m = re.search(r"^pub const MCP_PORT: u32 = (\d+);", src, re.M)
    if m is None:
        raise SystemExit("build.py: no `pub const MCP_PORT: u32` in mcp_core/src/lib.rs")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--target-dir", type=Path, default=None,
                    help="cargo target dir (default: OUT/cargo-target)")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cargo = shutil.which("cargo")
    if cargo is None:
        print("build.py: cargo not found on PATH (install a stable Rust toolchain)", file=sys.stderr)
        return 1
    if not any(REGISTRY.glob("serde_json-*")):
        print(f"build.py: serde_json is missing from {REGISTRY}: apt-get install librust-serde-json-dev",
              file=sys.stderr)
        return 1
    target_dir = (args.target_dir or out / "cargo-target").resolve()
    env = {**os.environ, "RUSTFLAGS": "-C relocation-model=static", "CARGO_TARGET_DIR": str(target_dir)}
    cmd = [cargo, "build", "--offline", "--release", "-p", "kernel"]
    print("build.py:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=HERE, env=env)
    if proc.returncode != 0:
        return proc.returncode
    elf = target_dir / "release" / "microkernelia"
    shutil.copyfile(elf, out / "microkernelia.elf")
    sys.path.insert(0, str(HERE))
    from mkdisk import make_disk  # noqa: E402

    model = (HERE / "model" / "model.kv").read_bytes()
    (out / "model.img").write_bytes(make_disk([("model.kv", model)]))
    (out / "image.json").write_text(json.dumps({
        "kernel": "microkernelia.elf",
        "disk": "model.img",
        "mcp_port": mcp_port(),
        "model": "model.kv",
    }, indent=2) + "\n")
    shutil.rmtree(target_dir, ignore_errors=True) if args.target_dir is None else None
    print(f"build.py: wrote {out / 'microkernelia.elf'} and {out / 'model.img'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
