"""``god-svm``: god over the real kvm_amd, inside a QEMU TCG guest (the SVM lane).

KVM on our machines (and on most CI runners) is PVM or absent, and PVM differs from hardware
KVM in ways a VMM can see. QEMU's TCG emulates AMD SVM with nested paging well enough for the
upstream ``kvm_amd`` module of Debian's kernel to run inside a TCG guest. This hypervisor
boots that guest (the lane image, guests/lane) and, inside it, runs
``python -m god run KERNEL ...`` exactly as the ``god`` hypervisor would on the host:

    host pexpect <-pty-> QEMU -serial stdio <-> lane ttyS0 <-> god --serial stdio <-> guest UART

so ``--vmm=god@god-svm`` runs every suite that runs on ``god``, over real KVM semantics.
The guest kernel, its initrd and the god command line travel in a small per-boot initramfs
appended to the lane image (Linux unpacks concatenated cpio archives in order). The lane's
/init turns god's exit status into QEMU's (an odd exit-port status maps back exactly), so
``machine.wait_exit`` sees what it would see with ``god`` on the host.

Accelerators: ``tcg`` (the lane: any x86-64 host with QEMU), or ``kvm`` on a host whose KVM
is hardware SVM with nested virtualization (the lane then runs at near-native speed). VMX is
not emulated by TCG, so there is no Intel twin. See docs/lane.md.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pytest_vmm import lane_link
from pytest_vmm.artifacts import DEFAULT_CACHE_ROOT, ArtifactCache
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Accel, Companion, LaunchPlan
from pytest_vmm.hypervisors import lane_port_log
from pytest_vmm.hypervisors.god import god_run_argv
from pytest_vmm.hypervisors.qemu import QEMU_BINARY, QMP_SOCKET, Qemu, base_argv
from pytest_vmm.hypervisors.qemu_feature import qemu_start_problem
from pytest_vmm.stack import BootSpec, BuiltImage, ImageRecipe
from pytest_vmm.stacks._common import guest_dir, package_dir

# Shipped guest sources and the plugin itself, resolved with importlib.resources.
LANE_DIR = guest_dir("lane")
GOD_DIR = guest_dir("god")
LINUX_DIR = guest_dir("linux")
PLUGIN_DIR = package_dir("pytest_vmm")
GUEST_PYTHON = "/usr/bin/python3.11"
# Lane RAM on top of what god gives its guest: the unpacked lane (~21 MB), Python and god.
LANE_OVERHEAD_MIB = 384
# Kernel command line of the lane: quiet (the console is the test's console), no TSC
# calibration under load (tsc_early_khz, PLATFORM.md), a panic ends QEMU at once.
# The lane link (vsock out of the lane): the lane's second 16550, QEMU's end of it on the host,
# and where god's vsock socket is inside the lane.
LINK_TTY = "/dev/ttyS1"
LINK_SOCKET = "lane-link.sock"
LANE_VSOCK_UDS = "/tmp/vsock.sock"
# god's stderr leaves the lane on a port of its own (pytest_vmm/hypervisors/lane_port_log.py):
# QEMU's isa-debugcon at QEMU's usual debug-console port, written to QEMU's stderr on the host.
GOD_LOG_PORT = 0x402
GOD_LOG_FIFO = "/tmp/god-stderr"
# cryptomgr.notests, initcall_blacklist=crypto_kdf108_init: the lane uses no kernel crypto, and
# those self-tests cost ~0.5 s and ~1 s of each boot under TCG (initcall_debug, 2026-12-06).
LANE_CMDLINE = ("console=ttyS0 quiet loglevel=2 tsc=reliable panic=-1 8250.nr_uarts=1"
                " cryptomgr.notests initcall_blacklist=crypto_kdf108_init")
# Debian's amd64 kernel: CONFIG_HZ=250. With lpj= from the host's TSC rate no vCPU calibrates
# its delay loop (the AP's calibration under TCG took ~0.5 s, and failed).
LANE_KERNEL_HZ = 250
# The lane's base initramfs as boots use it (uncompressed: guests/lane/build.py).
BASE_INITRD = "lane.cpio"


def lane_recipe() -> ImageRecipe:
    """The lane image (kernel + lane.cpio, and its .gz) through the plugin's build cache.

    Inputs: guests/lane, god's sources (shipped into it) and guests/linux (the unpacker).
    """
    return ImageRecipe(
        name="lane",
        sources=LANE_DIR,
        command=(sys.executable, str(LANE_DIR / "build.py"), "--out", "{out}", "--no-tests"),
        version="1",
        extra_inputs=(GOD_DIR / "src" / "god", LINUX_DIR),
    )


def lane_tests_recipe() -> ImageRecipe:
    """tests.cpio.gz: god's own test suite, pytest and the prebuilt test guests (lane_replay)."""
    return ImageRecipe(
        name="lane-tests",
        sources=LANE_DIR,
        command=(sys.executable, str(LANE_DIR / "build.py"), "--out", "{out}", "--tests-only"),
        version="1",
        extra_inputs=(GOD_DIR / "src" / "god", GOD_DIR / "tests", GOD_DIR / "pyproject.toml",
                      LINUX_DIR, PLUGIN_DIR),
    )


