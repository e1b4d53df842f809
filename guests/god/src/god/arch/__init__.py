"""Per-architecture parts of god, split like rust-vmm's vm-vcpu-ref (x86_64/, aarch64/).

What differs between architectures - the memory map, the interrupt controller, the platform
devices, the boot protocol, vCPU set-up and the architecture's exits - lives in
god.arch.<name>; buses, guest memory, virtio, consoles and the CLI are shared. The Machine
of each architecture has the same narrow surface the CLI and virtio.attach use:

  Machine(MachineConfig)        KVM VM, RAM, irqchip, platform devices, vCPUs
  .load(BootInputs, ...) -> str put the kernel (and DTB/ACPI tables) in RAM, set entry regs
  .run() -> VmExit              block until the guest stops; .request_stop(VmExit)
  .irq_line(n), .place_virtio(n, size), .mmio, .mem, .vm, .virtio, .virtio_slots
                                (for god.virtio.attach)
  .close()

Importing this package costs nothing: each backend is imported only when selected.
"""

from __future__ import annotations

import os
from types import ModuleType

ARCHES = ("x86_64", "aarch64")
# uname machine spellings -> god's architecture names
_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def normalize(name: str) -> str:
    """An architecture name as god spells it; ValueError names the accepted ones."""
    arch = _ALIASES.get(name.lower())
    if arch is None:
        raise ValueError(f"architecture {name!r}: god supports {', '.join(ARCHES)} "
                         f"(also spelled {', '.join(a for a in _ALIASES if a not in ARCHES)})")
    return arch


def host_arch(machine: str | None = None) -> str:
    """The architecture god runs guests of on this host (KVM runs only the host's own)."""
    # os.uname(), what platform.machine() returns on POSIX, without platform's ~1.5 ms import.
    return normalize(machine if machine is not None else os.uname().machine)


def backend(arch: str) -> ModuleType:
    """The backend package of arch (god.arch.x86_64 or god.arch.aarch64)."""
    arch = normalize(arch)
    if arch == "aarch64":
        from god.arch import aarch64 as mod
    else:
        from god.arch import x86_64 as mod
    return mod
