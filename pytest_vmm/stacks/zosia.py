"""Stack ``zosia``: Linux + BusyBox + llama.cpp booting into a prompt (guests/zosia), on QEMU.

The image is described by ``zosia.json`` (written by ``guests/zosia/build.py``): kernel,
initrd, model disk, base command line, memory, vCPUs and the console markers.

Boot modes. The stack's default boot (what the ``machine`` fixture gives every suite) is the
*agent* mode: ``zosia.agent=1`` makes /init run the BusyBox shell agent
(``guests/zosia/rootfs/agent.sh``) on the serial console instead of llama.cpp, and the
machine is ready at the agent's ``@@ready`` banner. The llm suite boots the other modes
(prompt, perf, selftest, diag, ci) itself: ``mode(flags, ready)`` is the BootSpec transform
that turns the agent boot into one of them, applied by the machine factory before the machine
is built (see suites/test_llm_perf.py and docs/zosia.md).

Architectures. ``zosia`` is the x86_64 image on QEMU microvm; ``zosia@qemu-virt`` is the
aarch64 image the seeds describe, on QEMU ``virt`` (TCG here, hvf on macOS, kvm on arm64
Linux), built by the same guests/zosia/build.py with ``--arch aarch64`` (its own cache entry,
recipe ``zosia-aarch64``). Its default boot loads the kernel directly; ``--vmm-zosia-uefi``
(ini ``vmm_zosia_uefi``) boots it through the UEFI firmware instead (``uefi()``).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import (
    BootSpec,
    BootTransform,
    BuiltImage,
    Disk,
    ImageRecipe,
    KernelFormat,
    Stack,
)
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    GUESTS,
    agent_channel,
    agent_ready_pattern,
    guest_dir,
    guest_recipe,
    needs_python_module,
    needs_tool,
)

MANIFEST = "zosia.json"
# The seed's boot-to-prompt point: the console is handed to llama.cpp (or the stub prompt).
READY = rb"zosia: prompt ready"
# The agent mode: /init runs the shell agent on the console. iomem=relaxed lets the agent's
# devmem reach MMIO regions a driver has claimed (the kernel has IO_STRICT_DEVMEM=y).
AGENT_ARGS = "zosia.agent=1 iomem=relaxed"
# Each non-interactive mode prints this once the modules are loaded; it powers off by itself.
BOOT_OK = rb"zosia: boot ok t="
FAIL_PATTERNS = [*COMMON_FAIL_PATTERNS, rb"zosia: error: insmod"]


def manifest(image: BuiltImage) -> dict[str, object]:
    """zosia.json of a built image (BuiltImage.manifest only reads image.json)."""
    return json.loads(image.file(MANIFEST).read_text())


# Debian's qemu-efi-aarch64 (EDK2 for -M virt); zosia.json names the same path.
UEFI_FIRMWARE = Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
# The firmware runs before the kernel: ~1.5 s under TCG on an idle 2-core host (docs/zosia.md),
# several times that on a loaded one; a UEFI boot's timeout grows by this factor.
UEFI_TIMEOUT_FACTOR = 2.0
AARCH64_HYPERVISORS = ("qemu-virt",)


def _host_is_arm64() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
    info = manifest(image)
    if info.get("arch") == "aarch64":
        return boot_aarch64(image, info, host)
    qemu = info.get("qemu", {})
    assert isinstance(qemu, dict)
    machine = str(qemu.get("machine", "microvm"))
    append = str(info["append"])
    if machine.startswith("microvm"):
        append += " " + str(qemu.get("append_extra", "pci=off"))
    if host.cpu_khz:
        # Under TCG on a loaded host the kernel can hang calibrating the TSC (PLATFORM.md).
        append += f" tsc_early_khz={host.cpu_khz}"
    # Under TCG one vCPU is faster (MTTCG on 2 shared cores, llama.cpp's spinning threads).
    cpus = int(str(info.get("cpus_kvm" if host.hardware_kvm else "cpus_tcg", 1)))
    return _agent_spec(image, info, "pvh", append, cpus, qemu_machine=machine)


def _agent_spec(image: BuiltImage, info: dict[str, object], kernel_format: KernelFormat, append: str,
                cpus: int, **extra: object) -> BootSpec:
    """The BootSpec both architectures share: kernel, initrd, model disk, the agent's console."""
    disk = info.get("disk")
    return BootSpec(
        kernel=image.file(str(info["kernel"])),
        kernel_format=kernel_format,
        initrd=image.file(str(info["initrd"])),
        cmdline=f"{append} {AGENT_ARGS}",
        mem_mib=int(str(info.get("memory_mib", 512))),
        cpus=cpus,
        disks=[Disk(image.file(str(disk)), read_only=bool(info.get("disk_readonly", True)))] if disk else [],
        ready=agent_ready_pattern(),
        fail_patterns=list(FAIL_PATTERNS),
        boot_timeout_s=30.0,
        **extra,  # type: ignore[arg-type]
    )


