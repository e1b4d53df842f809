"""The `god` command.

  god kvm info [--json]
  god run KERNEL [--initrd F[,F2...]] [--append S] [--mem MiB] [--cpus N]
                 [--serial stdio|unix:PATH|file:PATH|none]
                 [--flat-addr ADDR --flat-mode 16|32|64] [--trace-unassigned]
                 [--irqchip split|kernel]
                 [--disk PATH[,ro]]... [--vsock-uds PATH [--vsock-cid N]]
                 [--no-acpi] [--virtio-cmdline on|off]

Exit status of `run`: the guest's exit-port status ((value << 1) | 1, always odd), 0 on a
clean shutdown or when stopped by SIGINT/SIGTERM, and an even status with a message on stderr
when god or the guest fails (see STATUS_* in god.vcpu.runner and docs/god.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys


def _int(s: str) -> int:
    return int(s, 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="god", description="a Python KVM virtual machine monitor")
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
    run.add_argument("--irqchip", choices=("split", "kernel"), default="split",
                     help="split (default): LAPIC in KVM, god's own 8259 PICs, IOAPIC and PIT; "
                          "kernel: KVM's in-kernel PIC, IOAPIC and PIT")
    run.add_argument("--trace-unassigned", action="store_true",
                     help="report the first access to each unassigned port/MMIO address")
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
    return p


def _kvm_info(as_json: bool) -> int:
    from god.kvm import Kvm, KvmError

    try:
        kvm = Kvm()
    except KvmError as e:
        print(f"god: {e}", file=sys.stderr)
        return 4
    caps = kvm.capabilities()
    if as_json:
        print(json.dumps({
            "api_version": kvm.api_version, "flavour": kvm.flavour,
            "vcpu_mmap_size": kvm.vcpu_mmap_size, "max_vcpus": kvm.max_vcpus(),
            "capabilities": {c.name: {"value": v, "required": c.required, "why": c.why}
                             for c, v in caps},
        }, indent=2))
    else:
        print(f"KVM API version: {kvm.api_version}")
        print(f"KVM flavour:     {kvm.flavour}")
        print(f"vCPUs:           {kvm.max_vcpus()}")
        print("capabilities god uses:")
        for c, v in caps:
            mark = "yes" if v else "NO "
            val = f" ({v})" if v not in (0, 1) else ""
            req = "required" if c.required else "optional"
            print(f"  {mark} {c.name:<28} {req:<8} {c.why}{val}")
    missing = [c.name for c, v in caps if c.required and not v]
    kvm.close()
    if missing:
        print(f"god: missing required capabilities: {', '.join(missing)}", file=sys.stderr)
        return 4
    return 0


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


def _run(a: argparse.Namespace) -> int:
    from god.boot import BootInputs, LoaderError
    from god.devices.console import open_console
    from god.kvm import KvmError
    from god.machine import Machine, MachineConfig
    from god.vcpu.runner import STATUS_HOST_ERROR, STATUS_OK, VmExit

    try:
        with open(a.kernel, "rb") as f:
            kernel = f.read()
        modules = _modules(a.initrd)
        console = open_console(a.serial)
    except (OSError, ValueError) as e:
        print(f"god: error: {e}", file=sys.stderr)
        return STATUS_HOST_ERROR
    machine = None
    try:
        machine = Machine(MachineConfig(mem_mib=a.mem, cpus=a.cpus, console=console,
                                        trace_unassigned=a.trace_unassigned, acpi=a.acpi,
                                        irqchip=a.irqchip))
        machine.load(BootInputs(kernel, _add_virtio(machine, a), modules, kernel_path=a.kernel),
                     a.flat_addr, a.flat_mode)
    except (KvmError, LoaderError, ValueError, MemoryError, OSError) as e:
        console.close()
        if machine is not None:
            machine.close()
        print(f"god: error: {e}", file=sys.stderr)
        return STATUS_HOST_ERROR

    def on_signal(signum: int, frame: object) -> None:
        assert machine is not None
        machine.request_stop(VmExit(STATUS_OK, f"terminating on signal {signum}", "signal"))

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        result = machine.run()
    finally:
        machine.close()
    if result.message:
        print(f"god: {result.message}", file=sys.stderr)
    return result.status


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.cmd == "kvm":
        return _kvm_info(a.json)
    if a.cmd == "run":
        return _run(a)
    return 2


if __name__ == "__main__":
    sys.exit(main())
