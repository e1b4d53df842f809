"""Putting virtio-mmio devices into a god Machine, and announcing them to the guest.

Each device gets a 4 KiB-aligned slot in the MMIO window (only the first 0x200 bytes are
registers), a GSI from VIRTIO_GSIS, an ioeventfd per queue on QueueNotify, an entry in the
ACPI DSDT (boot/acpi.py: _HID "LNRO0005" with the window and the GSI, as QEMU's microvm), and
a token

    virtio_mmio.device=<size>@<addr>:<gsi>

for the kernel command line. Guests find the devices by either table: Debian's kernel by
ACPI (it lacks CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES), our own kernels by the token
(docs/virtio.md). A Linux with both would see each device twice (the second probe fails
with EBUSY), so `god run --virtio-cmdline off` leaves the tokens out. Devices are numbered
in command-line order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from god.boot.acpi import MmioDevice
from god.devices.diag import say
from god.kvm import KvmError
from god.virtio.device import VirtioDevice
from god.virtio.mmio import MMIO_SLOT_SIZE, R_QUEUE_NOTIFY, VirtioMmio

if TYPE_CHECKING:
    from god.machine import Machine

# ISA-range GSIs no god device uses (0 PIT, 1 keyboard, 4 COM1, 8 RTC, 9 ACPI SCI, 12 mouse;
# 3 is COM2's, which god does not have).
VIRTIO_GSIS = (5, 6, 7, 10, 11, 14, 15, 3)


def attach(machine: Machine, device: VirtioDevice) -> tuple[VirtioMmio, str]:
    """Register device on machine's MMIO bus; returns the transport and its cmdline token."""
    transports: list[VirtioMmio] = machine.virtio
    # The architecture's Machine decides the window and the interrupt: on x86 a slot of its
    # MMIO window and a GSI of VIRTIO_GSIS, on arm64 QEMU virt's transport n and SPI 16 + n.
    base, gsi = machine.place_virtio(len(transports), MMIO_SLOT_SIZE)

    def ioeventfd(fd: int, queue: int) -> bool:
        try:
            machine.vm.ioeventfd(fd, base + R_QUEUE_NOTIFY, 4, datamatch=queue)
            return True
        except KvmError as e:  # still correct without it: the MMIO exit writes the eventfd
            say(f"virtio: no ioeventfd for {device.name} queue {queue}: {e}")
            return False

    t = VirtioMmio(device, machine.mem, machine.irq_line(gsi), ioeventfd)
    machine.mmio.register(base, MMIO_SLOT_SIZE, t)
    transports.append(t)
    machine.virtio_slots.append(MmioDevice(base, MMIO_SLOT_SIZE, gsi))
    return t, f"virtio_mmio.device={MMIO_SLOT_SIZE}@{base:#x}:{gsi}"


def parse_disk(spec: str) -> tuple[str, bool]:
    """--disk PATH[,ro] -> (path, read_only)."""
    path, _, opts = spec.partition(",")
    flags = {o.strip() for o in opts.split(",") if o.strip()}
    unknown = flags - {"ro", "rw"}
    if unknown or not path:
        raise ValueError(f"--disk {spec!r}: expected PATH[,ro]")
    return path, "ro" in flags
