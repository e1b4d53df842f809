"""The `god` command.

  god kvm info [--json]
  god run KERNEL [--initrd F[,F2...]] [--append S] [--mem MiB] [--cpus N]
                 [--serial stdio|unix:PATH|file:PATH|none]
                 [--flat-addr ADDR --flat-mode 16|32|64] [--trace-unassigned]
                 [--irqchip split|kernel]
                 [--disk PATH[,ro]]... [--vsock-uds PATH [--vsock-cid N]]
                 [--no-acpi] [--virtio-cmdline on|off]
                 [--arch x86_64|aarch64] [--dry-run] [--dump-dtb FILE]

The backend is the host's architecture (god.arch; KVM runs only its own); --arch names it
explicitly, and another one only with --dry-run (aarch64: plan the boot and write the device
tree with --dump-dtb, no KVM needed). --flat-*, --irqchip, --no-acpi and --virtio-cmdline are
x86_64's; on aarch64 the device tree describes every device.

Exit status of `run`: the guest's exit-port status ((value << 1) | 1, always odd; on aarch64
PSCI SYSTEM_RESET2 with god's vendor reset type, value in the cookie), 0 on a clean shutdown
(x86 ACPI S5, aarch64 PSCI SYSTEM_OFF) or when stopped by SIGINT/SIGTERM, and an even status
with a message on stderr when god or the guest fails (see STATUS_* in god.vcpu.runner and
docs/god.md).
"""

from __future__ import annotations

import argparse
import os
import sys


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with the terminal width taken from os as shutil would: argparse
    builds a formatter for every add_argument, and its default imports shutil (with bz2, lzma
    and zlib), ~4 ms of god's start-up."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _terminal_columns() - 2  # argparse's own margin
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else stdout's terminal, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(1).columns or 80  # stdout, as shutil asks
    except (ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-parsers (add_subparsers makes them of this class) use
    _HelpFormatter too."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def _int(s: str) -> int:
    return int(s, 0)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="god", description="a Python KVM virtual machine monitor")
    sub = p.add_subparsers(dest="cmd", required=True)
    kvm = sub.add_parser("kvm", help="KVM information")
    kvm_sub = kvm.add_subparsers(dest="kvm_cmd", required=True)
    info = kvm_sub.add_parser("info", help="API version, flavour and capabilities")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    run = sub.add_parser("run", help="boot a kernel")
    run.add_argument("kernel", help="bzImage, multiboot image, PVH ELF, or flat binary")
    run.add_argument("--initrd", default=None,
                     help="initrd / modules: 'FILE[ ARGS][,FILE2[ ARGS]]' (QEMU syntax)")
    run.add_argument("--append", default="", help="kernel command line")
    run.add_argument("--mem", type=int, default=128, metavar="MiB", help="guest RAM (default 128)")
    run.add_argument("--cpus", type=int, default=1, help="vCPUs (default 1; up to KVM_CAP_MAX_VCPUS)")
    run.add_argument("--serial", default="stdio",
                     help="console: stdio (default), unix:PATH (god listens), file:PATH, none")
    run.add_argument("--flat-addr", type=_int, default=None, metavar="ADDR",
                     help="load KERNEL as a flat binary at ADDR and jump there")
    run.add_argument("--flat-mode", type=int, choices=(16, 32, 64), default=64,
                     help="CPU mode for --flat-addr (default 64)")
    run.add_argument("--irqchip", choices=("split", "kernel"), default=None,
                     help="split (default): LAPIC in KVM, god's own 8259 PICs, IOAPIC and PIT; "
                          "kernel: KVM's in-kernel PIC, IOAPIC and PIT")
    run.add_argument("--trace-unassigned", action="store_true",
                     help="report the first access to each unassigned port/MMIO address")
    run.add_argument("--stats", action="store_true",
                     help="at exit, print god's device counters (e.g. the PIT's delivered, "
                          "coalesced and unacknowledged ticks) as one 'god: stats:' line")
    run.add_argument("--disk", action="append", default=[], metavar="PATH[,ro]",
                     help="virtio-blk disk on a raw image (repeatable; ',ro' = read-only)")
    run.add_argument("--vsock-uds", default=None, metavar="PATH",
                     help="virtio-vsock with Firecracker's hybrid host socket at PATH")
    run.add_argument("--vsock-cid", type=int, default=3, metavar="N",
                     help="guest CID of the vsock device (default 3, must be >= 3)")
    run.add_argument("--no-acpi", dest="acpi", action="store_false",
                     help="write no ACPI tables (the MP table stays)")
    run.add_argument("--virtio-cmdline", choices=("on", "off"), default="on",
                     help="append virtio_mmio.device= tokens to the command line (default on; "
                          "the devices are in the ACPI DSDT either way)")
    run.add_argument("--arch", default=None, metavar="ARCH",
                     help="x86_64 or aarch64 (default: the host's; another only with --dry-run)")
    run.add_argument("--dry-run", action="store_true",
                     help="aarch64: plan the boot (print it) without KVM, and stop")
    run.add_argument("--dump-dtb", default=None, metavar="FILE",
                     help="aarch64: also write the device tree god gives the guest to FILE")
    return p


