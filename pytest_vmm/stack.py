"""The data contracts between the plugin, stacks and hypervisors.

A ``Stack`` builds an image (``ImageRecipe``) and turns it into a ``BootSpec``; a
``Hypervisor`` turns a ``BootSpec`` into a ``LaunchPlan``; a ``Machine`` runs that plan.
Third-party stacks implement the same interfaces (see docs/writing-a-stack.md).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from pytest_vmm.console import Console
    from pytest_vmm.host import HostInfo

KernelFormat = Literal["pvh", "multiboot", "bzimage", "flat", "auto"]


@dataclass(frozen=True)
class Disk:
    path: Path
    read_only: bool = False
    # Writes must not reach ``path`` (a cached, shared image): the hypervisor boots a copy
    # made in the machine's run directory, removed with it.
    scratch: bool = False

    def launch_path(self, run_dir: Path, index: int) -> Path:
        """The file the hypervisor opens: ``path``, or a fresh copy of it for a scratch disk."""
        if not self.scratch:
            return self.path
        copy = run_dir / f"disk{index}-{self.path.name}"
        shutil.copyfile(self.path, copy)
        return copy


@dataclass(frozen=True)
class VsockSpec:
    guest_cid: int = 3
    # Host side: Firecracker-style hybrid Unix socket, created in the machine's run dir.
    socket_name: str = "vsock.sock"


@dataclass
class BootSpec:
    """Everything a hypervisor needs to boot one guest, independent of the hypervisor."""

    kernel: Path
    kernel_format: KernelFormat = "auto"
    initrd: Path | None = None
    cmdline: str = ""
    mem_mib: int = 128
    cpus: int = 1
    disks: list[Disk] = field(default_factory=list)
    vsock: VsockSpec | None = None
    # Console regex (bytes) that means "booted and ready"; boot time is measured to it.
    ready: bytes = rb"."
    # Console regexes that mean the guest died: seen at any time, they fail the test.
    fail_patterns: list[bytes] = field(default_factory=list)
    # Base boot timeout before the accelerator multiplier (seconds).
    boot_timeout_s: float = 30.0
    # QEMU machine type where the stack cares ("microvm" or "pc"; qemu-virt uses it only when it
    # names a "virt" machine).
    qemu_machine: str = "microvm"
    # Firmware booted first, which then boots ``kernel`` (UEFI on arm64: qemu-virt passes it as
    # -bios and the kernel through fw_cfg); None for a direct kernel boot.
    firmware: Path | None = None
    # Escape hatch: extra arguments for one hypervisor, keyed by its name.
    hypervisor_args: dict[str, list[str]] = field(default_factory=dict)
    # Images the hypervisor asked for (Hypervisor.recipes), built through the session's cache
    # and filled in by the machine factory, by recipe name.
    hypervisor_images: dict[str, BuiltImage] = field(default_factory=dict)


# A boot variant (zosia's modes, an extra disk): applied to the stack's BootSpec before the
# machine is built, so the machine boots exactly the spec it was given.
BootTransform = Callable[[BootSpec], BootSpec]


@dataclass
class BuiltImage:
    """A finished build: the cache directory plus its manifest (``image.json`` if present)."""

    name: str
    path: Path
    manifest: dict[str, object] = field(default_factory=dict)
    # The architecture the image was built for (its recipe's ``arch``).
    arch: str = "x86_64"

    @classmethod
    def load(cls, name: str, path: Path, arch: str = "x86_64") -> BuiltImage:
        manifest_file = path / "image.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
        return cls(name=name, path=path, manifest=manifest, arch=arch)

    def file(self, relpath: str) -> Path:
        target = self.path / relpath
        if not target.exists():
            raise FileNotFoundError(f"image {self.name} has no {relpath} (in {self.path})")
        return target


@dataclass(frozen=True)
class ImageRecipe:
    """How to build a guest image from sources, reproducibly and cacheably.

    ``command`` is run with ``{out}`` replaced by the output directory; the cache key is a
    hash of every file under ``sources`` (minus ``exclude`` names), ``extra_inputs`` and
    ``version``.
    """

    name: str
    sources: Path
    command: tuple[str, ...]
    version: str = "1"
    extra_inputs: tuple[Path, ...] = ()
    exclude: tuple[str, ...] = (
        "__pycache__", ".zig-cache", "zig-cache", "zig-out", "target", "build", "out",
        ".pytest_cache", ".hypothesis",
    )
    # Tools that must exist for the build: (name, how to check -> problem or "").
    requires: tuple[Callable[[HostInfo], str], ...] = ()
    # The guest architecture of what it builds (a Hypervisor.arch value).
    arch: str = "x86_64"
    # Roughly how long a cold build takes on a 2-core machine (seconds; not part of the key):
    # a prebuild starts the longest first, so the run rarely waits for them.
    cold_build_s: float = 0.0


class ChannelHost(Protocol):
    """What a channel factory (and a stack's health probe) sees of a booted machine."""

    @property
    def target_id(self) -> str: ...

    @property
    def console(self) -> Console: ...

    @property
    def timeout_factor(self) -> float:
        """The accelerator's slowness: channels scale their waits by it."""
        ...

    @property
    def vsock_socket(self) -> Path | None:
        """Host side of the guest's vsock device (LaunchPlan.vsock_socket), None without one."""
        ...

    def sendline(self, data: bytes | str = b"") -> None: ...

    def expect(self, pattern: bytes | str | Sequence[bytes | str], timeout: float = 30.0) -> re.Match[bytes]: ...

    def channel(self, name: str) -> Any: ...


ChannelFactory = Callable[[ChannelHost], object]


@dataclass
class Stack:
    """A named guest stack: an image, the hypervisors that boot it, its capabilities."""

    name: str
    description: str
    recipe: ImageRecipe | None
    boot: Callable[[BuiltImage, HostInfo, str], BootSpec]
    default_hypervisor: Callable[[HostInfo], str] | str
    hypervisors: Sequence[str]
    capabilities: frozenset[str]
    # Hypervisor -> capabilities it cannot give this stack (e.g. vsock on a hypervisor
    # without our device model).
    missing_on: dict[str, frozenset[str]] = field(default_factory=dict)
    # Accelerator this stack prefers on this host, or None to let the hypervisor decide
    # (zosia: Linux must use TCG on PVM).
    preferred_accel: Callable[[HostInfo, str], str | None] = lambda host, hv: None
    # Problem that stops this stack on a hypervisor here, "" when none.
    problem: Callable[[HostInfo, str], str] = lambda host, hv: ""
    channels: dict[str, ChannelFactory] = field(default_factory=dict)
    # The stack's own options (its ini keys in the vmm group, e.g. zosia's vmm_zosia_uefi):
    # given an option lookup (command line, else ini) and the hypervisor's name, the boot
    # variant they ask for, applied to every machine's BootSpec before a test's own; or None.
    option_variant: Callable[[Callable[[str], object], str], BootTransform | None] = \
        lambda get, hypervisor: None
    # Devices the hypervisor must provide (Hypervisor.provides), e.g. {"vsock"}.
    needs_from_hypervisor: frozenset[str] = frozenset()
    # Liveness probe for shared machines (default: the hypervisor process is alive).
    health: Callable[[ChannelHost], bool] | None = None
    # Images for other guest architectures than ``recipe``'s, by Hypervisor.arch (the probe's
    # aarch64 kernel for qemu-virt); ``recipe`` serves every architecture not named here.
    arch_recipes: dict[str, ImageRecipe] = field(default_factory=dict)

    def recipe_for(self, arch: str) -> ImageRecipe | None:
        """The image recipe for a hypervisor of this architecture."""
        return self.arch_recipes.get(arch, self.recipe)

    def pick_default_hypervisor(self, host: HostInfo) -> str:
        if callable(self.default_hypervisor):
            return self.default_hypervisor(host)
        return self.default_hypervisor

    def capabilities_on(self, hypervisor: str) -> frozenset[str]:
        return self.capabilities - self.missing_on.get(hypervisor, frozenset())
