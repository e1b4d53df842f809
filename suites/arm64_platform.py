"""Addresses of the arm64 machine the ARM suites test: QEMU's ``virt`` memory map
(hw/arm/virt.c), which god's arm64 machine follows so the same guest runs on both."""

from __future__ import annotations

UART = 0x09000000  # the console PL011
UART_INTID = 33  # SPI 1 (the device tree's "interrupts = <0 1 4>")
GICD = 0x08000000
GICR = 0x080A0000  # vCPU 0's redistributor; each has RD_base + SGI_base (2 x 64 KiB)
GICR_STRIDE = 0x20000
SGI_BASE = 0x10000
VTIMER_INTID = 27  # PPI 11, the EL1 virtual timer (the device tree's timer node)
