"""The arm64 machine's layout and device tree against QEMU's virt board (hw/arm/virt.c:
base_memmap[], a15irqmap[]; the numbers are written here from QEMU's source) and the
devicetree bindings, decoded by dtc."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from god.arch.aarch64 import devicetree as DT
from god.arch.aarch64 import layout as L

# hw/arm/virt.c (QEMU 7.2): base_memmap[] and a15irqmap[]
QEMU_VIRT = {
    "GIC_DIST": (0x08000000, 0x00010000), "GIC_REDIST": (0x080A0000, 0x00F60000),
    "UART": (0x09000000, 0x00001000), "RTC": (0x09010000, 0x00001000),
    "MMIO": (0x0A000000, 0x00000200), "MEM": 0x40000000,
}
QEMU_IRQ = {"UART": 1, "RTC": 2, "MMIO": 16}
NUM_VIRTIO_TRANSPORTS = 32


def test_memory_map_is_qemu_virt():
    assert (L.GIC_DIST.base, L.GIC_DIST.size) == QEMU_VIRT["GIC_DIST"]
    assert (L.GIC_REDIST.base, L.GIC_REDIST.size) == QEMU_VIRT["GIC_REDIST"]
    assert (L.UART.base, L.UART.size) == QEMU_VIRT["UART"]
    assert (L.RTC.base, L.RTC.size) == QEMU_VIRT["RTC"]
    assert L.RAM_BASE == QEMU_VIRT["MEM"]
    assert L.VIRTIO_MMIO_COUNT == NUM_VIRTIO_TRANSPORTS
    for n in (0, 1, 31):
        w = L.virtio_window(n)
        assert (w.base, w.size) == (0x0A000000 + 0x200 * n, 0x200)
    with pytest.raises(ValueError):
        L.virtio_window(32)


def test_interrupts_are_qemu_virt():
    assert (L.UART_SPI, L.RTC_SPI, L.VIRTIO_SPI_BASE) == (QEMU_IRQ["UART"], QEMU_IRQ["RTC"],
                                                        QEMU_IRQ["MMIO"])
    # arch timer PPIs (ARM ARM D11; QEMU's ARCH_TIMER_*_IRQ): S 13, NS 14, virt 11, hyp 10
    assert L.TIMER_PPIS == (13, 14, 11, 10)
    # GICv3 redistributor: two 64 KiB frames per CPU (GICv3 architecture spec 12.10)
    assert L.GICR_STRIDE == 2 * 64 * 1024 and L.MAX_CPUS == 123


def test_mpidr_affinity_of_vcpu_index():
    """KVM's reset MPIDR: Aff0 = index & 0xf, Aff1 = index >> 4 (sys_regs.c reset_mpidr)."""
    assert [L.mpidr(i) for i in (0, 1, 15, 16, 17)] == [0, 1, 15, 0x100, 0x101]


@pytest.fixture
def dts(tmp_path):
    if shutil.which("dtc") is None:
        pytest.skip("dtc not installed")
    cfg = DT.DtConfig(256 << 20, 2, "console=ttyAMA0 root=/dev/vda", (0x4400_0000, 0x4410_0000),
                      L.virtio_transports())
    f = tmp_path / "virt.dtb"
    f.write_bytes(DT.dtb(cfg))
    return subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(f)], capture_output=True,
                          text=True, check=True).stdout


def node(dts: str, name: str) -> str:
    start = dts.index(f"\t{name} {{")
    return dts[start:dts.index("\n\t};", start)]


def test_dt_memory_cpus_psci(dts):
    assert "reg = <0x00 0x40000000 0x00 0x10000000>;" in node(dts, "memory@40000000")
    cpus = node(dts, "cpus")
    assert cpus.count('enable-method = "psci";') == 2 and "cpu@1 {" in cpus
    psci = node(dts, "psci")
    assert 'compatible = "arm,psci-0.2";' in psci and 'method = "hvc";' in psci


def test_dt_gic_timer_uart(dts):
    gic = node(dts, "intc@8000000")
    assert 'compatible = "arm,gic-v3";' in gic and "#interrupt-cells = <0x03>;" in gic
    assert "interrupt-controller;" in gic
    assert "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x40000>;" in gic
    timer = node(dts, "timer")
    assert "interrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>;" in timer
    uart = node(dts, "pl011@9000000")
    assert 'compatible = "arm,pl011\\0arm,primecell";' in uart
    assert "interrupts = <0x00 0x01 0x04>;" in uart  # SPI 1 = INTID 33
    assert 'clock-names = "uartclk\\0apb_pclk";' in uart
    assert 'compatible = "fixed-clock";' in node(dts, "apb-pclk")


def test_dt_rtc(dts):
    rtc = node(dts, "pl031@9010000")
    assert 'compatible = "arm,pl031\\0arm,primecell";' in rtc
    assert "interrupts = <0x00 0x02 0x04>;" in rtc  # SPI 2 = INTID 34


def test_dt_virtio_and_chosen(dts):
    assert "interrupts = <0x00 0x11 0x04>;" in node(dts, "virtio_mmio@a000200")
    # hw/arm/virt.c create_virtio_devices(): every one of the 32 transports has a node
    assert dts.count("virtio_mmio@") == NUM_VIRTIO_TRANSPORTS
    assert "interrupts = <0x00 0x2f 0x04>;" in node(dts, "virtio_mmio@a003e00")  # SPI 47
    chosen = node(dts, "chosen")
    assert 'bootargs = "console=ttyAMA0 root=/dev/vda";' in chosen
    assert 'stdout-path = "/pl011@9000000";' in chosen
    assert "linux,initrd-start = <0x00 0x44000000>;" in chosen
    assert "linux,initrd-end = <0x00 0x44100000>;" in chosen
