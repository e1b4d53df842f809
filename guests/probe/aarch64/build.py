"""Build the arm64 probe: ``python guests/probe/aarch64/build.py --out OUT_DIR``.

Writes OUT_DIR/probe.img (an arm64 ``Image``: the Linux boot protocol header, text_offset
0x80000, for QEMU's -kernel and god's raw loader), OUT_DIR/probe-aarch64.elf (the same bytes
as one PT_LOAD at 0x40080000) and OUT_DIR/virtio-disk.img. Cross-compiled with Debian's
gcc-aarch64-linux-gnu, general registers only; the build fails if a SIMD/FP register shows up
in the disassembly (guests must run on any baseline arm64 CPU and under TCG).
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE = HERE.parent
SOURCES = [HERE / "boot.S", HERE / "main.c", HERE / "gic.c", HERE / "timer.c", HERE / "uart.c",
           HERE / "agent.c", PROBE / "protocol.c", PROBE / "fmt.c"]
PREFIX = "aarch64-linux-gnu-"
CFLAGS = [
    "-std=gnu11", "-ffreestanding", "-nostdlib", "-mgeneral-regs-only", "-march=armv8-a", "-mstrict-align",
    "-fno-pic", "-fno-pie", "-fno-stack-protector", "-O2", "-fno-asynchronous-unwind-tables",
    "-fno-tree-loop-distribute-patterns", "-mno-outline-atomics", "-I" + str(HERE),
    "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
]
LDFLAGS = ["-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments",
           "-Wl,-T," + str(HERE / "link.ld")]
# a SIMD/FP register (v0-v31, q/d/s/h/b registers) in the disassembly
FORBIDDEN = re.compile(r"\b(?:v\d+\.|[qdsh]\d+\b)")
IMAGE_MAGIC = 0x644D5241  # "ARM\x64" (Documentation/arch/arm64/booting.rst)


def run(cmd: list[str]) -> str:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(["nice", "-n", "10", *cmd], capture_output=True, text=True, check=False)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode:
        raise SystemExit(f"build failed: {cmd[0]} exited {proc.returncode}")
    return proc.stdout


def tool(name: str) -> str:
    path = shutil.which(PREFIX + name)
    if path is None:
        raise SystemExit(f"{PREFIX}{name} not found on PATH (apt-get install gcc-aarch64-linux-gnu)")
    return path


def check(elf: Path, image: Path) -> None:
    data = image.read_bytes()
    text_offset, image_size = struct.unpack_from("<QQ", data, 8)
    magic = struct.unpack_from("<I", data, 56)[0]
    if magic != IMAGE_MAGIC or text_offset != 0x80000 or image_size < len(data):
        raise SystemExit(f"{image}: bad arm64 Image header (magic {magic:#x}, text_offset {text_offset:#x}, "
                         f"image_size {image_size:#x} for {len(data)} bytes)")
    listing = subprocess.run([tool("objdump"), "-d", "--no-show-raw-insn", str(elf)], capture_output=True,
                             text=True, check=True).stdout
    bad = [line for line in listing.splitlines() if "\t" in line and FORBIDDEN.search(line.split("\t", 1)[1])]
    if bad:
        raise SystemExit(f"{elf}: SIMD/FP instructions found:\n" + "\n".join(bad[:20]))
    print(f"{image.name}: {len(data)} bytes (image_size {image_size:#x}), Image header ok, no SIMD/FP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    objdir = out / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    cc = tool("gcc")
    objs = []
    for src in SOURCES:
        obj = objdir / (src.parent.name + "_" + src.name.replace(".", "_") + ".o")
        run([cc, *CFLAGS, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    elf = out / "probe-aarch64.elf"
    run([cc, *CFLAGS, *LDFLAGS, *objs, "-lgcc", "-o", str(elf)])
    image = out / "probe.img"
    run([tool("objcopy"), "-O", "binary", str(elf), str(image)])
    check(elf, image)
    shutil.rmtree(objdir)
    sys.path.insert(0, str(PROBE.parents[1]))
    from pytest_vmm.virtio import testdisk

    testdisk.write(out / testdisk.FILE_NAME)


if __name__ == "__main__":
    main()
