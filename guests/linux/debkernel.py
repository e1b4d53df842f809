"""Debian's x86-64 kernel, unpacked (never installed), for guests that boot Linux.

One implementation for every Linux-booting guest of the project (zosia, the KVM-lane image,
god's Linux boot test). It:

1. picks the versioned ``linux-image-6.1.0-N-amd64`` package that ``linux-image-amd64``
   currently depends on (or the one named in ``PYTEST_VMM_LINUX_PACKAGE``),
2. fetches it with ``apt-get download`` (no root needed for the download itself, only apt's
   package lists) and unpacks it with ``dpkg-deb -x`` into
   ``~/.cache/pytest-vmm/linux-<hash of package+version>`` (done once; ~0.5 GB),
3. extracts ``vmlinux`` from the bzImage: QEMU (and god) boot an ELF through its Xen PVH note,
   which skips the real-mode setup and the in-guest xz decompressor (slow under TCG, ~100 KB/s
   under PVM),
4. copies a requested set of modules, plus what they depend on, into an output directory and
   writes ``kernel.json`` describing it all.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Appended, not prepended: this folder's build.py must not shadow PyPA's `build` package.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))
from vmmcache import cache_root, cached_dir, short_hash

# Bump when the cached layout changes, so old cache entries are not reused.
RECIPE = 1
META_PACKAGE = "linux-image-amd64"
PKG_RE = re.compile(r"^linux-image-(\d+\.\d+\.\d+-\d+)-amd64$")

# What a minimal virtio guest needs, in insmod order (Debian builds all of it as modules):
# the virtio core and both transports, the block driver, ext4 (which also serves ext2; its
# softdep crypto-crc32c is crc32c_generic), the console, vsock over virtio, and the KVM set
# for the nested-SVM lane (kvm_amd needs ccp, which the kernel resolves by symbol).
DEFAULT_MODULES: tuple[str, ...] = (
    "virtio_ring", "virtio", "virtio_mmio",
    "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "virtio_blk", "virtio_console",
    "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4",
    "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
    "irqbypass", "kvm", "ccp", "kvm_amd",
)


class KernelUnavailable(RuntimeError):
    """The package could not be obtained; the message holds the command to run by hand."""


@dataclass(frozen=True)
class KernelPackage:
    name: str      # linux-image-6.1.0-56-amd64
    version: str   # 6.1.192-2

    @property
    def release(self) -> str:
        """The ``uname -r`` of the kernel inside: the package name without its prefix."""
        return self.name.removeprefix("linux-image-")

    @property
    def key(self) -> str:
        return short_hash(RECIPE, self.name, self.version)


@dataclass
class UnpackedKernel:
    """A cache entry: the unpacked package plus vmlinux and a module index."""

    root: Path
    package: KernelPackage
    modules: dict[str, dict] = field(default_factory=dict)

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.package.release}"

    @property
    def vmlinux(self) -> Path:
        return self.root / "vmlinux"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.package.release}"


def phase(text: str) -> None:
    """A phase line for pytest-vmm's build progress (pytest_vmm/progress.py: PHASE_PREFIX)."""
    print("pytest-vmm-phase: " + text, flush=True)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw, check=False)


def resolve_package() -> KernelPackage:
    """Which versioned kernel package to use.

    ``PYTEST_VMM_LINUX_PACKAGE=name=version`` pins one (e.g. to reproduce an old build);
    otherwise apt's candidate of the ``linux-image-amd64`` meta package decides. Without
    apt lists, fall back to the newest kernel already in the cache, so an offline machine
    that built once keeps working.
    """
    pin = os.environ.get("PYTEST_VMM_LINUX_PACKAGE", "").strip()
    if pin:
        name, _, version = pin.partition("=")
        if not PKG_RE.match(name) or not version:
            raise KernelUnavailable(
                f"PYTEST_VMM_LINUX_PACKAGE={pin!r}: expected linux-image-X.Y.Z-N-amd64=VERSION")
        return KernelPackage(name, version)
    res = _run(["apt-cache", "show", "--no-all-versions", META_PACKAGE]) \
        if shutil.which("apt-cache") else None
    if res is not None and res.returncode == 0:
        m = re.search(r"^Depends:.*?(linux-image-[\w.\-]+-amd64) \(= ([^)]+)\)", res.stdout,
                      re.MULTILINE)
        if m and PKG_RE.match(m.group(1)):
            return KernelPackage(m.group(1), m.group(2))
    cached = _newest_cached()
    if cached is not None:
        return cached
    raise KernelUnavailable(
        "cannot find Debian's kernel package (no apt lists?). Run:\n"
        f"  apt-get update && apt-cache show {META_PACKAGE}")


