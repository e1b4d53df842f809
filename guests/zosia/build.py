#!/usr/bin/env python3
"""Build the zosia guest image: Debian's kernel + BusyBox + llama.cpp initramfs + model disk.

    python guests/zosia/build.py --out OUT_DIR [--arch x86_64|aarch64]

x86_64 (the default) boots on QEMU microvm; aarch64 (the seeds' target) on QEMU ``virt``
(see "aarch64" below). OUT_DIR afterwards for x86_64 (paths in zosia.json are relative to it):

    linux/vmlinux           PVH ELF kernel (what QEMU boots with -kernel)
    linux/vmlinuz           the same kernel as bzImage
    linux/kernel.json       Debian package, version, modules
    initramfs.cpio          BusyBox, /init, modules, llama-completion (+ -sse42); what
                            QEMU loads: unpacking skips a 27 MB gunzip under TCG
    initramfs.cpio.gz       the same archive, gzip -n
    model.gguf              the tiny deterministic test model
    model.ext2              model disk (ext2) holding model.gguf + zosia.args
    bin/llama-completion    the same static binaries (AVX2 build), for native runs
    bin/llama-completion-sse42   SSE4.2 build: what /init runs under QEMU TCG
    bin/llama-bench
    zosia.json              what a launcher needs: files, default command line, markers

aarch64 has the same layout and the same /init, model and disk, with Debian's arm64 kernel
(linux/Image: the arm64 ``Image`` QEMU boots with -kernel, or UEFI through its EFI stub),
BusyBox from busybox-static:arm64, and one llama.cpp build (bin/llama-completion, cross-
compiled for the ARMv8.0-A NEON baseline: llama_build.py's "neon" variant). Both come from
guests/linux/foreign.py (apt-get download of arm64 packages, unpacked, cached).

The expensive inputs are cached (kernel unpack, llama.cpp build) under
~/.cache/pytest-vmm/; with them cached a build takes seconds. Two builds give byte-identical
initramfs.cpio.gz and model.ext2 (see tests/zosia/test_reproducible.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "linux"))

import debkernel
import foreign
from cpio import Tree
from modeldisk import make_disk, source_date_epoch
from vmmcache import cached_dir, short_hash

# What /init insmods, in this order (deps first): both virtio transports (microvm's
# virtio-mmio found through ACPI, and virtio-pci for `-M pc`), the block driver, and ext4,
# which also mounts ext2. crc32c_generic satisfies ext4/jbd2's softdep on crypto-crc32c.
ZOSIA_MODULES = (
    "virtio_ring", "virtio", "virtio_mmio",
    "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "virtio_blk", "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4",
)
# aarch64: Debian's arm64 kernel has virtio core and the PL011 console built in, but the
# virtio-mmio transport (what QEMU virt's devices sit on), the block driver and ext4 are
# modules (config-*-arm64: CONFIG_VIRTIO_MMIO=m, CONFIG_VIRTIO_BLK=m, CONFIG_EXT4_FS=m).
ZOSIA_MODULES_AARCH64 = (
    "virtio_mmio", "virtio_blk", "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4",
)
ARCHES = ("x86_64", "aarch64")
# Kernel command line the image expects; a launcher adds tsc_early_khz=<host kHz> (host
# specific: without it the kernel can hang calibrating the TSC under TCG on a loaded host).
# The rest trims boot time under TCG (measured together with the uncompressed initrd: init
# starts ~1.5 s sooner on a loaded host): no crypto self-tests, one UART to probe, no audit,
# no W^X/rodata pass and no speculation mitigations (a throwaway test VM; it also keeps the
# in-VM/native tok/s comparison free of guest-side mitigation costs).
DEFAULT_APPEND = ("console=ttyS0 tsc=reliable panic=-1 quiet cryptomgr.notests 8250.nr_uarts=1"
                  " audit=0 rodata=off mitigations=off")
# Extra llama.cpp args shipped on the tiny model's disk: the test model never samples EOS
# (see tinymodel.py), so an answer needs a length bound.
TINY_MODEL_ARGS = ["-n", "64"]
# What zosia.perf=1 runs (after -m MODEL and any extra args; then -t T -tb T -n N follow).
# Shipped as /etc/zosia/perf.args and in zosia.json, so a native comparison run on the host
# uses the very same arguments. --ignore-eos: always exactly N tokens, comparable runs.
# aarch64: the same minus the x86-only knobs (tsc=, 8250.nr_uarts=); the console is virt's
# PL011. The arm64.no* id-register overrides (Linux Documentation/admin-guide/kernel-
# parameters.txt) keep the kernel from turning on SVE, pointer authentication and BTI, which
# TCG emulates at a cost on every context switch / function return and which neither the
# NEON build nor a throwaway test VM needs: kernel start to the end of zosia.ci=1 ~0.4 s
# sooner and in-VM tok/s 150-175 -> 200-212 here (measured 2026-12-03, load ~3).
DEFAULT_APPEND_AARCH64 = ("console=ttyAMA0 panic=-1 quiet cryptomgr.notests audit=0 rodata=off"
                          " mitigations=off arm64.nosve arm64.nopauth arm64.nobti")
PERF_ARGS = ["-no-cnv", "-p", "The quick brown fox", "--ignore-eos", "--temp", "0"]
PERF_TOKENS = 128

MARKERS = {
    "init": r"zosia: init start t=([0-9.]+)",
    "boot_ok": r"zosia: boot ok t=([0-9.]+)",
    "ready": r"zosia: prompt ready( \(stub\))? t=([0-9.]+)",
    "llama_prompt": r"\n> ",
    "perf": r"zosia: perf eval_tok_s=([0-9.]+) runs=(\S+) prompt_tok_s=(\S+) threads=(\d+)"
            r" isa=(\w+)",
    "mode_done": r"zosia: (ci|diag|selftest|perf) done",
    "agent": r"zosia: agent start t=([0-9.]+)",
    "selftest": r"zosia: selftest (pass|fail)",
    "poweroff": r"zosia: poweroff t=([0-9.]+)",
    "error": r"zosia: error: (.*)",
    "fail": [r"Kernel panic", r"end Kernel panic", r"zosia: error: insmod"],
}


def log(msg: str) -> None:
    print(f"zosia: {msg}", flush=True)


def _is_static_elf(path: Path) -> bool:
    """True for an ELF64 without a PT_INTERP segment (no dynamic loader needed)."""
    import struct
    data = path.read_bytes()[:65536]
    if data[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3
               for i in range(phnum))


def _busybox(arch: str = "x86_64") -> Path:
    """Debian's busybox-static: the host's if it is the static one, else unpacked via apt."""
    if arch == "aarch64":
        return foreign.fetch_debs(["busybox-static"], arch="arm64")["busybox-static"] / "bin" / "busybox"
    host = Path("/bin/busybox")
    if host.exists() and _is_static_elf(host):
        return host

    def produce(tmp: Path) -> None:
        cmd = ["apt-get", "download", "busybox-static"]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        debs = list(tmp.glob("*.deb"))
        if r.returncode or len(debs) != 1:
            raise SystemExit(f"zosia: need busybox-static: run `apt-get install busybox-static`"
                             f" or `cd {tmp} && {' '.join(cmd)}` ({r.stderr.strip()})")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "x")], check=True)

    d = cached_dir("busybox-static", "deb", produce)
    return d / "x" / "bin" / "busybox"


def _busybox_applets(busybox: Path, arch: str = "x86_64") -> list[str]:
    # An arm64 BusyBox lists its applets under qemu-aarch64 user-mode emulation (qemu-user-
    # static, in bootstrap), unless this host runs aarch64 itself.
    run = [str(busybox)]
    if arch == "aarch64" and os.uname().machine != "aarch64":
        emu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
        if emu is None:
            raise SystemExit("zosia: listing the arm64 BusyBox's applets needs qemu-aarch64-static"
                             " (apt-get install qemu-user-static)")
        run = [emu, str(busybox)]
    r = subprocess.run([*run, "--list-full"], capture_output=True, text=True, check=True)
    return sorted(a for a in r.stdout.split() if a and a != "bin/busybox")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_model(out: Path) -> tuple[Path, str]:
    """The tiny GGUF, cached by its generator's source (it's deterministic anyway)."""
    import tinymodel

    key = short_hash((HERE / "tinymodel.py").read_text(), tinymodel.SEED)
    d = cached_dir("zosia-model", key, lambda tmp: tinymodel.write_model(tmp / "model.gguf"))
    dst = out / "model.gguf"
    shutil.copyfile(d / "model.gguf", dst)
    return dst, _sha256(dst)


def build_initramfs(out: Path, kernel: dict, kernel_dir: Path, llama_bins: list[Path],
                    epoch: int, arch: str = "x86_64") -> Path:
    t = Tree()
    bb = _busybox(arch)
    t.copy("bin/busybox", bb, 0o755)
    for applet in _busybox_applets(bb, arch):
        t.symlink(applet, "/bin/busybox")
    # The kernel opens /dev/console for PID 1 before /init can mount devtmpfs.
    t.chardev("dev/console", 5, 1, 0o600)
    for d in ("proc", "sys", "tmp", "run", "models", "root", "etc"):
        t.dir(d)
    t.file("init", (HERE / "rootfs" / "init").read_bytes(), 0o755)
    # The shell agent for pytest-vmm's suites (zosia.agent=1).
    t.file("usr/libexec/zosia-agent", (HERE / "rootfs" / "agent.sh").read_bytes(), 0o755)
    order = kernel["load_order"]  # ZOSIA_MODULES plus their dependencies, deps first
    for m in order:
        t.copy(f"lib/modules/zosia/{m}.ko", kernel_dir / kernel["modules"][m]["file"], 0o644)
    t.file("lib/modules/zosia/order", "".join(m + "\n" for m in order).encode())
    # Only the prompt binaries: llama-bench (11 MB) would cost boot time and no mode runs it
    # in the guest; it stays in OUT/bin for native runs.
    for b in llama_bins:
        if b.name.startswith("llama-completion"):
            t.copy(f"usr/bin/{b.name}", b, 0o755)
    t.file("etc/zosia/perf.args", "".join(a + "\n" for a in PERF_ARGS).encode())
    t.file("etc/zosia-release", json.dumps({
        "kernel": kernel["release"], "package": f"{kernel['package']}={kernel['package_version']}",
        "llama_cpp_python": json.loads((HERE / "versions.json").read_text())["llama_cpp_python"],
    }, sort_keys=True, indent=1).encode() + b"\n")
    raw = t.cpio(epoch)
    (out / "initramfs.cpio").write_bytes(raw)
    dst = out / "initramfs.cpio.gz"
    dst.write_bytes(t.gzip(raw))
    return dst


def build_arm64_kernel(out: Path, modules: tuple[str, ...] = ZOSIA_MODULES_AARCH64) -> dict:
    """Debian's arm64 kernel into ``out``: Image, config, modules/*.ko and kernel.json (the
    layout debkernel.build writes for amd64)."""
    k = foreign.arm64_kernel()
    meta = json.loads((k.root / "package.json").read_text())
    moddir = k.root / meta["moddir"]
    order = debkernel.resolve_load_order(k.modules, list(modules))
    out.mkdir(parents=True, exist_ok=True)
    debkernel._place(k.vmlinuz, out / "Image")  # pylint: disable=protected-access
    debkernel._place(k.config, out / "config")  # pylint: disable=protected-access
    (out / "modules").mkdir(exist_ok=True)
    mods: dict[str, dict] = {}
    for name in order:
        (out / "modules" / f"{name}.ko").write_bytes(
            debkernel.read_module(moddir / k.modules[name]["path"]))
        mods[name] = {"file": f"modules/{name}.ko", "depends": k.modules[name]["depends"],
                      "softdep": k.modules[name]["softdep"]}
    info = {
        "package": k.package.name, "package_version": k.package.version,
        "release": k.package.release, "arch": "arm64", "image": "Image", "config": "config",
        "modules_dir": "modules", "load_order": order, "modules": mods, "cache": str(k.root),
    }
    (out / "kernel.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def build(out: Path, llama_dirs: list[Path] | None = None, arch: str = "x86_64",
          llama_variants: list[str] | None = None) -> dict:
    """Build everything into ``out``; return the zosia.json content.

    ``llama_dirs`` (dirs with ``bin/``, e.g. cache entries of llama_build.build_llama)
    skip the llama.cpp step; the reproducibility test uses it. ``llama_variants`` picks which
    of the architecture's llama.cpp builds to make (default: all): a host without hardware
    KVM runs the x86_64 image only under QEMU TCG, which takes the sse42 build, so the avx2
    build (one of the longest steps of a cold build) would never run there.
    """
    if arch not in ARCHES:
        raise SystemExit(f"zosia: unknown --arch {arch!r}: one of {', '.join(ARCHES)}")
    t0 = time.monotonic()
    epoch = source_date_epoch()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 2)
        return now

    kdir = out / "linux"
    if arch == "aarch64":
        kernel = build_arm64_kernel(kdir)
    else:
        kernel = debkernel.build(kdir, ZOSIA_MODULES)
    t1 = lap("kernel", t0)
    log(f"kernel {kernel['package']}={kernel['package_version']}")

    if llama_dirs is None:
        import llama_build
        known = llama_build.variants(arch=arch)
        wanted = llama_variants or known
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise SystemExit(f"zosia: unknown --llama-variants {','.join(unknown)} for {arch}: "
                             f"one or more of {','.join(known)}")
        llama_dirs = [llama_build.build_llama(v) for v in sorted(wanted)]
    bindir = out / "bin"
    bindir.mkdir(exist_ok=True)
    llama_bins = sorted((f for d in llama_dirs for f in (d / "bin").iterdir()),
                        key=lambda p: p.name)
    for f in llama_bins:
        shutil.copy2(f, bindir / f.name)
    t2 = lap("llama", t1)

    debkernel.phase("zosia: model, initramfs, disk")
    model, model_sha = build_model(out)
    t3 = lap("model", t2)
    initrd = build_initramfs(out, kernel, kdir, llama_bins, epoch, arch)
    t4 = lap("initramfs", t3)
    disk = make_disk([model], out / "model.ext2", TINY_MODEL_ARGS, epoch=epoch)
    lap("disk", t4)

    info = manifest_aarch64(kernel) if arch == "aarch64" else manifest_x86_64(kernel, {f.name for f in llama_bins})
    info.update({
        "model_sha256": model_sha,
        "markers": MARKERS,
        "source_date_epoch": epoch,
        "sha256": {str(p.relative_to(out)): _sha256(p)
                   for p in (out / "initramfs.cpio", initrd, disk)},
        "build_seconds": timings,
    })
    (out / "zosia.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"built {out} ({arch}) in {time.monotonic() - t0:.1f} s {timings}")
    return info


BOOT_FLAGS = ["zosia.agent=1", "zosia.ci=1", "zosia.diag=1", "zosia.selftest=1", "zosia.perf=1",
              "zosia.perf.tokens=N", "zosia.llama_threads=N",
              "zosia.llama_batch_threads=N", "zosia.llama_args=a,b",
              "zosia.model=FILE", "zosia.timeout=SECONDS"]


def _common_manifest(kernel: dict) -> dict:
    return {
        "name": "zosia",
        "kernel_release": kernel["release"],
        "kernel_package": f"{kernel['package']}={kernel['package_version']}",
        "initrd": "initramfs.cpio",
        "initrd_gz": "initramfs.cpio.gz",
        "disk": "model.ext2",
        "disk_format": "raw",
        "disk_readonly": True,
        "model": "model.gguf",
        "model_args": TINY_MODEL_ARGS,
        "llama_completion": "bin/llama-completion",
        "perf_args": PERF_ARGS,
        "perf_tokens_default": PERF_TOKENS,
    }


def manifest_x86_64(kernel: dict, binaries: set[str] | None = None) -> dict:
    """zosia.json of the x86_64 image; ``binaries``: the llama.cpp files it ships (all if None)."""
    info = _common_manifest(kernel)
    # /init picks the binary by CPU (zosia.llama_isa=auto): sse42 under QEMU TCG, whose
    # AVX2/FMA emulation is much slower, avx2 elsewhere (the one there is, when the image
    # ships one). The perf marker names the one used, so a native comparison runs it too.
    every = {"avx2": "bin/llama-completion", "sse42": "bin/llama-completion-sse42"}
    shipped = {isa: path for isa, path in every.items()
               if binaries is None or path.removeprefix("bin/") in binaries}
    default = shipped.get("avx2") or shipped.get("sse42") or every["avx2"]
    info.update({
        "arch": "x86_64",
        "kernel": "linux/vmlinux",
        "kernel_format": "pvh-elf",
        "bzimage": "linux/vmlinuz",
        "llama_completion": default,
        "llama_binaries": shipped,
        "perf_native_example": [default, "-m", "model.gguf", *PERF_ARGS,
                                "-t", "1", "-tb", "1", "-n", str(PERF_TOKENS)],
    })
    if binaries is None or "llama-bench" in binaries:
        info["llama_bench"] = "bin/llama-bench"
    info.update({
        "append": DEFAULT_APPEND,
        "append_host": "tsc_early_khz=<host kHz>",
        "memory_mib": 512,
        # Under TCG one vCPU is faster (MTTCG on 2 shared cores + llama.cpp's spinning
        # worker threads); under KVM use the cores.
        "cpus_tcg": 1,
        "cpus_kvm": 2,
        "qemu": {
            "machine": "microvm",
            "append_extra": "pci=off",
            "cpu_tcg": "max",
            "cpu_kvm": "host",
            "disk_device": "virtio-blk-device",
            "disk_device_pc": "virtio-blk-pci",
            "note": "Debian's kernel finds microvm's virtio-mmio devices through ACPI; "
                    "virtio_mmio.device= does not work (VIRTIO_MMIO_CMDLINE_DEVICES is off)",
        },
        "boot_flags": [*BOOT_FLAGS, "zosia.llama_isa=auto|avx2|sse42"],
    })
    return info


def manifest_aarch64(kernel: dict) -> dict:
    """zosia.json of the aarch64 image (QEMU virt)."""
    info = _common_manifest(kernel)
    info.update({
        "arch": "aarch64",
        "kernel": "linux/Image",
        # The arm64 boot protocol's Image (Linux Documentation/arch/arm64/booting.rst), which
        # is also a PE/COFF EFI application (CONFIG_EFI_STUB=y): UEFI firmware boots it too.
        "kernel_format": "arm64-image",
        "llama_binaries": {"neon": "bin/llama-completion"},
        "perf_native_example": ["bin/llama-completion", "-m", "model.gguf", *PERF_ARGS,
                                "-t", "1", "-tb", "1", "-n", str(PERF_TOKENS)],
        "append": DEFAULT_APPEND_AARCH64,
        "memory_mib": 512,
        "cpus_tcg": 1,
        "cpus_kvm": 2,
        "qemu": {
            "binary": "qemu-system-aarch64",
            "machine": "virt,gic-version=3",
            "cpu_tcg": "max",
            "cpu_kvm": "host",
            "disk_device": "virtio-blk-device",
            "uefi_firmware": "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
            "note": "virt describes its virtio-mmio transports in the device tree; with -bios "
                    "QEMU_EFI.fd the firmware boots linux/Image through its EFI stub",
        },
        "boot_flags": [*BOOT_FLAGS, "zosia.llama_isa=auto|neon"],
    })
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build the zosia guest image")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arch", choices=ARCHES, default="x86_64",
                    help="guest architecture (default x86_64; aarch64: QEMU virt)")
    ap.add_argument("--llama-dir", type=Path, action="append", default=None,
                    help="use these prebuilt llama.cpp binaries (a dir with bin/); repeatable")
    ap.add_argument("--llama-variants", default="",
                    help="comma-separated llama.cpp builds to make (versions.json; default: all of "
                         "the architecture's)")
    a = ap.parse_args(argv)
    os.nice(int(os.environ.get("ZOSIA_NICE", "10")))
    try:
        build(a.out.resolve(), a.llama_dir, a.arch, [v for v in a.llama_variants.split(",") if v] or None)
    except debkernel.KernelUnavailable as e:
        print(f"zosia: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
