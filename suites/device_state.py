"""The registers shared checks must put back, read without side effects: the state probes of
``vmm_shared_state`` (pytest_vmm/shared_state.py). The plugin reads a module's probe before and
after each of its shared checks and reboots the shared guest when they differ, so a device whose
"put back" is broken is reported by the check that broke it, not again by every later one.

A probe reads what the module's checks write and restore, not what runs on by itself (counters,
OUT pins, interrupt request bits, the RTC's update-in-progress flag), and not storage the checks
leave at a value of their own (the 16550's scratch register).
"""

from __future__ import annotations

from pytest_vmm import Machine
from pytest_vmm.agent.client import AgentError
from pytest_vmm.agent.ioseq import PortSeq
from pytest_vmm.agent.protocol import ErrorCode
from pytest_vmm.virtio.layout import DeviceId, Reg
from pytest_vmm.virtio.slots import find_slots

from .arm64_platform import GICD, GICR, SGI_BASE, UART
from .x86_platform import COM1, LAPIC, ioapic_read

State = dict[str, int]

# 82093AA §3.2.4: of a redirection entry's low dword, bits 12 (delivery status) and 14 (remote
# IRR) follow the line; the rest (vector, delivery and destination mode, polarity, trigger,
# mask) is what software wrote.
RTE_WRITTEN_BITS = 0x1FFFF & ~((1 << 12) | (1 << 14))
# The same without the vector: the agent writes a line's vector (0x40 + line) when it first arms
# it and leaves armed lines masked, so after the interrupt checks only how a line is routed
# (mask 16, trigger 15, polarity 13, destination mode 11, delivery mode 10:8) must be as before.
RTE_ROUTING_BITS = RTE_WRITTEN_BITS & ~0xFF


def _x86(machine: Machine) -> bool:
    return machine.config.hypervisor.arch == "x86_64"


def _ports(machine: Machine, ports: dict[str, tuple[int, int]]) -> State:
    """Each named (port, mask) read once: one ``ioseq`` where the stack has it, else one ``in``
    per port."""
    agent = machine.agent
    if "portseq" in machine.config.capabilities:
        seq = PortSeq()
        for port, _ in ports.values():
            seq.read(port)
        values = seq.run(agent)
    else:
        values = [agent.inb(port) for port, _ in ports.values()]
    return {name: value & mask for (name, (_, mask)), value in zip(ports.items(), values, strict=True)}


def ioapic_entries(machine: Machine, pins: tuple[int, ...], bits: int = RTE_WRITTEN_BITS) -> State:
    return {f"IOAPIC RTE {pin}": ioapic_read(machine.agent, 0x10 + 2 * pin) & bits for pin in pins}


def lapic_registers(machine: Machine, registers: dict[str, int]) -> State:
    """Intel SDM vol. 3A table 11-1 offsets."""
    return {f"LAPIC {name}": machine.agent.mmio_read(LAPIC + offset, 4) for name, offset in registers.items()}


def uart_lines(machine: Machine) -> State:
    """16550A IER, LCR, MCR of COM1 (the console's): reading them has no side effect. Nothing
    where the agent does not give them out (UNSUPPORTED: zosia's, whose Linux 8250 driver owns
    the UART)."""
    try:
        return _ports(machine, {"COM1 IER": (COM1 + 1, 0xFF), "COM1 LCR": (COM1 + 3, 0xFF),
                                "COM1 MCR": (COM1 + 4, 0x1F)})
    except AgentError as exc:
        if exc.code == ErrorCode.UNSUPPORTED:
            return {}
        raise


# ------------------------------------------------------------------ per-module probes
def pic8259(machine: Machine) -> State:
    """8259A OCW1 (IMR) and, through OCW3 RR/RIS, ISR of both controllers; then OCW3 selects IRR
    again, as ICW initialisation leaves it. PIIX4 ELCR1/2."""
    seq = PortSeq().read(0x21).read(0xA1).out(0x20, 0x0B).read(0x20).out(0xA0, 0x0B).read(0xA0)
    seq.out(0x20, 0x0A).out(0xA0, 0x0A).read(0x4D0).read(0x4D1)
    names = ("PIC master IMR", "PIC slave IMR", "PIC master ISR", "PIC slave ISR", "ELCR1", "ELCR2")
    return dict(zip(names, seq.run(machine.agent), strict=True))


def pit8254(machine: Machine) -> State:
    """8254 read-back command (0xee: status of channels 0-2, counts not latched): each status
    byte's RW, mode and BCD bits (5:0; OUT and null count follow the counter). Port 0x61 bits
    1:0, channel 2's gate and the speaker enable."""
    seq = PortSeq().out(0x43, 0xEE).read(0x40).read(0x41).read(0x42).read(0x61)
    *status, port61 = seq.run(machine.agent)
    state = {f"PIT channel {n} mode": value & 0x3F for n, value in enumerate(status)}
    state["port 0x61 gate/speaker"] = port61 & 0x03
    return state


