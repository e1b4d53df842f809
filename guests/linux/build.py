#!/usr/bin/env python3
"""Command line for the shared Debian-kernel unpacker (see debkernel.py).

    python guests/linux/build.py --out DIR [--module NAME ...] [--only]

writes DIR/vmlinuz (bzImage), DIR/vmlinux (ELF with the PVH note), DIR/config,
DIR/modules/*.ko and DIR/kernel.json. From Python: ``debkernel.build(Path(DIR))``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debkernel


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--module", action="append", default=[],
                    help="extra module to include (with its dependencies); repeatable")
    ap.add_argument("--only", action="store_true",
                    help="include only the --module ones, not the default set")
    a = ap.parse_args(argv)
    wanted = list(a.module) if a.only else [*debkernel.DEFAULT_MODULES, *a.module]
    t0 = time.monotonic()
    try:
        info = debkernel.build(a.out, wanted)
    except debkernel.KernelUnavailable as e:
        print(f"linux: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: info[k] for k in ("package", "package_version", "release", "pvh_entry")}))
    print(f"linux: {len(info['load_order'])} modules -> {a.out} in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