def initramfs_module() -> ModuleType:
    """guests/lane/initramfs.py: the one cpio writer of the lane (image build and payloads)."""
    spec = importlib.util.spec_from_file_location("lane_initramfs", LANE_DIR / "initramfs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tcg_svm_problem(qemu: str) -> str:
    """Does this QEMU's TCG offer SVM + NPT? (qemu_feature: cached per binary)"""
    return qemu_start_problem(qemu, ("-M", "microvm", "-accel", "tcg", "-cpu", "max,svm=on,npt=on,enforce"),
                              "lane-tcg-svm", "does not emulate SVM with nested paging")


def lane_build_problem() -> str:
    if not Path(GUEST_PYTHON).exists():
        return f"{GUEST_PYTHON} missing (apt-get install python3.11): the lane's Python"
    if not Path("/bin/busybox").exists():
        return "/bin/busybox missing (apt-get install busybox-static)"
    if not (LANE_DIR / "build.py").exists():
        return f"guest not implemented in this checkout: {LANE_DIR / 'build.py'} is missing"
    if not (GOD_DIR / "src" / "god").is_dir():
        return f"{GOD_DIR / 'src' / 'god'} missing: god is shipped into the lane from there"
    return ""


def build_lane(cache_root: Path | None = None, tests: bool = False) -> BuiltImage:
    """The lane image (or its tests layer), built once per input hash, for one-shot lane runs
    (``run_in_lane``). Machines get theirs through the session's cache (GodSvm.recipes)."""
    recipe = lane_tests_recipe() if tests else lane_recipe()
    return ArtifactCache(cache_root or DEFAULT_CACHE_ROOT).build(recipe)


def payload_initramfs(files: dict[str, Path], run_script: str) -> bytes:
    """The per-boot initramfs: /lane/guest/* and /lane/run (what the lane's /init runs)."""
    tree = initramfs_module().Tree()
    for lane_path, src in sorted(files.items()):
        tree.copy(lane_path, src)
    tree.file("lane/run", run_script.encode(), 0o755)
    return tree.cpio()  # uncompressed, as the base: kernels and disks gain little from gzip


def lane_qemu_argv(image: BuiltImage, initrd: Path, accel: str, host: HostInfo, mem_mib: int,
                   cpus: int, qmp: Path | None, extra_cmdline: str = "") -> list[str]:
    cmdline = LANE_CMDLINE
    if host.cpu_khz:
        cmdline += f" tsc_early_khz={host.cpu_khz} lpj={host.cpu_khz * 1000 // LANE_KERNEL_HZ}"
    if extra_cmdline:
        cmdline += " " + extra_cmdline
    # -smp = god's vCPUs: KVM_CAP_NR_VCPUS inside is the lane's CPU count and god refuses
    # more (docs/lane.md). TCG runs them in one thread (thread=single): the host has 2 cores.
    return base_argv(machine="microvm", accel="tcg,thread=single" if accel == "tcg" else "kvm",
                     cpu="max" if accel == "tcg" else "host", mem_mib=mem_mib, cpus=max(1, cpus),
                     kernel=image.file("vmlinux"), initrd=initrd, cmdline=cmdline, qmp=qmp)


def concat(out: Path, parts: list[Path | bytes]) -> Path:
    """One initrd of archives in order. Each starts on a 4-byte boundary: Linux's unpacker
    (init/initramfs.c, unpack_to_rootfs) takes an uncompressed newc archive only at an aligned
    offset and skips the zero bytes between archives; a gzip member's length is arbitrary, so
    an uncompressed archive after one would otherwise read as "invalid magic"."""
    with out.open("wb") as f:
        for part in parts:
            f.write(part if isinstance(part, bytes) else part.read_bytes())
            f.write(b"\0" * (-f.tell() % 4))
    return out


class GodSvm(Qemu):
    name = "god-svm"
    description = ("god over the real kvm_amd inside a QEMU TCG guest (emulated AMD SVM + NPT): "
                   "hardware-KVM semantics without hardware KVM (docs/lane.md)")
    accels: tuple[Accel, ...] = ("tcg", "kvm")  # type: ignore[assignment]  # tcg first: the lane
    process_also_runs = "QEMU and the lane's Linux, which run god and its guest"
    # Disks travel in the per-boot initramfs (a writable disk's changes stay in the lane);
    # the vsock socket is carried out of the lane by the lane link (pytest_vmm/lane_link.py).
    provides = frozenset({"blk", "vsock"})
    shared_across_modules = True  # a lane boot is 4-6 s; an idle lane costs ~10 % of a core

    def problem(self, host: HostInfo) -> str:
        qemu = host.tool(QEMU_BINARY)
        if qemu is None:
            return f"{QEMU_BINARY} not found on PATH (apt-get install qemu-system-x86)"
        return lane_build_problem() or tcg_svm_problem(qemu)

    def pick_accel(self, choice: str, host: HostInfo, preferred: str | None) -> str:
        if choice != "auto":
            return choice
        # The outer QEMU may use KVM only where it is hardware SVM (nested); PVM cannot
        # expose SVM to its guests.
        return "kvm" if host.kvm_usable and host.kvm_flavour == "svm" else "tcg"

    def accel_problem(self, accel: str, host: HostInfo) -> str:
        problem = super().accel_problem(accel, host)
        if not problem and accel == "kvm" and host.kvm_flavour != "svm":
            problem = (f"{self.name} with accel kvm needs hardware AMD SVM with nested "
                       f"virtualization; this host's KVM is {host.kvm_flavour}")
        return problem

    def recipes(self, host: HostInfo) -> tuple[ImageRecipe, ...]:
        return (lane_recipe(),)

    def god_argv(self, spec: BootSpec, files: dict[str, Path]) -> list[str]:
        """The god command line inside the lane: god's own builder (hypervisors/god.py), with
        every file the guest needs (kernel, initrd, disks) shipped in the per-boot initramfs,
        and god's vsock socket where the lane link's lane end connects to it."""
        # god's own split irqchip (its default), so the lane's suites test god's IOAPIC, PIC
        # and PIT on the real kvm_amd's LAPIC (docs/lane.md, "Known gaps": the held-EOI race).
        vsock = LANE_VSOCK_UDS if spec.vsock is not None else None
        return god_run_argv(spec, ["python3", "-u"], place=lambda src: place_in_lane(files, src),
                            vsock_uds=vsock)

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        image = spec.hypervisor_images.get("lane") or build_lane()
        files: dict[str, Path] = {}
        god = self.god_argv(spec, files)
        # god's stderr goes to the debugcon, not the console: a warning must not land inside
        # the guest's serial output (an agent reply), and the host keeps it in the machine's
        # hypervisor-stderr.log.
        port_log = place_in_lane(files, Path(lane_port_log.__file__))
        script = (f"mkfifo {GOD_LOG_FIFO}\n"
                  f"python3 -u {port_log} --port {GOD_LOG_PORT:#x} <{GOD_LOG_FIFO} &\n"
                  "exec " + " ".join(shlex.quote(a) for a in god) + f" 2>{GOD_LOG_FIFO}\n")
        qmp = run_dir / QMP_SOCKET
        sockets, companions, vsock_socket, link_args = [qmp], [], None, []
        if spec.vsock is not None:
            # The lane link: its host end (a companion) listens where the guest's vsock
            # appears on the host and carries each connection over the lane's second 16550
            # to its lane end, which connects it to god's socket (pytest_vmm/lane_link.py).
            vsock_socket = run_dir / spec.vsock.socket_name
            link = run_dir / LINK_SOCKET
            companions.append(Companion(
                "lane-link", [sys.executable, "-m", "pytest_vmm.lane_link", "host", "--link", str(link),
                              "--listen", str(vsock_socket)], ready_path=link))
            sockets.append(vsock_socket)
            link_end = place_in_lane(files, Path(lane_link.__file__))
            script = (f"python3 -u {link_end} lane --tty {LINK_TTY} --connect {LANE_VSOCK_UDS} "
                      f">/tmp/lane-link.log 2>&1 &\n") + script
            link_args = ["-chardev", f"socket,id=lanelink,path={link}",
                         "-device", "isa-serial,chardev=lanelink,iobase=0x2f8,irq=3"]
        initrd = concat(run_dir / "lane-initrd.img",
                        [image.file(BASE_INITRD), payload_initramfs(files, script)])
        argv = lane_qemu_argv(image, initrd, accel, host, spec.mem_mib + LANE_OVERHEAD_MIB,
                              spec.cpus, qmp, extra_cmdline="8250.nr_uarts=2" if link_args else "")
        # append=on: QEMU's own stderr lines and god's share the file without overwriting.
        argv += ["-chardev", "file,id=godlog,path=/dev/stderr,append=on",
                 "-device", f"isa-debugcon,iobase={GOD_LOG_PORT:#x},chardev=godlog"]
        argv += link_args + spec.hypervisor_args.get(self.name, [])
        return LaunchPlan(argv=argv, sockets=sockets, companions=companions, control_socket=qmp,
                          vsock_socket=vsock_socket, stop="qmp")


def place_in_lane(files: dict[str, Path], src: Path) -> str:
    """Ship ``src`` in the per-boot initramfs; its path inside the lane."""
    lane_path = f"lane/guest/{len(files)}-{src.name}"
    files[lane_path] = src
    return "/" + lane_path


hypervisor = GodSvm()


# ----------------------------------------------------------------------------------------
# One-shot lane runs (god's own test suite, Linux on god): a script in, console + status out.

@dataclass
class LaneResult:
    status: int | None  # QEMU's exit status (None: killed on timeout)
    console: bytes
    seconds: float
    log: Path

    def section(self, name: str) -> bytes | None:
        """The payload a lane script printed as ``@@lane-begin NAME`` base64 ``@@lane-end NAME``."""
        import base64
        import gzip
        import re

        m = re.search(rb"@@lane-begin " + re.escape(name.encode()) + rb"\r*\n(.*?)@@lane-end "
                      + re.escape(name.encode()), self.console, re.DOTALL)
        if m is None:
            return None
        try:
            return gzip.decompress(base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", m.group(1))))
        except (ValueError, OSError, EOFError):
            return None


def _die_with_parent(argv: list[str]) -> list[str]:
    """QEMU gets SIGKILL if the test process dies (util-linux setpriv --pdeathsig), so no
    lane outlives its run even when pytest itself is killed."""
    import shutil

    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


# What the lane prints when its script cannot run (a broken initrd; /init then starts a shell).
LANE_BROKEN_RE = re.compile(rb"Initramfs unpacking failed[^\r\n]*|lane: no /lane/run[^\r\n]*")


# Lane script helper: print a file as a gzip+base64 section the host can pull off the console.
EMIT_SECTION = 'emit() { echo "@@lane-begin $1"; gzip -c "$2" | base64; echo "@@lane-end $1"; }\n'


def run_in_lane(script: str, files: dict[str, Path], log: Path, *, tests_layer: bool = False,
                mem_mib: int = 512, cpus: int = 1, timeout_s: float = 600.0,
                host: HostInfo | None = None, cache_root: Path | None = None) -> LaneResult:
    """Boot the lane once, run ``script`` (sh) as /lane/run, return its console and status."""
    import signal
    import tempfile
    import time

    host = host or HostInfo.detect()
    image = build_lane(cache_root)
    parts: list[Path | bytes] = [image.file(BASE_INITRD)]
    if tests_layer:
        parts.append(build_lane(cache_root, tests=True).file("tests.cpio.gz"))
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmm-lane-") as tmp:
        initrd = concat(Path(tmp) / "initrd.img", [*parts, payload_initramfs(files, script)])
        argv = lane_qemu_argv(image, initrd, "tcg", host, mem_mib, cpus, None)
        started = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(_die_with_parent(argv), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            status: int | None = None
            try:
                while time.monotonic() - started < timeout_s:
                    try:
                        status = proc.wait(1.0)
                        break
                    except subprocess.TimeoutExpired:
                        broken = LANE_BROKEN_RE.search(log.read_bytes())
                        if broken:  # it would wait at a shell until the timeout
                            raise RuntimeError(f"the lane did not run its script: {broken[0].decode(errors='replace')} "
                                               f"(console: {log})")
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        return LaneResult(status, log.read_bytes(), time.monotonic() - started, log)