def _kvm_info(as_json: bool) -> int:
    from god.kvm import Kvm, KvmError

    try:
        kvm = Kvm()
    except KvmError as e:
        print(f"god: {e}", file=sys.stderr)
        return 4
    caps = kvm.capabilities()
    devices = _device_support(kvm)
    if as_json:
        import json  # here, not at the top: json is ~2 ms of every `god run`'s start-up

        print(json.dumps({
            "arch": kvm.arch,
            "api_version": kvm.api_version, "flavour": kvm.flavour,
            "vcpu_mmap_size": kvm.vcpu_mmap_size, "max_vcpus": kvm.max_vcpus(),
            "capabilities": {c.name: {"value": v, "required": c.required, "why": c.why}
                             for c, v in caps},
            "devices": devices,
        }, indent=2))
    else:
        print(f"architecture:    {kvm.arch}")
        print(f"KVM API version: {kvm.api_version}")
        print(f"KVM flavour:     {kvm.flavour}")
        print(f"vCPUs:           {kvm.max_vcpus()}")
        for name, ok in devices.items():
            print(f"device {name}: {'yes' if ok else 'NO'}")
        print("capabilities god uses:")
        for c, v in caps:
            mark = "yes" if v else "NO "
            val = f" ({v})" if v not in (0, 1) else ""
            req = "required" if c.required else "optional"
            print(f"  {mark} {c.name:<28} {req:<8} {c.why}{val}")
    missing = [c.name for c, v in caps if c.required and not v]
    missing += [n for n, ok in devices.items() if not ok]
    kvm.close()
    if missing:
        print(f"god: missing required capabilities: {', '.join(missing)}", file=sys.stderr)
        return 4
    return 0


def _device_support(kvm) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    """KVM devices god needs on this architecture, probed with KVM_CREATE_DEVICE_TEST."""
    if kvm.arch != "aarch64":
        return {}
    from god.kvm import KvmError
    from god.kvm import arm64 as A

    try:
        vm = kvm.create_vm()
    except KvmError:
        return {"KVM_DEV_TYPE_ARM_VGIC_V3": False}
    try:
        vm.create_device(A.KVM_DEV_TYPE_ARM_VGIC_V3, test=True)
        ok = True
    except KvmError:
        ok = False
    finally:
        vm.close()
    return {"KVM_DEV_TYPE_ARM_VGIC_V3": ok}


def _modules(spec: str | None) -> list:  # type: ignore[type-arg]
    from god.boot import Module

    out = []
    if not spec:
        return out
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        path = item.split(" ", 1)[0]
        with open(path, "rb") as f:
            out.append(Module(f.read(), item))  # QEMU passes the whole item as the string
    return out