def cmos_rtc(machine: Machine) -> State:
    """MC146818 registers A (bits 6:0; bit 7, UIP, follows the update cycle) and B."""
    a, b = PortSeq().out(0x70, 0x0A).read(0x71).out(0x70, 0x0B).read(0x71).run(machine.agent)
    return {"RTC register A": a & 0x7F, "RTC register B": b}


def i8042(machine: Machine) -> State:
    """The i8042's status bits 2 (system flag) and 4 (inhibit); not 3, which follows the kind of
    the last write. The command byte itself takes a command to read."""
    return _ports(machine, {"i8042 status": (0x64, 0x14)})


def uart16550(machine: Machine) -> State:
    return uart_lines(machine)


def lapic(machine: Machine) -> State:
    return lapic_registers(machine, {"TPR": 0x80, "SVR": 0xF0, "LVT LINT0": 0x350, "LVT LINT1": 0x360,
                                     "LVT error": 0x370, "TDCR": 0x3E0})


def ioapic(machine: Machine) -> State:
    """The spare pin (20) the register checks write and put back; the version register they
    write is read-only (a write that sticks fails the check that made it)."""
    return ioapic_entries(machine, (20,))


def mmio(machine: Machine) -> State:
    """test_mmio writes COM1's LCR and IOAPIC pin 13; on aarch64 it only writes virtio's
    read-only registers (a write that sticks fails the check that made it)."""
    if not _x86(machine):
        return {}
    return uart_lines(machine) | ioapic_entries(machine, (13,))


def interrupts(machine: Machine) -> State:
    """The lines the interrupt checks arm, hold and mask (PIT on pin 0 or 2, UART on 4, the
    unwired 13), and the task priority the agent keeps at 0."""
    if not _x86(machine):
        return {}
    return ioapic_entries(machine, (0, 2, 4, 13), RTE_ROUTING_BITS) | lapic_registers(machine, {"TPR": 0x80})


def timers(machine: Machine) -> State:
    """The PIT's IOAPIC pin (0 or 2) and the LAPIC timer's divide configuration."""
    if not _x86(machine):
        return {}
    return ioapic_entries(machine, (0, 2), RTE_ROUTING_BITS) | lapic_registers(machine, {"TDCR": 0x3E0})


def virtio_blk(machine: Machine) -> State:
    """Virtio 1.2 §4.2.2 of each block device: Status, InterruptStatus and queue 0's QueueReady,
    which a reset returns to 0 (§4.2.2.2: "Upon reset, the device MUST clear all bits in
    InterruptStatus and ready bits in the QueueReady register for all queues"), and which every
    check leaves reset; the routing of the IOAPIC pins the devices interrupt on. The queue
    addresses are left out: a reset need not clear them."""
    agent = machine.agent
    state: State = {}
    blks = [slot for slot in find_slots(agent) if slot.device_id == DeviceId.BLOCK]
    for slot in blks:
        name = f"virtio-blk@{slot.addr:#x}"
        state[f"{name} Status"] = agent.mmio_read(slot.addr + Reg.STATUS, 4)
        state[f"{name} InterruptStatus"] = agent.mmio_read(slot.addr + Reg.INTERRUPT_STATUS, 4)
        agent.mmio_write(slot.addr + Reg.QUEUE_SEL, 4, 0)
        state[f"{name} QueueReady[0]"] = agent.mmio_read(slot.addr + Reg.QUEUE_READY, 4)
    if _x86(machine):
        state |= ioapic_entries(machine, tuple(sorted({slot.gsi for slot in blks if slot.gsi < 24})), RTE_ROUTING_BITS)
    return state


# ------------------------------------------------------------------ aarch64
def _mmio_words(machine: Machine, registers: dict[str, int]) -> State:
    return {name: machine.agent.mmio_read(addr, 4) for name, addr in registers.items()}


def gicv3(machine: Machine) -> State:
    """GICv3 (ARM IHI 0069, 12.9 and 12.11): the distributor's control register, and the enable,
    active and priority registers holding the test SPI (96), PPI (20) and SGI (3) -- what the
    checks enable, activate and prioritise and must disable, deactivate and put back. Pending
    bits follow the lines and are left out."""
    return _mmio_words(machine, {
        "GICD_CTLR": GICD, "GICD_ISENABLER3": GICD + 0x10C, "GICD_ISACTIVER3": GICD + 0x30C,
        "GICD_IPRIORITYR24": GICD + 0x460,
        "GICR_ISENABLER0": GICR + SGI_BASE + 0x100, "GICR_ISACTIVER0": GICR + SGI_BASE + 0x300,
        "GICR_IPRIORITYR0": GICR + SGI_BASE + 0x400, "GICR_IPRIORITYR5": GICR + SGI_BASE + 0x414,
    })


def pl011(machine: Machine) -> State:
    """PL011 (ARM DDI 0183G, 3.3): the baud-rate divisors, line control, control and interrupt
    mask registers of the console UART."""
    return _mmio_words(machine, {"UARTIBRD": UART + 0x24, "UARTFBRD": UART + 0x28, "UARTLCR_H": UART + 0x2C,
                                 "UARTCR": UART + 0x30, "UARTIMSC": UART + 0x38})
