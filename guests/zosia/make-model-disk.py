#!/usr/bin/env python3
"""Put any GGUF model(s) on a zosia model disk (an ext2 image; no root, no loop mounts).

    python guests/zosia/make-model-disk.py MODEL.gguf [MORE.gguf ...] -o disk.ext2 \\
        [--llama-arg=-n --llama-arg=256 ...]

Boot it with ``DISK=disk.ext2 guests/zosia/run.sh``; /init runs the first *.gguf at the
disk's root (or the one named by ``zosia.model=FILE`` on the kernel command line). Files are
hard-linked into the image staging area when possible, so a multi-GB model is read once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from modeldisk import make_disk


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="GGUF file(s) to put on the disk")
    ap.add_argument("-o", "--out", type=Path, required=True, help="disk image to write")
    ap.add_argument("--llama-arg", action="append", default=[],
                    help="extra llama.cpp argument stored in zosia.args (repeatable; "
                         "use --llama-arg=-n for values starting with '-')")
    ap.add_argument("--force", action="store_true",
                    help="also accept files that do not start with the GGUF magic")
    a = ap.parse_args(argv)
    for m in a.models:
        with m.open("rb") as f:
            if f.read(4) != b"GGUF" and not a.force:
                print(f"make-model-disk: {m} is not a GGUF file (use --force to test "
                      "how the guest handles that)", file=sys.stderr)
                return 2
    make_disk(a.models, a.out, a.llama_arg or None)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