def boot_aarch64(image: BuiltImage, info: dict[str, object], host: HostInfo) -> BootSpec:
    """The aarch64 image on QEMU virt: direct boot of the arm64 Image (booting.rst)."""
    qemu = info.get("qemu", {})
    assert isinstance(qemu, dict)
    # A virtualized arm64 vCPU (kvm on arm64 Linux, hvf on macOS) gets the cores; TCG one.
    cpus = int(str(info.get("cpus_kvm" if _host_is_arm64() else "cpus_tcg", 1)))
    return _agent_spec(image, info, "auto", str(info["append"]), cpus,
                       qemu_machine=str(qemu.get("machine", "virt,gic-version=3")))


def set_uefi(spec: BootSpec, firmware: Path = UEFI_FIRMWARE) -> BootSpec:
    """Boot through UEFI: the firmware starts first and boots the kernel's EFI stub (QEMU
    hands it -kernel/-initrd/-append through fw_cfg)."""
    if not firmware.exists():
        from pytest_vmm.errors import LaunchError
        raise LaunchError(f"zosia: UEFI firmware {firmware} not found (apt-get install qemu-efi-aarch64)")
    spec.firmware = firmware
    spec.boot_timeout_s *= UEFI_TIMEOUT_FACTOR
    return spec


def uefi(firmware: Path = UEFI_FIRMWARE) -> BootTransform:
    """The UEFI boot variant, for ``machine_factory.boot`` (aarch64 image only)."""
    return lambda spec: set_uefi(spec, firmware)


def option_variant(get: Callable[[str], object], hypervisor: str) -> BootTransform | None:
    """``--vmm-zosia-uefi`` (ini vmm_zosia_uefi): every aarch64 machine boots through UEFI."""
    if hypervisor in AARCH64_HYPERVISORS and get("vmm_zosia_uefi"):
        return uefi()
    return None


def set_mode(spec: BootSpec, flags: str = "", ready: bytes = READY, disks: list[Disk] | None = None) -> BootSpec:
    """Switch an unstarted machine's spec from the agent mode to another boot mode.

    ``flags``: extra kernel arguments (``zosia.perf=1 zosia.perf.tokens=64``; "" is the
    interactive prompt). ``ready``: the console pattern that means booted (the prompt for
    interactive boots, ``BOOT_OK`` for modes that run and power off). ``disks`` replaces
    the model disk (``[]``: no disk).
    """
    words = [w for w in spec.cmdline.split() if w not in AGENT_ARGS.split()]
    spec.cmdline = " ".join(words + flags.split())
    spec.ready = ready
    if disks is not None:
        spec.disks = list(disks)
    return spec


def mode(flags: str = "", ready: bytes = READY, disks: list[Disk] | None = None) -> BootTransform:
    """The boot variant for a mode (``set_mode``'s arguments), for ``machine_factory.boot``."""
    return lambda spec: set_mode(spec, flags, ready, disks)