def _newest_cached() -> KernelPackage | None:
    best: tuple[str, KernelPackage] | None = None
    for d in cache_root().glob("linux-*"):
        info = d / "package.json"
        if (d / ".complete").exists() and info.exists():
            j = json.loads(info.read_text())
            pkg = KernelPackage(j["name"], j["version"])
            sort_key = f"{d.stat().st_mtime:020.3f}"
            if best is None or sort_key > best[0]:
                best = (sort_key, pkg)
    return best[1] if best else None


# --- bzImage -> vmlinux -------------------------------------------------------------------

def extract_vmlinux(bzimage: bytes) -> bytes:
    """Decompress the ELF kernel carried inside a bzImage.

    Boot protocol >= 2.08: ``payload_offset`` (0x248) and ``payload_length`` (0x24c) locate
    the compressed kernel relative to the start of the protected-mode code, which follows
    ``setup_sects`` (0x1f1; 0 means 4) 512-byte sectors plus the boot sector.
    """
    if bzimage[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS signature)")
    version = struct.unpack_from("<H", bzimage, 0x206)[0]
    if version < 0x208:
        raise ValueError(f"boot protocol {version:#x} has no payload fields")
    setup_sects = bzimage[0x1F1] or 4
    off, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + off
    payload = bzimage[start:start + length]
    if payload.startswith(b"\xfd7zXZ\x00"):
        # The payload ends with a 4-byte decompressed size after the xz stream; a
        # decompressor object stops at the end of the stream and leaves those bytes aside.
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        elf = d.decompress(payload)
        if not d.eof:
            raise ValueError("truncated xz payload")
    elif payload.startswith(b"\x1f\x8b"):
        import zlib
        elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    else:
        raise ValueError(f"unsupported payload compression (magic {payload[:6].hex()})")
    if not elf.startswith(b"\x7fELF"):
        raise ValueError("payload is not an ELF")
    return elf


def pvh_entry(elf: bytes) -> int | None:
    """The 32-bit PVH entry (Xen note type 18, XEN_ELFNOTE_PHYS32_ENTRY), if any."""
    if elf[4] != 2:  # ELFCLASS64 only: that's what Debian's amd64 kernel is
        return None
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _f, p_off, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_off, p_off + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            desc_at = pos + 12 + ((namesz + 3) & ~3)
            if name == b"Xen" and ntype == 18:
                size = 8 if descsz >= 8 else 4
                return int.from_bytes(elf[desc_at:desc_at + size], "little")
            pos = desc_at + ((descsz + 3) & ~3)
    return None


# --- modules ------------------------------------------------------------------------------

def _elf_section(data: bytes, wanted: str) -> bytes | None:
    """Return one named section of a 64-bit little-endian ELF (enough for .modinfo)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def sh(i: int) -> tuple[int, int, int]:
        name, _t, _fl, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    _n, str_off, _s = sh(shstrndx)
    for i in range(shnum):
        name_off, off, size = sh(i)
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off:end].decode() == wanted:
            return data[off:off + size]
    return None


def read_module(path: Path) -> bytes:
    """A module's bytes, decompressed if Debian shipped it compressed (.ko.xz/.ko.gz)."""
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        import gzip
        return gzip.decompress(raw)
    if path.name.endswith(".zst"):
        if not shutil.which("zstd"):
            raise KernelUnavailable(f"{path} is zstd-compressed: apt-get install zstd")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return raw


def modinfo(data: bytes) -> dict[str, list[str]]:
    info: dict[str, list[str]] = {}
    for entry in (_elf_section(data, ".modinfo") or b"").split(b"\0"):
        k, sep, v = entry.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(k, []).append(v)
    return info


def _module_name(path: Path) -> str:
    # Module names use '_' where file names may use '-' (kvm-amd.ko is module kvm_amd).
    return path.name.split(".ko")[0].replace("-", "_")


def _index_modules(moddir: Path) -> dict[str, dict]:
    index: dict[str, dict] = {}
    for p in sorted(moddir.rglob("*.ko*")):
        info = modinfo(read_module(p))
        deps = [d for d in ",".join(info.get("depends", [])).split(",") if d]
        index[_module_name(p)] = {
            "path": str(p.relative_to(moddir)),
            "depends": sorted(d.replace("-", "_") for d in deps),
            "softdep": info.get("softdep", []),
            "alias": info.get("alias", []),
        }
    return index


