"""The x86 guest-physical memory map god builds, in one place.

  0x00000500  boot GDT
  0x00001000  PML4, 0x2000 PDPT, 0x3000-0x6fff four PDs (identity map of 4 GiB, 2 MiB pages)
  0x00007000  boot information: zero page / hvm_start_info / multiboot info (4 KiB)
  0x00008000  free for the guest (AP trampolines, stacks) up to 0x9f000
  0x0009f000  initial stack top for flat binaries
  0x0009fc00  EBDA (reserved in the memory map)
  0x000a0000  legacy VGA/ROM hole (RAM here, reserved in the memory map from 0xf0000)
  0x000f0000  ACPI tables, RSDP first (boot/acpi.py): in the BIOS area an OS scans, reserved
  0x00020000  command line (up to 64 KiB) and module strings
  0x00100000  kernel load address (1 MiB) unless the image asks for another
  ...         RAM up to min(mem, 3 GiB); initrd / PVH modules at the top of it
  0xd0000000  MMIO window for devices (virtio-mmio slots are allocated here)
  0xfec00000  IOAPIC, 0xfee00000 LAPIC (in-kernel)
  4 GiB+      RAM beyond 3 GiB
"""

from __future__ import annotations

GDT_ADDR = 0x500
PML4_ADDR = 0x1000
PDPT_ADDR = 0x2000
PD_ADDR = 0x3000
BOOT_INFO_ADDR = 0x7000
BOOT_INFO_SIZE = 0x1000
FLAT_STACK_TOP = 0x9F000
EBDA_ADDR = 0x9FC00
CMDLINE_ADDR = 0x20000
CMDLINE_MAX = 0x10000
KERNEL_ADDR = 0x100000
ACPI_ADDR = 0xF0000   # the reserved 0xF0000-0xFFFFF entry of memory_map()
ACPI_SIZE = 0x10000
LOW_RAM_LIMIT = 3 << 30
HIGH_RAM_BASE = 4 << 30
MMIO_BASE = 0xD0000000
MMIO_SIZE = 0x10000000
IOAPIC_ADDR = 0xFEC00000
LAPIC_ADDR = 0xFEE00000

E820_RAM, E820_RESERVED = 1, 2
PAGE = 0x1000


def ram_layout(mem_bytes: int) -> list[tuple[int, int]]:
    """Guest RAM regions (gpa, size): below the 3-4 GiB device hole, then above 4 GiB."""
    low = min(mem_bytes, LOW_RAM_LIMIT)
    out = [(0, low)]
    if mem_bytes > low:
        out.append((HIGH_RAM_BASE, mem_bytes - low))
    return out


def memory_map(mem_bytes: int) -> list[tuple[int, int, int]]:
    """The e820-style map given to every loader: (addr, size, type)."""
    layout = ram_layout(mem_bytes)
    low = layout[0][1]
    out = [(0, EBDA_ADDR, E820_RAM), (EBDA_ADDR, 0xA0000 - EBDA_ADDR, E820_RESERVED),
           (0xF0000, 0x10000, E820_RESERVED), (KERNEL_ADDR, low - KERNEL_ADDR, E820_RAM)]
    if len(layout) > 1:
        out.append((layout[1][0], layout[1][1], E820_RAM))
    return out


def align_up(v: int, a: int) -> int:
    return (v + a - 1) & ~(a - 1)


def align_down(v: int, a: int) -> int:
    return v & ~(a - 1)