def _add_virtio(machine, a: argparse.Namespace) -> str:  # type: ignore[no-untyped-def]
    """Attach --disk/--vsock-uds devices; returns the command line with their
    virtio_mmio.device= tokens appended (docs/virtio.md)."""
    if not a.disk and not a.vsock_uds:
        return a.append  # god.virtio and what it imports are ~10 ms of start-up
    from god.virtio.attach import attach, parse_disk
    from god.virtio.blk import VirtioBlk
    from god.virtio.vsock import VirtioVsock

    tokens = []
    for spec in a.disk:
        path, ro = parse_disk(spec)
        tokens.append(attach(machine, VirtioBlk(path, read_only=ro))[1])
    if a.vsock_uds:
        tokens.append(attach(machine, VirtioVsock(a.vsock_uds, a.vsock_cid))[1])
    if a.virtio_cmdline == "off":
        tokens = []
    return " ".join([a.append] + tokens if a.append else tokens)


def _select_arch(a: argparse.Namespace) -> str:
    """The backend for this run; ValueError (a usage error) names what does not fit."""
    from god.arch import host_arch, normalize

    host = host_arch()
    arch = normalize(a.arch) if a.arch else host
    if arch != host and not a.dry_run:
        raise ValueError(f"--arch {arch} on a {host} host: KVM runs only the host's "
                         "architecture (use --dry-run to plan an aarch64 boot here)")
    if arch == "aarch64":
        given = [o for o, bad in (("--flat-addr", a.flat_addr is not None),
                                  ("--irqchip", a.irqchip is not None),
                                  ("--no-acpi", not a.acpi),
                                  ("--virtio-cmdline", a.virtio_cmdline != "on")) if bad]
        if given:
            raise ValueError(f"{', '.join(given)}: x86_64 options (aarch64 guests find "
                             "devices in the device tree)")
    elif a.dry_run or a.dump_dtb:
        raise ValueError("--dry-run/--dump-dtb plan aarch64 boots (use --arch aarch64)")
    return arch


def _run(a: argparse.Namespace) -> int:
    from god.vcpu.runner import STATUS_HOST_ERROR, STATUS_USAGE

    try:
        arch = _select_arch(a)
    except ValueError as e:
        print(f"god: error: {e}", file=sys.stderr)
        return STATUS_USAGE
    if arch == "aarch64":
        try:
            from god.arch.aarch64 import cli as arm_cli
        except ImportError as e:  # pragma: no cover - a broken install
            print(f"god: error: {e}", file=sys.stderr)
            return STATUS_HOST_ERROR
        return arm_cli.run(a)
    return _run_x86(a)


def _run_x86(a: argparse.Namespace) -> int:
    from god.boot import BootInputs, LoaderError
    from god.cli_run import host_error, run_until_exit
    from god.devices.console import open_console
    from god.kvm import KvmError
    from god.machine import Machine, MachineConfig

    try:
        with open(a.kernel, "rb") as f:
            kernel = f.read()
        modules = _modules(a.initrd)
        console = open_console(a.serial)
    except (OSError, ValueError) as e:
        return host_error(e)
    machine = None
    try:
        machine = Machine(MachineConfig(mem_mib=a.mem, cpus=a.cpus, console=console,
                                        trace_unassigned=a.trace_unassigned, acpi=a.acpi,
                                        irqchip=a.irqchip or "split"))
        machine.load(BootInputs(kernel, _add_virtio(machine, a), modules, kernel_path=a.kernel),
                     a.flat_addr, a.flat_mode)
    except (KvmError, LoaderError, ValueError, MemoryError, OSError) as e:
        return host_error(e, console, machine)
    return run_until_exit(machine, stats=a.stats)


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.cmd == "kvm":
        return _kvm_info(a.json)
    if a.cmd == "run":
        return _run(a)
    return 2


if __name__ == "__main__":
    sys.exit(main())