def resolve_load_order(index: dict[str, dict], wanted: list[str] | tuple[str, ...]) -> list[str]:
    """The wanted modules plus their ``depends``, each after everything it depends on.

    Order among independent modules follows the request, so callers control it (e.g. the
    virtio transports before virtio_blk) and the output is deterministic.
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        if name in chain:
            raise ValueError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in index:
            raise KeyError(f"module {name!r} not in this kernel (built in, or misspelt?)")
        for dep in index[name]["depends"]:
            visit(dep, chain + (name,))
        seen.add(name)
        order.append(name)

    for w in wanted:
        visit(w, ())
    return order


# --- fetching -----------------------------------------------------------------------------

def download_command(pkg: KernelPackage) -> list[str]:
    return ["apt-get", "download", f"{pkg.name}={pkg.version}"]


def unpack(pkg: KernelPackage | None = None) -> UnpackedKernel:
    """The cached unpacked kernel (downloaded and unpacked on first use)."""
    pkg = pkg or resolve_package()

    def produce(tmp: Path) -> None:
        # The .deb goes to a fixed folder, so that where this machine can't download it a
        # person can put it there by hand (the error says how) and simply retry.
        dl = cache_root() / "debs"
        dl.mkdir(parents=True, exist_ok=True)
        cmd = download_command(pkg)
        debs = sorted(dl.glob(f"{pkg.name}_*.deb"))
        if not debs:
            phase(f"kernel: download {pkg.name}={pkg.version}")
            print("linux: $", " ".join(cmd), f"(in {dl})", flush=True)
            res = _run(cmd, cwd=dl)
            debs = sorted(dl.glob(f"{pkg.name}_*.deb"))
            if res.returncode != 0 or len(debs) != 1:
                raise KernelUnavailable(
                    f"apt-get download failed ({res.stderr.strip() or res.stdout.strip()}).\n"
                    "Run by hand (needs Debian's apt lists and the network), then retry:\n"
                    f"  apt-get update && cd {dl} && {' '.join(cmd)}")
        phase(f"kernel: unpack {debs[-1].name} ({debs[-1].stat().st_size / 1e6:.0f} MB)")
        print(f"linux: dpkg-deb -x {debs[-1].name}", flush=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], check=True)
        for d in debs:
            d.unlink()  # 70 MB; the unpacked tree is what's kept
        # Debian 12 ships /lib as a real directory in the package; later releases move it
        # under /usr (merged-/usr). Accept both.
        moddirs = [d for d in (tmp / "lib" / "modules" / pkg.release,
                               tmp / "usr" / "lib" / "modules" / pkg.release) if d.is_dir()]
        if not moddirs:
            raise KernelUnavailable(f"no modules directory for {pkg.release} in {pkg.name}")
        moddir = moddirs[0]
        vmlinuz = tmp / "boot" / f"vmlinuz-{pkg.release}"
        elf = extract_vmlinux(vmlinuz.read_bytes())
        entry = pvh_entry(elf)
        (tmp / "vmlinux").write_bytes(elf)
        index = _index_modules(moddir)
        (tmp / "modules.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        (tmp / "package.json").write_text(json.dumps({
            "name": pkg.name, "version": pkg.version, "release": pkg.release,
            "moddir": str(moddir.relative_to(tmp)),
            "pvh_entry": None if entry is None else f"{entry:#x}",
        }, indent=2) + "\n")

    root = cached_dir("linux", pkg.key, produce)
    return UnpackedKernel(root, pkg, json.loads((root / "modules.json").read_text()))


def _place(src: Path, dst: Path) -> None:
    """Hard-link when on the same file system (vmlinux is 66 MB), else copy."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build(out: Path, modules: list[str] | tuple[str, ...] = DEFAULT_MODULES,
          pkg: KernelPackage | None = None) -> dict:
    """Write vmlinuz, vmlinux, config, modules/*.ko and kernel.json into ``out``.

    Returns the kernel.json content. Paths in it are relative to ``out``.
    """
    k = unpack(pkg)
    meta = json.loads((k.root / "package.json").read_text())
    moddir = k.root / meta["moddir"]
    order = resolve_load_order(k.modules, list(modules))
    out.mkdir(parents=True, exist_ok=True)
    _place(k.vmlinuz, out / "vmlinuz")
    _place(k.vmlinux, out / "vmlinux")
    _place(k.config, out / "config")
    mdir = out / "modules"
    mdir.mkdir(exist_ok=True)
    mods: dict[str, dict] = {}
    for name in order:
        src = moddir / k.modules[name]["path"]
        dst = mdir / f"{name}.ko"
        if src.name.endswith(".ko"):
            _place(src, dst)
        else:
            dst.write_bytes(read_module(src))
        mods[name] = {"file": f"modules/{name}.ko", "depends": k.modules[name]["depends"],
                      "softdep": k.modules[name]["softdep"]}
    info = {
        "package": k.package.name,
        "package_version": k.package.version,
        "release": k.package.release,
        "vmlinuz": "vmlinuz",
        "vmlinux": "vmlinux",
        "config": "config",
        "pvh_entry": meta["pvh_entry"],
        "modules_dir": "modules",
        "load_order": order,
        "modules": mods,
        "cache": str(k.root),
    }
    (out / "kernel.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
