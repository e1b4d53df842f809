"""The ARM64 lane: god on the real arm64 KVM, inside QEMU TCG aarch64 (guests/lane_arm64).

QEMU's TCG emulates EL2 (``-M virt,virtualization=on -cpu max``) well enough for the KVM
built into Debian's arm64 kernel to come up in VHE mode with a vGICv3, so god's arm64
backend runs over real arm64 KVM on an x86-64 host:

    host <-pty-> qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max
                   lane Linux (Debian arm64 6.1, KVM=y) -> /dev/kvm
                     /init -> python3 -m god run ... (god's PL011 <-> its stdio)

This module holds what every use of the lane shares: the image recipes (base image, god's
layer), the QEMU command line, and one-shot runs (a script in, console and status out) for
the developer command (guests/lane_arm64/run.py), tests and benchmarks. The hypervisor
``god-arm64`` (pytest_vmm/hypervisors/lane_arm64_hv.py) builds on it. See docs/lane.md.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
from pytest_vmm.stack import BuiltImage, ImageRecipe
from pytest_vmm.stacks._common import guest_dir

ARM64_QEMU = "qemu-system-aarch64"
LANE_ARM64_DIR = guest_dir("lane_arm64")
LANE_DIR = guest_dir("lane")
LINUX_DIR = guest_dir("linux")
GOD_SRC = guest_dir("god") / "src"
# The machine QEMU gives the lane: EL2 for KVM, GICv3 so KVM offers a vGICv3 (PLATFORM.md).
LANE_MACHINE = "virt,virtualization=on,gic-version=3"
LANE_MEM_MIB = 1024
# quiet: the console is the user's; panic=-1: a lane panic ends QEMU at once.
LANE_CMDLINE = "console=ttyAMA0 panic=-1 quiet loglevel=2"
# The lane's /init prints this after what it ran (virt has no exit port for a status).
EXIT_RE = re.compile(rb"@@lane-exit status=(\d+)")
HOST_SHARE_TAG = "host"  # 9p mount tag; the lane mounts it read-only at /host


def lane_arm64_recipe() -> ImageRecipe:
    """Kernel + lane.cpio.gz. Inputs: guests/lane_arm64, the cpio writer and stdlib-closure
    code of guests/lane, guests/linux (arm64 packages). god is a separate layer."""
    return ImageRecipe(
        name="lane-arm64",
        sources=LANE_ARM64_DIR,
        command=(sys.executable, str(LANE_ARM64_DIR / "build.py"), "--out", "{out}"),
        version="1",
        extra_inputs=(LANE_DIR / "initramfs.py", LANE_DIR / "pyset.py", LINUX_DIR),
    )


def god_layer_recipe(god_src: Path = GOD_SRC) -> ImageRecipe:
    """god.cpio.gz: god's package (``god_src/god``) with its .pyc, appended per boot."""
    return ImageRecipe(
        name="lane-arm64-god",
        sources=god_src / "god",
        command=(sys.executable, str(LANE_ARM64_DIR / "build.py"), "--god-layer", str(god_src),
                 "--out", "{out}"),
        version="1",
        extra_inputs=(LANE_ARM64_DIR / "build.py",),
    )


def build(recipe: ImageRecipe, cache_root: Path | None = None,
          progress: Callable[[str], None] | None = None) -> BuiltImage:
    return ArtifactCache(cache_root or DEFAULT_CACHE_ROOT, progress=progress).build(recipe)


