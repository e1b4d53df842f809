"""The arm64 machine's memory map and interrupt numbers: those of QEMU's `virt` board
(hw/arm/virt.c, base_memmap[] and a15irqmap[]), so a guest built for `-M virt` runs on god
unchanged. Only the devices god has are listed (the virtio-mmio window always holds virt's 32
transports, empty ones as placeholders); everything else is unmapped (a guest access there
stops the machine with a `god:` message).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Window:
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size


GIC_DIST = Window(0x0800_0000, 0x0001_0000)
GIC_REDIST = Window(0x080A_0000, 0x00F6_0000)   # room for 123 redistributors
GICR_STRIDE = 0x2_0000                          # RD_base + SGI_base, 64 KiB each (GICv3)
UART = Window(0x0900_0000, 0x0000_1000)         # PL011
RTC = Window(0x0901_0000, 0x0000_1000)          # PL031
VIRTIO_MMIO_BASE = 0x0A00_0000
VIRTIO_MMIO_SIZE = 0x200                        # one transport's window
VIRTIO_MMIO_COUNT = 32                          # NUM_VIRTIO_TRANSPORTS
RAM_BASE = 0x4000_0000
RAM_MAX = 255 * GiB                             # QEMU virt's LEGACY_RAMLIMIT

# SPI numbers (INTID = 32 + SPI), a15irqmap[]
UART_SPI = 1
RTC_SPI = 2
VIRTIO_SPI_BASE = 16                            # transport n on SPI 16 + n

# Architected timer PPIs as the device tree lists them (PPI n = INTID 16 + n):
# secure physical 13 (29), non-secure physical 14 (30), virtual 11 (27), hypervisor 10 (26).
TIMER_PPIS = (13, 14, 11, 10)

# SPIs the vGIC is sized for: QEMU virt's NUM_IRQS (256) SPIs. NR_IRQS counts from INTID 0.
NUM_SPIS = 256
NR_IRQS = 32 + NUM_SPIS

MAX_CPUS = GIC_REDIST.size // GICR_STRIDE       # 123


def virtio_transports() -> list[tuple[int, int]]:
    """(base, SPI) of every transport slot; all are in the device tree, as on QEMU virt."""
    return [(virtio_window(n).base, VIRTIO_SPI_BASE + n) for n in range(VIRTIO_MMIO_COUNT)]


def virtio_window(n: int) -> Window:
    if not 0 <= n < VIRTIO_MMIO_COUNT:
        raise ValueError(f"at most {VIRTIO_MMIO_COUNT} virtio-mmio transports")
    return Window(VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SIZE)


def redist_size(cpus: int) -> int:
    return cpus * GICR_STRIDE


def mpidr(index: int) -> int:
    """The MPIDR_EL1 affinity KVM gives vCPU index (Aff0 = 4 bits, then Aff1, Aff2): what
    the device tree's cpu@N reg must say. KVM: reset_mpidr() in arch/arm64/kvm/sys_regs.c."""
    return ((index & 0x0F) | (((index >> 4) & 0xFF) << 8) | (((index >> 12) & 0xFF) << 16))
