"""A guest stack declared in vmm.toml: your kernel, the shared suites, no Python.

    [stacks.mykernel]
    kernel = "build/kernel.elf"       # a file, or (with `build`) a path inside the build output
    format = "pvh"
    capabilities = ["serial", "agent", "mmio", "irq", "timer"]
    hypervisors = ["qemu", "god"]

With ``build`` (a command; ``{out}`` is the output directory) the image goes through the
content-hashed build cache: ``sources`` (required then) are the inputs hashed for the key.
The full reference is docs/own-guest.md.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmm.capabilities import CAPABILITIES
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisors.template import BOOT_FORMATS
from pytest_vmm.stack import BootSpec, BuiltImage, Disk, ImageRecipe, Stack, VsockSpec
from pytest_vmm.stacks._common import (
    COMMON_FAIL_PATTERNS,
    Requirement,
    agent_channel,
    agent_ready_pattern,
)

if TYPE_CHECKING:
    from pytest_vmm.config import Table

KEYS = ("description", "kernel", "build", "sources", "format", "initrd", "cmdline", "mem_mib", "cpus",
        "disks", "vsock_cid", "ready", "fail_patterns", "boot_timeout", "capabilities", "hypervisors",
        "default_hypervisor", "qemu_machine")


@dataclass(frozen=True)
class StackDeclaration:
    """What a ``[stacks.NAME]`` table says; paths are absolute unless they are in the build output."""

    name: str
    source: str
    kernel: str
    format: str
    built: bool
    base_dir: Path
    initrd: str | None = None
    cmdline: str = ""
    mem_mib: int = 128
    cpus: int = 1
    disks: tuple[str, ...] = ()
    vsock_cid: int | None = None
    ready: bytes = b""
    fail_patterns: tuple[bytes, ...] = ()
    boot_timeout_s: float = 30.0
    qemu_machine: str = "microvm"

    def path(self, image: BuiltImage, relpath: str) -> Path:
        """A declared file: inside the build output when the stack builds, else as declared."""
        return image.file(relpath) if self.built else Path(relpath)


@dataclass
class DeclaredStack(Stack):
    declaration: StackDeclaration | None = field(default=None, kw_only=True)


def _regex(table: Table, key: str, text: str) -> bytes:
    try:
        re.compile(text.encode())
    except re.error as exc:
        raise table.error(key, f"not a valid regular expression ({exc}): {text!r}") from None
    return text.encode()


def parse_stack(table: Table) -> DeclaredStack:
    """Validate one ``[stacks.NAME]`` table (ConfigError naming the key on a mistake)."""
    table.check_unknown(KEYS)
    name = table.name
    build = table.command("build")
    sources = table.path_value("sources")
    if build is not None and sources is None:
        raise table.error("sources", "missing: with build, name the inputs that key the build cache (a directory or file)")
    if sources is not None and build is None:
        raise table.error("sources", "only means something with build")
    built = build is not None
    kernel = str(table.string("kernel", required=True))
    initrd = table.string("initrd")
    disks = table.strings("disks")

    def declared_path(value: str) -> str:
        # Built files are relative to the build output; the others to vmm.toml's directory.
        return value if built else str((table.base_dir / Path(value).expanduser()).resolve())

    if not table.has("format"):
        raise table.error("format", f"missing (required): the kernel's boot format, of {', '.join(BOOT_FORMATS)}")
    kernel_format = str(table.string("format"))
    if kernel_format not in BOOT_FORMATS:
        raise table.error("format", f"unknown format {kernel_format!r}; valid: {', '.join(BOOT_FORMATS)}")
    capabilities = frozenset(table.strings("capabilities", default=("serial",), choices=tuple(CAPABILITIES)))
    ready_text = table.string("ready")
    if ready_text is None and "agent" not in capabilities:
        raise table.error("ready", "missing: the console regex that means booted (required unless "
                                   "the stack has the agent capability, whose banner is the default)")
    ready = _regex(table, "ready", ready_text) if ready_text is not None else agent_ready_pattern()
    fails = tuple(_regex(table, "fail_patterns", p) for p in table.strings("fail_patterns"))
    vsock_cid = table.integer("vsock_cid", 3, minimum=3) if "vsock" in capabilities else None
    if table.has("vsock_cid") and "vsock" not in capabilities:
        raise table.error("vsock_cid", "only means something with the vsock capability")
    if disks and "blk" not in capabilities:
        raise table.error("disks", "disks need the blk capability in capabilities")
    hypervisors = table.strings("hypervisors", default=("qemu",))
    if not hypervisors:
        raise table.error("hypervisors", "is empty")
    default_hv = table.string("default_hypervisor", default=hypervisors[0])
    if default_hv not in hypervisors:
        raise table.error("default_hypervisor", f"{default_hv!r} is not in hypervisors ({', '.join(hypervisors)})")
    declaration = StackDeclaration(
        name=name,
        source=f"{table.prefix} in {table.path}",
        kernel=declared_path(kernel),
        format=kernel_format,
        built=built,
        base_dir=table.base_dir,
        initrd=declared_path(initrd) if initrd is not None else None,
        cmdline=table.string("cmdline", default="") or "",
        mem_mib=table.integer("mem_mib", 128),
        cpus=table.integer("cpus", 1),
        disks=tuple(declared_path(d) for d in disks),
        vsock_cid=vsock_cid,
        ready=ready,
        fail_patterns=fails,
        boot_timeout_s=table.number("boot_timeout", 30.0),
        qemu_machine=table.string("qemu_machine", default="microvm") or "microvm",
    )
    recipe = None
    if build is not None:
        assert sources is not None
        words = [w.replace("{python}", sys.executable).replace("{sources}", str(sources)) for w in build]
        recipe = ImageRecipe(name=name, sources=sources.resolve(), command=tuple(words),
                             requires=(_needs_command(words[0], declaration.source),))

    def boot(image: BuiltImage, host: HostInfo, hypervisor: str) -> BootSpec:
        d = declaration
        return BootSpec(
            kernel=d.path(image, d.kernel),
            kernel_format=d.format,  # type: ignore[arg-type]
            initrd=d.path(image, d.initrd) if d.initrd else None,
            cmdline=d.cmdline,
            mem_mib=d.mem_mib,
            cpus=d.cpus,
            disks=[Disk(d.path(image, p), read_only=True) for p in d.disks],
            vsock=VsockSpec(guest_cid=d.vsock_cid) if d.vsock_cid is not None else None,
            ready=d.ready,
            fail_patterns=[*COMMON_FAIL_PATTERNS, *d.fail_patterns],
            boot_timeout_s=d.boot_timeout_s,
            qemu_machine=d.qemu_machine,
        )

    def problem(host: HostInfo, hypervisor: str) -> str:
        if declaration.built:
            return ""  # the build makes the files; a failed build is an error of its own
        for kind, path in (("kernel", declaration.kernel), ("initrd", declaration.initrd),
                           *(("disk", p) for p in declaration.disks)):
            if path is not None and not Path(path).is_file():
                return f"{kind} file {path} does not exist ({declaration.source})"
        return ""

    description = table.string("description", default="") or f"declared in {table.path}"
    return DeclaredStack(
        name=name,
        description=description,
        recipe=recipe,
        boot=boot,
        default_hypervisor=default_hv,
        hypervisors=hypervisors,
        capabilities=capabilities,
        channels={"agent": agent_channel} if "agent" in capabilities else {},
        needs_from_hypervisor=frozenset({"vsock"} if "vsock" in capabilities else set()),
        problem=problem,
        declaration=declaration,
    )


def _needs_command(word: str, source: str) -> Requirement:
    def check(host: HostInfo) -> str:
        found = shutil.which(word) or (Path(word).is_absolute() and Path(word).exists())
        return "" if found else f"build command {word} not found ({source}, build)"
    return check