def lane_qemu_argv(kernel: Path, initrd: Path, *, mem_mib: int = LANE_MEM_MIB, cpus: int = 1,
                   cmdline: str = LANE_CMDLINE, ports: dict[str, Path] | None = None,
                   share_host: bool = True, qmp: Path | None = None) -> list[str]:
    """QEMU for the lane. ``ports``: virtio-serial port name -> host Unix socket (QEMU the
    server); ``share_host``: the host's / read-only over 9p (virtio-mmio) at /host."""
    argv = [ARM64_QEMU, "-M", LANE_MACHINE, "-cpu", "max", "-accel", "tcg,thread=single",
            "-m", str(mem_mib), "-smp", str(max(1, cpus)),
            "-display", "none", "-nodefaults", "-no-user-config", "-no-reboot",
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-monitor", "none", "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
    if qmp is not None:
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    if ports:
        argv += ["-device", "virtio-serial-device"]
        for i, (name, sock) in enumerate(sorted(ports.items())):
            argv += ["-chardev", f"socket,id=port{i},path={sock},server=on,wait=off",
                     "-device", f"virtserialport,chardev=port{i},name={name}"]
    if share_host:
        argv += ["-fsdev", "local,id=hostfs,path=/,security_model=none,readonly=on,multidevs=remap",
                 "-device", f"virtio-9p-device,fsdev=hostfs,mount_tag={HOST_SHARE_TAG}"]
    return argv


def payload(files: dict[str, Path], run_script: str | None) -> bytes:
    """A per-boot initramfs: files at their lane paths and /lane/run (what /init runs)."""
    sys.path.insert(0, str(LANE_DIR))
    try:
        from initramfs import Tree  # guests/lane: the one cpio writer
    finally:
        sys.path.remove(str(LANE_DIR))
    tree = Tree()
    for lane_path, src in sorted(files.items()):
        tree.copy(lane_path, src)
    if run_script is not None:
        tree.file("lane/run", run_script.encode(), 0o755)
    return tree.gz()


@dataclass
class LaneRun:
    status: int | None      # what the lane script exited with (None: no status: timeout/crash)
    qemu_status: int | None
    console: bytes
    seconds: float


def die_with_parent(argv: list[str]) -> list[str]:
    """QEMU gets SIGKILL if its parent dies (setpriv --pdeathsig): no lane outlives its run."""
    import shutil

    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def run_once(script: str, *, god_src: Path = GOD_SRC, files: dict[str, Path] | None = None,
             timeout_s: float = 600.0, mem_mib: int = LANE_MEM_MIB, cpus: int = 1,
             stream: Callable[[bytes], None] | None = None, cache_root: Path | None = None,
             progress: Callable[[str], None] | None = None) -> LaneRun:
    """Boot the lane once with god from ``god_src``, run ``script`` (sh), return its console
    and status. The host's / is at /host (read-only)."""
    image = build(lane_arm64_recipe(), cache_root, progress)
    god = build(god_layer_recipe(god_src), cache_root, progress)
    with tempfile.TemporaryDirectory(prefix="vmm-lane-arm64-") as tmp:
        initrd = Path(tmp) / "initrd.img"
        with initrd.open("wb") as f:
            f.write(image.file("lane.cpio.gz").read_bytes())
            f.write(god.file("god.cpio.gz").read_bytes())
            f.write(payload(files or {}, script))
        argv = lane_qemu_argv(image.file("vmlinuz"), initrd, mem_mib=mem_mib, cpus=cpus)
        started = time.monotonic()
        proc = subprocess.Popen(die_with_parent(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        out = bytearray()
        qemu_status: int | None = None
        try:
            fd = proc.stdout.fileno()
            while True:
                left = timeout_s - (time.monotonic() - started)
                if left <= 0:
                    break
                ready, _, _ = select.select([fd], [], [], min(left, 1.0))
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    qemu_status = proc.wait()
                    break
                out += chunk
                if stream is not None:
                    stream(chunk)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdout.close()
        m = None
        for m in EXIT_RE.finditer(out):
            pass
        status = int(m.group(1)) if m is not None else None
        return LaneRun(status, qemu_status, bytes(out), time.monotonic() - started)


def command_script(argv: list[str], cwd_on_host: Path | None = None) -> str:
    """A lane script that runs ``argv`` (in /host/CWD when that is given and visible)."""
    script = ""
    if cwd_on_host is not None:
        script += f"cd {shlex.quote('/host' + str(cwd_on_host))} 2>/dev/null || true\n"
    return script + " ".join(shlex.quote(a) for a in argv) + "\n"


# ----------------------------------------------------------------------------------------
# The shared lane: one boot serves every god machine of a session (lane_server.py inside).

SHARED_PORTS = 4           # machines alive at once in one lane
SHARED_MEM_MIB = 2048      # TCG allocates guest RAM lazily: room for several guests
SHARED_CPUS = 2            # god's vCPUs per machine are at most the lane's (PSCI CPU_ON checks use 2)
READY_LINE = b"@@lane-server ready"
START_TIMEOUT_S = 600.0    # cold lane boot under load (measured 13-40 s)


class LaneError(RuntimeError):
    pass


class SharedLane:
    """A lane QEMU running the lane server; ``ports_dir`` holds lane.N.sock / lane.N.lock."""

    def __init__(self, image: BuiltImage, god_layer: BuiltImage) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vmm-lane-arm64-"))
        self.ports_dir = self.dir / "ports"
        self.ports_dir.mkdir()
        self.log = self.dir / "console.log"
        ports = {f"lane.{i}": self.ports_dir / f"lane.{i}.sock" for i in range(SHARED_PORTS)}
        for i in range(SHARED_PORTS):
            (self.ports_dir / f"lane.{i}.lock").touch()
        initrd = self.dir / "initrd.img"
        with initrd.open("wb") as f:
            f.write(image.file("lane.cpio.gz").read_bytes())
            f.write(god_layer.file("god.cpio.gz").read_bytes())
        argv = lane_qemu_argv(image.file("vmlinuz"), initrd, mem_mib=SHARED_MEM_MIB, cpus=SHARED_CPUS,
                              cmdline=LANE_CMDLINE + " lane.server", ports=ports)
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(die_with_parent(argv), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.boot_seconds: float | None = None

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> float:
        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_bytes()
            if READY_LINE in text:
                self.boot_seconds = time.monotonic() - self.started
                return self.boot_seconds
            if self.proc.poll() is not None:
                raise LaneError(f"the ARM64 lane exited {self.proc.returncode} before its server was "
                                f"ready; console: {self.log}: {text[-1500:].decode(errors='replace')}")
            time.sleep(0.2)
        self.stop()
        raise LaneError(f"the ARM64 lane's server was not ready after {timeout_s:.0f} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> list[str]:
        """Stop QEMU (SIGTERM: QEMU's orderly exit; SIGKILL after 10 s) and check nothing is
        left: the process group gone, the directory (sockets, initrd, log) removed."""
        leaks: list[str] = []
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, 0)
            leaks.append(f"lane process group {self.proc.pid} still has processes")
        except ProcessLookupError:
            pass
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():
            leaks.append(f"lane directory {self.dir} could not be removed")
        return leaks


_shared: SharedLane | None = None


def shared_lane(image: BuiltImage, god_layer: BuiltImage) -> SharedLane:
    """The session's lane, started on first use and stopped (leak-checked) at exit."""
    global _shared
    if _shared is not None and not _shared.alive():
        _shared.stop()
        _shared = None
    if _shared is None:
        import atexit

        lane = SharedLane(image, god_layer)
        _shared = lane
        atexit.register(stop_shared_lane)
        lane.wait_ready()
    return _shared


def stop_shared_lane() -> list[str]:
    """Stop the session's lane (if one runs); what it left behind (also printed)."""
    global _shared
    lane, _shared = _shared, None
    leaks = lane.stop() if lane is not None else []
    if leaks:
        print("pytest-vmm: god-arm64 lane left things behind: " + "; ".join(leaks), file=sys.stderr)
    return leaks
