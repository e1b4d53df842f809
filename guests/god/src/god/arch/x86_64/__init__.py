"""The x86_64 backend: god's PC-like machine (8259/IOAPIC/PIT or KVM's, 16550 COM1, the
exit port, ACPI/MP tables; bzImage, multiboot, PVH and flat loaders).

The code predates the architecture split and stays where it was (god.machine, god.boot,
god.irqchip, god.devices); this package is the x86_64 face of the god.arch interface.
"""

from __future__ import annotations

from god.boot import layout, load_kernel
from god.machine import Machine, MachineConfig

NAME = "x86_64"

__all__ = ["NAME", "Machine", "MachineConfig", "layout", "load_kernel"]
