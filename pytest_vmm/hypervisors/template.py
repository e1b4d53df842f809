"""A hypervisor declared as a command template in vmm.toml: your VMM, no Python.

    [hypervisors.myvmm]
    command = "my-vmm --kernel {kernel} --mem {mem_mib} --cpus {cpus} --cmdline {cmdline}"
    boots = ["pvh"]

Placeholders are substituted inside each word after the command is split, so a value with
spaces (``{cmdline}``) stays one argument. Things a guest may not have (an initrd, disks,
vsock, a command line) go in their own argument groups (``initrd_args``, ``disk_args`` once
per disk, ``vsock_args``, ``cmdline_args``), added only when the guest has them. The full
reference is docs/own-vmm.md.
"""

from __future__ import annotations

import signal
import string
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmm.errors import LaunchError
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Hypervisor, LaunchPlan, ProcessControl
from pytest_vmm.stack import BootSpec, Stack

if TYPE_CHECKING:
    from pytest_vmm.config import Table

# Placeholder -> what it becomes. Valid in `command` and every group.
COMMON_PLACEHOLDERS: dict[str, str] = {
    "kernel": "absolute path of the guest kernel",
    "cmdline": "the kernel command line (may be empty; see cmdline_args)",
    "mem_mib": "guest RAM in MiB",
    "cpus": "number of vCPUs",
    "accel": "the accelerator picked for this run (kvm or tcg, from `accels`)",
    "run_dir": "a private directory for this boot (sockets, config files), removed afterwards",
    "python": "the Python running pytest (for VMMs written in Python)",
    "console_sock": "the console's Unix socket path (console = \"socket\" only)",
}
# Argument groups: key -> (when it is added, placeholders only it may use).
GROUPS: dict[str, tuple[str, dict[str, str]]] = {
    "cmdline_args": ("when the command line is not empty", {}),
    "initrd_args": ("when the guest has an initrd", {"initrd": "absolute path of the initrd"}),
    "disk_args": ("once per disk", {
        "disk": "absolute path of the disk image", "disk_index": "0, 1, ... for each disk",
        "disk_ro": "on for a read-only disk, off otherwise"}),
    "vsock_args": ("when the guest needs vsock", {
        "vsock_uds": "the host-side hybrid vsock Unix socket the VMM must create (Firecracker's "
                     "convention: the host connects and sends CONNECT <port>)",
        "vsock_cid": "the guest's context id"}),
}
STOP_PLACEHOLDERS = {"run_dir": COMMON_PLACEHOLDERS["run_dir"], "python": COMMON_PLACEHOLDERS["python"],
                     "pid": "pid of the VMM process"}
BOOT_FORMATS = ("pvh", "multiboot", "bzimage", "flat")
ACCELS = ("kvm", "tcg")
PROVIDES = {"vsock": "vsock_args", "blk": "disk_args"}
KEYS = ("command", "description", "boots", "accels", "console", "stop", "stop_command", "provides",
        "env", *GROUPS)


@dataclass(frozen=True)
class Template:
    """A parsed, validated ``[hypervisors.NAME]`` table."""

    name: str
    source: str  # "hypervisors.NAME in /path/vmm.toml": named in every error
    command: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    boots: tuple[str, ...]
    accels: tuple[str, ...]
    console: str
    stop_signal: int
    stop_command: tuple[str, ...] | None
    provides: frozenset[str]
    env: dict[str, str] = field(default_factory=dict)

    def uses(self, placeholder: str) -> bool:
        words = [*self.command, *(w for g in self.groups.values() for w in g)]
        return any(placeholder in fields_of(w) for w in words)


def fields_of(word: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(word) if f is not None]


def _check_words(table: Table, key: str, words: list[str], allowed: dict[str, str]) -> None:
    for word in words:
        try:
            parsed = list(string.Formatter().parse(word))
        except ValueError as exc:
            raise table.error(key, f"bad placeholder syntax in {word!r}: {exc} (a literal brace is {{{{ or }}}})") from None
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if spec or conversion:
                raise table.error(key, f"{{{name}...}} in {word!r}: placeholders take no format spec or conversion")
            if name not in allowed:
                owner = next((g for g, (_, own) in GROUPS.items() if name in own), None)
                hint = (f"{{{name}}} may only appear in {owner} ({GROUPS[owner][0]})" if owner
                        else f"unknown placeholder {{{name}}}")
                raise table.error(key, f"{hint}; placeholders here: "
                                       + ", ".join(f"{{{p}}}" for p in allowed))


