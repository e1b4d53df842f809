"""Finding virtio-mmio devices from the guest agent: the slots the kernel command line
announces (``virtio_mmio.device=<size>@<addr>:<gsi>``, what god and QEMU microvm both
append), and the agent's DMA area for rings and buffers."""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

from pytest_vmm.agent.client import AgentClient, AgentError
from pytest_vmm.virtio.access import AgentMemory, AgentRegisters, Arena
from pytest_vmm.virtio.driver import MmioDevice
from pytest_vmm.virtio.layout import MAGIC_VALUE, MMIO_SLOT_SIZE, Reg


@dataclass(frozen=True)
class Slot:
    addr: int
    size: int
    gsi: int
    device_id: int


# QEMU microvm (hw/i386/microvm.c): transports of 0x200 bytes from 0xfeb00000; with one
# IOAPIC there are 8 on GSIs 16-23, with the second IOAPIC (0xfec10000, ACPI on) 24 on
# GSIs 24-47 (seen on QEMU 7.2: devices fill the last slots, GSI = base + slot index). Its command line only
# announces them to a Linux kernel, so for other kernels they are found by scanning.
MICROVM_BASE = 0xFEB00000
MICROVM_IOAPIC2 = 0xFEC10000
IOAPIC_VERSION_REG = 1


def announced_slots(agent: AgentClient) -> list[Slot]:
    """Every slot on the command line, with the DeviceID read from it (0: no device)."""
    first = agent.request("vmmio", i=0)
    slots = []
    for i in range(first.int("n")):
        reply = first if i == 0 else agent.request("vmmio", i=i)
        addr = reply.int("addr")
        slots.append(Slot(addr, reply.int("size"), reply.int("gsi"), agent.mmio_read(addr + Reg.DEVICE_ID, 4)))
    return slots


def microvm_slots(agent: AgentClient) -> list[Slot]:
    """QEMU microvm's transports that have a device behind them."""
    agent.mmio_write(MICROVM_IOAPIC2, 4, IOAPIC_VERSION_REG)
    two_ioapics = agent.mmio_read(MICROVM_IOAPIC2 + 0x10, 4) not in (0, 0xFFFFFFFF)
    count, gsi_base = (24, 24) if two_ioapics else (8, 16)
    slots = []
    for i in range(count):
        addr = MICROVM_BASE + MMIO_SLOT_SIZE * i
        if agent.mmio_read(addr + Reg.MAGIC_VALUE, 4) != MAGIC_VALUE:
            continue
        device_id = agent.mmio_read(addr + Reg.DEVICE_ID, 4)
        if device_id:
            slots.append(Slot(addr, MMIO_SLOT_SIZE, gsi_base + i, device_id))
    return slots


# A machine's devices do not change while it runs, and a scan is a dozen agent requests:
# found once per agent (one agent per machine), reused by every check on a shared guest.
_FOUND: WeakKeyDictionary[AgentClient, list[Slot]] = WeakKeyDictionary()


def find_slots(agent: AgentClient) -> list[Slot]:
    """Devices the command line announces, else QEMU microvm's by scanning."""
    if agent not in _FOUND:
        _FOUND[agent] = _scan(agent)
    return list(_FOUND[agent])


def _scan(agent: AgentClient) -> list[Slot]:
    announced = [s for s in announced_slots(agent) if s.device_id]
    if announced:
        return announced
    try:
        return microvm_slots(agent)
    except AgentError:  # not a microvm: nothing (or a fault) at its addresses
        return []


def dma_arena(agent: AgentClient) -> Arena:
    base, size = agent.dma_area()
    return Arena(base, base + size)


def device(agent: AgentClient, slot: Slot, part: int = 0, parts: int = 1) -> MmioDevice:
    """A driver for ``slot`` whose rings and buffers live in part ``part`` of ``parts`` of
    the agent's DMA area (one part per device, so a device left running by an earlier check
    never shares memory with the one under test)."""
    whole = dma_arena(agent)
    step = ((whole.end - whole.start) // parts) & ~0xFFF
    start = whole.start + step * part
    return MmioDevice(AgentRegisters(agent, slot.addr), AgentMemory(agent), Arena(start, start + step), slot.gsi)
