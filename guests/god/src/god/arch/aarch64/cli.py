"""`god run` for the aarch64 backend (god.cli parses; this boots or, with --dry-run, plans).

--dry-run needs no KVM and runs on any host: it decides the kernel format and addresses
exactly as a boot would (boot.plan), builds the device tree for the same devices (the
every virtio-mmio slot, as a boot lists them), prints the plan and writes the DTB to --dump-dtb.
"""

from __future__ import annotations

import argparse

from god.arch.aarch64 import boot as B
from god.arch.aarch64 import devicetree as DT
from god.arch.aarch64 import layout as L
from god.boot.errors import LoaderError


def _check_disks(a: argparse.Namespace) -> None:
    """--disk specs fail here as a boot would fail on them (the device tree lists every slot)."""
    from god.virtio.attach import parse_disk

    for spec in a.disk:
        parse_disk(spec)


def dry_run(a: argparse.Namespace, kernel: bytes, initrd: bytes | None) -> int:
    mem_bytes = a.mem << 20
    p = B.plan(kernel, mem_bytes, len(initrd) if initrd is not None else None)
    _check_disks(a)
    dtb = DT.dtb(DT.DtConfig(mem_bytes, a.cpus, a.append, p.initrd_range, L.virtio_transports()))
    if a.dump_dtb:
        with open(a.dump_dtb, "wb") as f:
            f.write(dtb)
    print(f"arch aarch64 format {p.fmt} load {p.load_addr:#x} end {p.kernel_end:#x} "
          f"entry {p.entry:#x} dtb {p.dtb_addr:#x} ({len(dtb)} bytes)"
          + (f" initrd {p.initrd_addr:#x}+{p.initrd_size:#x}" if p.initrd_addr else ""))
    return 0


def run(a: argparse.Namespace) -> int:
    from god.boot import BootInputs
    from god.cli import _modules
    from god.cli_run import host_error, run_until_exit
    from god.devices.console import open_console

    try:
        with open(a.kernel, "rb") as f:
            kernel = f.read()
        modules = _modules(a.initrd)
        if len(modules) > 1:
            raise ValueError("arm64 boots with one initrd (--initrd FILE)")
    except (OSError, ValueError) as e:
        return host_error(e)
    initrd = modules[0].data if modules else None
    if a.dry_run:
        try:
            return dry_run(a, kernel, initrd)
        except (LoaderError, ValueError, OSError) as e:
            return host_error(e)
    from god.arch.aarch64.machine import Machine, MachineConfig
    from god.kvm import KvmError
    from god.memory import GuestMemoryError
    from god.virtio.attach import attach, parse_disk
    from god.virtio.blk import VirtioBlk
    from god.virtio.vsock import VirtioVsock

    try:
        console = open_console(a.serial)
    except (OSError, ValueError) as e:
        return host_error(e)
    machine = None
    try:
        machine = Machine(MachineConfig(mem_mib=a.mem, cpus=a.cpus, console=console,
                                        trace_unassigned=a.trace_unassigned))
        for spec in a.disk:
            path, ro = parse_disk(spec)
            attach(machine, VirtioBlk(path, read_only=ro))
        if a.vsock_uds:
            attach(machine, VirtioVsock(a.vsock_uds, a.vsock_cid))
        machine.load(BootInputs(kernel, a.append, modules, kernel_path=a.kernel))
        if a.dump_dtb:
            # the same tree load() wrote: read it back from guest RAM
            p = B.plan(kernel, machine.mem_bytes, len(initrd) if initrd is not None else None)
            size = int.from_bytes(machine.mem.read(p.dtb_addr + 4, 4), "big")
            with open(a.dump_dtb, "wb") as out:
                out.write(machine.mem.read(p.dtb_addr, size))
    except (KvmError, LoaderError, ValueError, MemoryError, OSError, GuestMemoryError) as e:
        return host_error(e, console, machine)
    return run_until_exit(machine, stats=a.stats)