def preferred_accel(host: HostInfo, hypervisor: str) -> str | None:
    if hypervisor in AARCH64_HYPERVISORS:
        return None  # qemu-virt picks hvf/kvm where the host runs arm64 guests, else tcg
    # PVM cannot run Linux in useful time (PLATFORM.md): Linux uses TCG unless KVM is hardware.
    return None if host.hardware_kvm else "tcg"


def problem(host: HostInfo, hypervisor: str) -> str:
    if hypervisor == "god" and not host.hardware_kvm:
        return f"Linux on god needs hardware KVM (this host's KVM flavour: {host.kvm_flavour})"
    return ""


def aarch64_recipe(x86: ImageRecipe) -> ImageRecipe:
    """The same sources and builder, ``--arch aarch64``: its own name, so its own cache entry."""
    return dataclasses.replace(
        x86, name="zosia-aarch64",
        command=(sys.executable, str(guest_dir("zosia") / "build.py"), "--out", "{out}",
                 "--arch", "aarch64"),
        requires=(*x86.requires,
                  needs_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
                  needs_tool("qemu-aarch64-static", "qemu-user-static")),
        arch="aarch64",
        cold_build_s=550.0)  # llama.cpp for NEON: 523 s here (2026-12-03)


RECIPE = guest_recipe("zosia", needs_tool("mke2fs", "e2fsprogs"), needs_tool("cmake", "cmake"),
                      needs_python_module("gguf", "gguf"),
                      # The shared kernel unpacker: a change there rebuilds the image.
                      extra_inputs=(GUESTS / "linux",),
                      cold_build_s=430.0)  # llama.cpp sse42 + kernel + disk: 330-780 s here


def x86_llama_variants(host: HostInfo) -> str:
    """The llama.cpp builds the x86_64 image ships on this host (build.py --llama-variants).

    sse42 always: without hardware KVM the image runs only under QEMU TCG, whose AVX2/FMA
    emulation is slow, and /init takes sse42 there. avx2 only where hardware KVM hands the guest
    the host's CPU: building it elsewhere would cost a cold cache 5-11 minutes for a binary that
    never runs. The choice is in the recipe's command, so it is part of the image's cache key.
    """
    return "avx2,sse42" if host.hardware_kvm else "sse42"


# run.sh --arch aarch64 builds into guests/zosia/out-aarch64 (as plain run.sh into out/, which
# the default excludes): not a source of either image.
RECIPE = dataclasses.replace(RECIPE, exclude=(*RECIPE.exclude, "out-aarch64"),
                             command=(*RECIPE.command, "--llama-variants", x86_llama_variants(HostInfo.detect())))

stack = Stack(
    name="zosia",
    description="minimal Linux + BusyBox + llama.cpp booting into a prompt (seeds 003/004)",
    recipe=RECIPE,
    boot=boot,
    default_hypervisor="qemu",
    hypervisors=("qemu", "god", *AARCH64_HYPERVISORS),
    # agent + mmio: the shell agent (hello/ping/exit, 1-byte port I/O via /dev/port, MMIO of
    # 1/2/4/8 bytes via devmem, IRQ counts from /proc/interrupts); what a shell cannot do
    # (2/4-byte ports, RAM under STRICT_DEVMEM, the UART registers Linux's 8250 driver owns)
    # answers err 8, a skip with the reason. Not irq/timer: they program the IOAPIC, LAPIC
    # and PIT and read the TSC, which Linux owns and a shell cannot reach.
    capabilities=frozenset({"serial", "linux", "llm", "blk", "agent", "mmio"}),
    channels={"agent": agent_channel},
    preferred_accel=preferred_accel,
    problem=problem,
    option_variant=option_variant,
    arch_recipes={"aarch64": aarch64_recipe(RECIPE)},
)
