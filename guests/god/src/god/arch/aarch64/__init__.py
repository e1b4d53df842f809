"""The aarch64 backend: QEMU virt's layout on KVM/arm64 (vGICv3, PSCI, architected timer
in the kernel; PL011 and virtio-mmio in god), booted by the Linux arm64 Image protocol or
as an ELF/raw kernel with a device tree god writes.

Importing the package imports no KVM code: layout, devicetree and boot run anywhere
(`god run --arch aarch64 --dry-run --dump-dtb FILE` on an x86 host); machine needs
/dev/kvm on an arm64 host.
"""

from __future__ import annotations

NAME = "aarch64"