def parse_hypervisor(table: Table) -> TemplateHypervisor:
    """Validate one ``[hypervisors.NAME]`` table (ConfigError naming the key on a mistake)."""
    table.check_unknown(KEYS)
    command = table.command("command", required=True)
    assert command is not None
    _check_words(table, "command", command, COMMON_PLACEHOLDERS)
    groups: dict[str, tuple[str, ...]] = {}
    for group, (_, own) in GROUPS.items():
        words = table.command(group)
        if words is not None:
            _check_words(table, group, words, {**COMMON_PLACEHOLDERS, **own})
            groups[group] = tuple(words)
    if not table.has("boots"):
        raise table.error("boots", f"missing (required): the kernel formats the VMM boots, of {', '.join(BOOT_FORMATS)}")
    boots = table.strings("boots", choices=BOOT_FORMATS)
    if not boots:
        raise table.error("boots", "is empty")
    accels = table.strings("accels", default=("kvm",), choices=ACCELS) or ("kvm",)
    console = table.string("console", default="stdio")
    if console not in ("stdio", "socket"):
        raise table.error("console", f"expected \"stdio\" or \"socket\", got {console!r}")
    stop_command = table.command("stop_command")
    if stop_command is not None:
        if table.has("stop"):
            raise table.error("stop", "give either stop (a signal) or stop_command, not both")
        _check_words(table, "stop_command", stop_command, STOP_PLACEHOLDERS)
    stop_name = str(table.string("stop", default="SIGTERM")).upper()
    stop_name = stop_name if stop_name.startswith("SIG") else "SIG" + stop_name
    try:
        stop_signal = int(signal.Signals[stop_name])
    except KeyError:
        raise table.error("stop", f"unknown signal {stop_name!r} (e.g. \"SIGTERM\", \"SIGINT\")") from None
    provides = frozenset(table.strings("provides", choices=tuple(PROVIDES)))
    env_value = table.data.get("env", {})
    table.read.add("env")
    if not isinstance(env_value, dict) or not all(isinstance(v, str) for v in env_value.values()):
        raise table.error("env", "expected a table of strings (env = { NAME = \"value\" })")
    template = Template(
        name=table.name,
        source=f"{table.prefix} in {table.path}",
        command=tuple(command),
        groups=groups,
        boots=boots,
        accels=accels,
        console=str(console),
        stop_signal=stop_signal,
        stop_command=tuple(stop_command) if stop_command else None,
        provides=provides,
        env={str(k): str(v) for k, v in env_value.items()},
    )
    if console == "socket" and not template.uses("console_sock"):
        raise table.error("console", "\"socket\" needs {console_sock} in the command (where the VMM serves the console)")
    if console == "stdio" and template.uses("console_sock"):
        raise table.error("command", "{console_sock} is only for console = \"socket\"")
    for capability, group in PROVIDES.items():
        if capability in provides and group not in groups:
            raise table.error("provides", f"{capability!r} needs {group} (how the VMM is given it)")
    if "vsock_args" in groups and not any("vsock_uds" in fields_of(w) for w in groups["vsock_args"]):
        raise table.error("vsock_args", "needs {vsock_uds}: the socket the host side connects to")
    if "disk_args" in groups and not any("disk" in fields_of(w) for w in groups["disk_args"]):
        raise table.error("disk_args", "needs {disk}")
    if "initrd_args" in groups and not any("initrd" in fields_of(w) for w in groups["initrd_args"]):
        raise table.error("initrd_args", "needs {initrd}")
    if not template.uses("kernel"):
        raise table.error("command", "needs {kernel}: the guest kernel to boot")
    description = table.string("description", default="") or ""
    return TemplateHypervisor(template, description)


