"""Build the probe kernel: ``python guests/probe/build.py --out OUT_DIR``.

Writes OUT_DIR/probe.elf (PVH note + multiboot v1 header: boots either way) and
OUT_DIR/probe-pvh.elf (PVH note only, so QEMU -- which prefers multiboot -- can be made to
take the PVH path too) and OUT_DIR/virtio-disk.img (the virtio suites' test disk). Fails if any SSE/x87 instruction slipped into the image: PVM's ring-0
emulator stops the vCPU on them.
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
SOURCES = ["boot.S", "main.c", "mp.c", "intr.c", "timer.c", "uart.c", "agent.c", "protocol.c", "fmt.c"]
CFLAGS = [
    "-std=gnu11", "-ffreestanding", "-mgeneral-regs-only", "-mno-red-zone", "-fno-pic", "-fno-pie",
    "-fno-stack-protector", "-O2", "-fno-asynchronous-unwind-tables", "-fno-tree-loop-distribute-patterns",
    "--param=min-pagesize=0",  # low fixed addresses (BDA, EBDA) are real memory here
    "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
]
LDFLAGS = [
    "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,-z,max-page-size=0x1000",
    "-Wl,--no-warn-rwx-segments", "-Wl,-T," + str(HERE / "link.ld"),
]
# an xmm/ymm/x87 register or an x87 opcode in the disassembly means SSE/FPU code crept in
FORBIDDEN = re.compile(r"%[xy]mm\d|%st\b|\bf(?:ld|st|nstenv|xsave|xrstor|wait)\b|\bxrstor|\bemms\b")


def run(cmd: list[str]) -> str:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(["nice", "-n", "10", *cmd], capture_output=True, text=True, check=False)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode:
        raise SystemExit(f"build failed: {cmd[0]} exited {proc.returncode}")
    return proc.stdout


def link(objdir: Path, out: Path, multiboot: bool) -> None:
    objs = []
    for src in SOURCES:
        obj = objdir / (src.replace(".", "_") + (".mb" if multiboot else ".pvh") + ".o")
        defs = [] if multiboot else ["-DPROBE_NO_MULTIBOOT"]
        run([CC, *CFLAGS, *defs, "-c", str(HERE / src), "-o", str(obj)])
        objs.append(str(obj))
    run([CC, *CFLAGS, *LDFLAGS, *objs, "-o", str(out)])


def check(elf: Path, multiboot: bool) -> None:
    data = elf.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise SystemExit(f"{elf}: not an ELF64")
    if (b"Xen\x00" not in data) or struct.pack("<I", 18) not in data:
        raise SystemExit(f"{elf}: no Xen PVH note")
    has_mb = any(struct.unpack_from("<I", data, off)[0] == 0x1BADB002 for off in range(0, min(len(data), 8192) - 4, 4))
    if has_mb != multiboot:
        raise SystemExit(f"{elf}: multiboot header {'missing' if multiboot else 'unexpected'} in the first 8 KiB")
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(elf)], capture_output=True, text=True, check=True).stdout
    bad = [line for line in listing.splitlines() if FORBIDDEN.search(line)]
    if bad:
        raise SystemExit(f"{elf}: SSE/x87 instructions found (PVM ring 0 cannot run them):\n" + "\n".join(bad[:20]))
    print(f"{elf.name}: {len(data)} bytes, PVH note ok, multiboot={'yes' if has_mb else 'no'}, no SSE/x87")


CC = shutil.which("gcc") or "gcc"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    objdir = out / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    for name, mb in (("probe.elf", True), ("probe-pvh.elf", False)):
        link(objdir, out / name, mb)
        check(out / name, mb)
    shutil.rmtree(objdir)
    write_test_disk(out)


def write_test_disk(out: Path) -> None:
    """The virtio-blk test disk (pytest_vmm/virtio/testdisk.py defines its pattern, once)."""
    sys.path.insert(0, str(HERE.parents[1]))
    from pytest_vmm.virtio import testdisk

    testdisk.write(out / testdisk.FILE_NAME)
    print(f"{testdisk.FILE_NAME}: {testdisk.SECTORS} sectors")


if __name__ == "__main__":
    main()
