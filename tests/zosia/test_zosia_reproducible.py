"""Two clean builds of the zosia image give byte-identical initramfs and model disk, for
both architectures (x86_64 and aarch64; each parametrized case builds twice).

The llama.cpp binaries come from the build cache when they are there (built once, 4-8 min);
otherwise small stand-ins are used: what makes the image reproducible (sorted entries, fixed
times and owners, gzip and mke2fs settings) doesn't depend on what the binaries contain.
The kernel is Debian's (a ~70 MB apt-get download the first time, then cached; arm64's
through guests/linux/foreign.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import debkernel
import foreign
import llama_build
import pytest
from vmmcache import cache_root

BUILD = Path(__file__).resolve().parents[2] / "guests" / "zosia" / "build.py"


ARCHES = ["x86_64", "aarch64"]


@pytest.fixture(scope="module", params=ARCHES)
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def llama_dirs(tmp_path_factory: pytest.TempPathFactory, arch: str) -> list[Path]:
    versions = llama_build.load_versions()
    dirs = []
    for variant in llama_build.variants(versions, arch=arch):
        cached = cache_root() / f"llama-{llama_build.llama_key(variant, versions)}"
        if (cached / ".complete").exists():
            dirs.append(cached)
            continue
        var = versions["llama_variants"][variant]
        d = tmp_path_factory.mktemp(f"llama-{variant}")
        (d / "bin").mkdir()
        for target in var["targets"]:
            name = target + var["suffix"]
            (d / "bin" / name).write_bytes(b"#!/bin/sh\necho stand-in for " + name.encode())
            (d / "bin" / name).chmod(0o755)
        dirs.append(d)
    return dirs


@pytest.fixture(scope="module")
def kernel_available(arch: str) -> None:
    try:
        if arch == "aarch64":
            foreign.arm64_kernel()
            foreign.fetch_debs(["busybox-static"])
        else:
            debkernel.unpack()
    except debkernel.KernelUnavailable as e:
        pytest.skip(f"Debian {arch} packages unavailable here: {e}")


def _build(out: Path, llama: list[Path], umask: int, arch: str) -> subprocess.CompletedProcess[str]:
    # A different umask and working directory per build: neither may leak into the image.
    old = os.umask(umask)
    dirs = [arg for d in llama for arg in ("--llama-dir", str(d))]
    try:
        return subprocess.run([sys.executable, str(BUILD), "--out", str(out), "--arch", arch, *dirs],
                              cwd=out.parent, text=True,
                              capture_output=True, timeout=600, check=False)
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory, llama_dirs: list[Path],
               kernel_available: None, arch: str) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp(f"builds-{arch}")
    a, b = root / "one" / "out", root / "two" / "out"
    a.parent.mkdir()
    b.parent.mkdir()
    r = _build(a, llama_dirs, 0o022, arch)
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(1.1)  # the second build happens at a different wall-clock second
    r = _build(b, llama_dirs, 0o077, arch)
    assert r.returncode == 0, r.stdout + r.stderr
    return a, b


def test_two_builds_are_byte_identical(two_builds: tuple[Path, Path]) -> None:
    a, b = two_builds
    for name in ("initramfs.cpio", "initramfs.cpio.gz", "model.ext2", "model.gguf"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ja = json.loads((a / "zosia.json").read_text())
    jb = json.loads((b / "zosia.json").read_text())
    assert ja["sha256"] == jb["sha256"]
    for key in ("kernel", "initrd", "initrd_gz", "disk", "model", "llama_completion"):
        assert (a / ja[key]).is_file(), key
    for path in ja["llama_binaries"].values():
        assert (a / path).is_file(), path
    console = "console=ttyAMA0" if ja["arch"] == "aarch64" else "console=ttyS0"
    assert console in ja["append"] and "panic=-1" in ja["append"]


def test_initramfs_contents(two_builds: tuple[Path, Path], arch: str) -> None:
    import gzip
    out = two_builds[0]
    blob = gzip.decompress((out / "initramfs.cpio.gz").read_bytes())
    assert blob == (out / "initramfs.cpio").read_bytes()
    per_arch = [b"usr/bin/llama-completion-sse42\0"] if arch == "x86_64" else []
    for needed in (b"\0init\0", b"bin/busybox\0", b"bin/sh\0", b"dev/console\0",
                   b"lib/modules/zosia/virtio_blk.ko\0", b"lib/modules/zosia/ext4.ko\0",
                   b"lib/modules/zosia/order\0", b"usr/bin/llama-completion\0",
                   *per_arch, b"etc/zosia/perf.args\0"):
        assert needed in blob, needed
    order = json.loads((out / "linux" / "kernel.json").read_text())["load_order"]
    # x86_64 loads the virtio core too; arm64 has it built in (CONFIG_VIRTIO=y) and loads the
    # virtio-mmio transport virt's devices sit on.
    first = "virtio_ring" if arch == "x86_64" else "virtio_mmio"
    assert order.index(first) < order.index("virtio_blk") < order.index("ext4")
    assert order.index("jbd2") < order.index("ext4")


def test_image_is_of_its_architecture(two_builds: tuple[Path, Path], arch: str) -> None:
    """The ELF header's e_machine (System V gABI; EM_X86_64 = 62, EM_AARCH64 = 183) of BusyBox
    and llama-completion, and the kernel format: arm64 Image magic "ARM\\x64" at offset 56
    (Linux Documentation/arch/arm64/booting.rst), PVH ELF for x86_64."""
    import struct

    out = two_builds[0]
    info = json.loads((out / "zosia.json").read_text())
    assert info["arch"] == arch
    em = {"x86_64": 62, "aarch64": 183}[arch]
    llama = out / info["llama_completion"]
    if llama.read_bytes()[:4] == b"\x7fELF":  # not a stand-in
        assert struct.unpack_from("<H", llama.read_bytes(), 18)[0] == em
    kernel = (out / info["kernel"]).read_bytes()[:64]
    if arch == "aarch64":
        assert kernel[56:60] == b"ARM\x64", kernel[56:60]
    else:
        assert kernel[:4] == b"\x7fELF" and struct.unpack_from("<H", kernel, 18)[0] == em


def test_model_disk_is_the_same_for_both_architectures(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The model and its disk do not depend on the architecture: the same bytes in both images."""
    roots = [p for p in tmp_path_factory.getbasetemp().glob("builds-*")]
    if len(roots) < 2:
        pytest.skip("needs both architectures' builds (run the whole module)")
    disks = {(r / "one" / "out" / "model.ext2").read_bytes() for r in roots}
    assert len(disks) == 1