class TemplateHypervisor(Hypervisor):
    """Boots a guest by filling in a declared command line."""

    def __init__(self, template: Template, description: str = "") -> None:
        self.template = template
        self.name = template.name
        self.accels = template.accels  # type: ignore[assignment]
        self.provides = template.provides
        self.description = (f"{description + '; ' if description else ''}command template "
                            f"({template.source}); boots {', '.join(template.boots)}")

    @property
    def binary(self) -> str:
        return self.template.command[0]

    def problem(self, host: HostInfo) -> str:
        if fields_of(self.binary):
            return ""  # {python}, or a path built from placeholders: checked when it starts
        if host.tool(self.binary) is None and not (Path(self.binary).is_absolute() and Path(self.binary).exists()):
            return f"{self.binary} not found (the first word of command, {self.template.source})"
        return ""

    def stack_problem(self, stack: Stack) -> str:
        """What this template cannot give a stack, as far as it is known before a build."""
        from pytest_vmm.stacks.declared import DeclaredStack

        needs: list[tuple[bool, str]] = [("smp" in stack.capabilities and not self.template.uses("cpus"),
                                          (f"stack {stack.name} runs on several vCPUs (capability smp)"
                                           f" but the template has no {{cpus}} placeholder"))]
        needs.append(("blk" in stack.capabilities and "disk_args" not in self.template.groups,
                      f"stack {stack.name} boots with a disk (capability blk) but the template has no disk_args"))
        if isinstance(stack, DeclaredStack) and stack.declaration is not None:
            decl = stack.declaration
            needs += [
                (decl.format not in self.template.boots,
                 f"stack {stack.name} boots a {decl.format} kernel; the template boots {', '.join(self.template.boots)}"),
                (decl.initrd is not None and "initrd_args" not in self.template.groups,
                 f"stack {stack.name} has an initrd but the template has no initrd_args ({{initrd}})"),
                (bool(decl.cmdline) and not self.template.uses("cmdline"),
                 f"stack {stack.name} has a kernel command line but the template has no {{cmdline}} placeholder"),
                (decl.cpus > 1 and not self.template.uses("cpus"),
                 f"stack {stack.name} boots {decl.cpus} vCPUs but the template has no {{cpus}} placeholder"),
                (bool(decl.disks) and "disk_args" not in self.template.groups,
                 f"stack {stack.name} has disks but the template has no disk_args ({{disk}})"),
            ]
        problem = next((message for missing, message in needs if missing), "")
        return f"{problem} ({self.template.source})" if problem else ""

    def _missing_for(self, spec: BootSpec) -> str:
        """What this boot needs that the template cannot pass ("" when it can)."""
        t = self.template
        checks = [
            (spec.kernel_format not in ("auto", *t.boots),
             f"the guest kernel is {spec.kernel_format} but the template boots {', '.join(t.boots)} (boots)"),
            (spec.initrd is not None and "initrd_args" not in t.groups, "the guest has an initrd: add initrd_args"),
            (bool(spec.disks) and "disk_args" not in t.groups, "the guest has disks: add disk_args"),
            (spec.vsock is not None and "vsock_args" not in t.groups, "the guest needs vsock: add vsock_args"),
            (bool(spec.cmdline) and not t.uses("cmdline"),
             f"the guest has a command line ({spec.cmdline!r}): add {{cmdline}} or cmdline_args"),
            (spec.cpus > 1 and not t.uses("cpus"), f"the guest boots {spec.cpus} vCPUs: add {{cpus}}"),
        ]
        return next((message for missing, message in checks if missing), "")

    def launch_plan(self, spec: BootSpec, accel: str, run_dir: Path, host: HostInfo) -> LaunchPlan:
        missing = self._missing_for(spec)
        if missing:
            raise LaunchError(f"hypervisor {self.name} cannot boot this guest: {missing} ({self.template.source})")
        values: dict[str, object] = {
            "kernel": spec.kernel.resolve(), "cmdline": spec.cmdline, "mem_mib": spec.mem_mib,
            "cpus": spec.cpus, "accel": accel, "run_dir": run_dir, "python": sys.executable,
            "console_sock": run_dir / "console.sock",
        }
        t = self.template
        argv = fill(t.command, values)
        if spec.cmdline and "cmdline_args" in t.groups:
            argv += fill(t.groups["cmdline_args"], values)
        if spec.initrd is not None:
            argv += fill(t.groups["initrd_args"], {**values, "initrd": spec.initrd.resolve()})
        for index, disk in enumerate(spec.disks):
            argv += fill(t.groups["disk_args"], {**values, "disk": disk.path.resolve(), "disk_index": index,
                                                 "disk_ro": "on" if disk.read_only else "off"})
        sockets: list[Path] = []
        if spec.vsock is not None:
            uds = run_dir / spec.vsock.socket_name
            argv += fill(t.groups["vsock_args"], {**values, "vsock_uds": uds, "vsock_cid": spec.vsock.guest_cid})
            sockets.append(uds)
        argv += spec.hypervisor_args.get(self.name, [])
        if t.console == "socket":
            sockets.append(run_dir / "console.sock")
            argv = [sys.executable, "-m", "pytest_vmm.hypervisors.console_bridge", str(run_dir / "console.sock"),
                    "--", *argv]
        return LaunchPlan(argv=argv, env=dict(t.env), sockets=sockets, run_dir=run_dir)

    def request_stop(self, process: ProcessControl, plan: LaunchPlan) -> bool:
        t = self.template
        if t.stop_command is None:
            process.signal_leader(t.stop_signal)
            return True
        argv = fill(t.stop_command, {"run_dir": plan.run_dir, "python": sys.executable, "pid": process.pid})
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            process.note(f"stop_command of {self.name} failed: {exc}")
            return False
        if result.returncode != 0:
            process.note(f"stop_command of {self.name} exited {result.returncode}: "
                                 f"{result.stderr.decode(errors='replace').strip()[-200:]}")
        return True


def fill(words: tuple[str, ...], values: dict[str, object]) -> list[str]:
    """Substitute placeholders word by word (validated at parse time, so every name is known)."""
    return [word.format_map({k: str(v) for k, v in values.items()}) for word in words]
