"""The device tree god gives an arm64 guest: QEMU virt's nodes for the devices god has.

Bindings followed (Linux Documentation/devicetree/bindings/): arm/cpus.yaml and
arm/psci.yaml (enable-method "psci", compatible "arm,psci-0.2", method "hvc": KVM serves
PSCI from HVC), interrupt-controller/arm,gic-v3.yaml (#interrupt-cells 3: type 0 SPI /
1 PPI, number, flags; reg = GICD then the redistributor region), timer/arm,arch_timer.yaml
(four PPIs: secure phys, non-secure phys, virtual, hypervisor), serial/pl011.yaml
(compatible "arm,pl011", "arm,primecell", clocks uartclk + apb_pclk from a fixed-clock),
rtc/arm,pl031.yaml,
virtio/mmio.yaml, chosen (bootargs, stdout-path, linux,initrd-start/-end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from god.arch.aarch64 import layout as L
from god.boot.fdt import EMPTY, Node, strings, to_dtb, u32, u64

GIC_PHANDLE = 1
CLOCK_PHANDLE = 2
# #interrupt-cells = 3: <type number flags>
GIC_SPI, GIC_PPI = 0, 1
IRQ_TYPE_EDGE_RISING, IRQ_TYPE_LEVEL_HIGH = 1, 4
UART_CLOCK_HZ = 24_000_000  # QEMU virt's apb-pclk "clk24mhz"


@dataclass
class DtConfig:
    mem_bytes: int
    cpus: int = 1
    bootargs: str = ""
    initrd: tuple[int, int] | None = None       # (start, end) guest-physical
    virtio: list[tuple[int, int]] = field(default_factory=list)   # (base, spi)


def uart_path() -> str:
    return f"/pl011@{L.UART.base:x}"


def build(cfg: DtConfig) -> Node:
    root = Node()
    root.set("compatible", "linux,dummy-virt")
    root.set("model", "god arm64 virt")
    root.set("#address-cells", 2).set("#size-cells", 2)
    root.set("interrupt-parent", GIC_PHANDLE)

    psci = root.add("psci")
    psci.set("compatible", "arm,psci-0.2").set("method", "hvc")

    mem = root.add(f"memory@{L.RAM_BASE:x}")
    mem.set("device_type", "memory").set("reg", u64(L.RAM_BASE, cfg.mem_bytes))

    cpus = root.add("cpus")
    cpus.set("#address-cells", 1).set("#size-cells", 0)
    for i in range(cfg.cpus):
        aff = L.mpidr(i)
        cpu = cpus.add(f"cpu@{aff:x}")
        cpu.set("device_type", "cpu").set("compatible", "arm,armv8")
        cpu.set("reg", aff).set("enable-method", "psci")

    gic = root.add(f"intc@{L.GIC_DIST.base:x}")
    gic.set("compatible", "arm,gic-v3")
    gic.set("#interrupt-cells", 3).set("interrupt-controller", EMPTY)
    gic.set("#address-cells", 2).set("#size-cells", 2).set("ranges", EMPTY)
    gic.set("reg", u64(L.GIC_DIST.base, L.GIC_DIST.size,
                       L.GIC_REDIST.base, L.redist_size(cfg.cpus)))
    gic.set("phandle", GIC_PHANDLE)

    timer = root.add("timer")
    timer.set("compatible", "arm,armv8-timer")
    timer.set("interrupts", u32(*[c for ppi in L.TIMER_PPIS
                                  for c in (GIC_PPI, ppi, IRQ_TYPE_LEVEL_HIGH)]))
    timer.set("always-on", EMPTY)

    clk = root.add("apb-pclk")
    clk.set("compatible", "fixed-clock").set("#clock-cells", 0)
    clk.set("clock-frequency", UART_CLOCK_HZ).set("clock-output-names", "clk24mhz")
    clk.set("phandle", CLOCK_PHANDLE)

    uart = root.add(uart_path()[1:])
    uart.set("compatible", strings("arm,pl011", "arm,primecell"))
    uart.set("reg", u64(L.UART.base, L.UART.size))
    uart.set("interrupts", u32(GIC_SPI, L.UART_SPI, IRQ_TYPE_LEVEL_HIGH))
    uart.set("clocks", u32(CLOCK_PHANDLE, CLOCK_PHANDLE))
    uart.set("clock-names", strings("uartclk", "apb_pclk"))

    rtc = root.add(f"pl031@{L.RTC.base:x}")
    rtc.set("compatible", strings("arm,pl031", "arm,primecell"))
    rtc.set("reg", u64(L.RTC.base, L.RTC.size))
    rtc.set("interrupts", u32(GIC_SPI, L.RTC_SPI, IRQ_TYPE_LEVEL_HIGH))
    rtc.set("clocks", u32(CLOCK_PHANDLE)).set("clock-names", "apb_pclk")

    for base, spi in cfg.virtio:
        v = root.add(f"virtio_mmio@{base:x}")
        v.set("compatible", "virtio,mmio").set("reg", u64(base, L.VIRTIO_MMIO_SIZE))
        # god's transport drives a level (virtio/mmio.py): up while InterruptStatus != 0
        v.set("interrupts", u32(GIC_SPI, spi, IRQ_TYPE_LEVEL_HIGH))
        v.set("dma-coherent", EMPTY)

    chosen = root.add("chosen")
    chosen.set("bootargs", cfg.bootargs)
    chosen.set("stdout-path", uart_path())
    if cfg.initrd is not None:
        chosen.set("linux,initrd-start", u64(cfg.initrd[0]))
        chosen.set("linux,initrd-end", u64(cfg.initrd[1]))
    return root


def dtb(cfg: DtConfig) -> bytes:
    return to_dtb(build(cfg))
