"""PL011 UART conformance (ARM PrimeCell UART (PL011) Technical Reference Manual, ARM DDI 0183G):
identification registers, the flag register at rest, baud-rate and line-control read-back, the
raw/masked interrupt status and its clear register, and the receive interrupt delivered through
the GIC. The console UART is the one tested; every check leaves it as it found it."""

from __future__ import annotations

import pytest

from pytest_vmm import Machine

from . import device_state
from .arm64_platform import UART, UART_INTID

FR, IBRD, FBRD, LCR_H, IMSC, RIS, MIS = 0x18, 0x24, 0x28, 0x2C, 0x38, 0x3C, 0x40
FR_TXFE, FR_RXFF, FR_TXFF, FR_RXFE, FR_BUSY = 1 << 7, 1 << 6, 1 << 5, 1 << 4, 1 << 3
TXIM, RXIM, RTIM = 1 << 5, 1 << 4, 1 << 6

pytestmark = [pytest.mark.vmm_arch("aarch64"), pytest.mark.vmm_requires("mmio"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.pl011)]


def test_peripheral_identification_registers(machine: Machine) -> None:
    """DDI 0183G, UARTPeriphID0-3 (0xFE0-0xFEC): part number 0x011 (PeriphID0 = 0x11, PeriphID1
    bits [3:0] = 0x0), designer 0x41, ARM (PeriphID1 [7:4] = 0x1, PeriphID2 [3:0] = 0x4),
    configuration 0 (PeriphID3 = 0x00); the revision (PeriphID2 [7:4]) is the implementation's."""
    agent = machine.agent
    pid = [agent.mmio_read(UART + 0xFE0 + 4 * i, 4) for i in range(4)]
    machine.record("pl011_revision", pid[2] >> 4)
    part = pid[0] | (pid[1] & 0xF) << 8
    designer = pid[1] >> 4 | (pid[2] & 0xF) << 4
    assert (part, designer, pid[3]) == (0x011, 0x41, 0x00), (
        f"UARTPeriphID0-3 {[hex(v) for v in pid]}: expected part 0x011, designer 0x41, config 0x00, "
        f"observed part {part:#x}, designer {designer:#x}, config {pid[3]:#x}")


def test_primecell_identification_registers(machine: Machine) -> None:
    """DDI 0183G, UARTPCellID0-3 (0xFF0-0xFFC): the PrimeCell identification 0x0D, 0xF0, 0x05,
    0xB1."""
    agent = machine.agent
    cell = [agent.mmio_read(UART + 0xFF0 + 4 * i, 4) for i in range(4)]
    assert cell == [0x0D, 0xF0, 0x05, 0xB1], f"UARTPCellID0-3: expected 0x0d 0xf0 0x05 0xb1, observed {[hex(v) for v in cell]}"


def test_flag_register_at_rest(machine: Machine) -> None:
    """DDI 0183G, UARTFR: with nothing to send and nothing received (the agent has drained its
    request and the host has read the last reply), TXFE and RXFE are 1 and TXFF, RXFF and BUSY
    0 (the register's reset value 0b-10010--- for these bits)."""
    fr = machine.agent.mmio_read(UART + FR, 4)
    bits = fr & (FR_TXFE | FR_RXFF | FR_TXFF | FR_RXFE | FR_BUSY)
    assert bits == FR_TXFE | FR_RXFE, f"UARTFR {fr:#x}: expected TXFE and RXFE only (0x90), observed {bits:#x}"


def test_baud_rate_divisors_read_back(machine: Machine) -> None:
    """DDI 0183G, UARTIBRD (16-bit integer divisor, bits [15:0]) and UARTFBRD (6-bit fraction,
    bits [5:0]): what is written reads back within the field; writing UARTLCR_H latches them. The
    original divisors and line control are restored."""
    agent = machine.agent
    ibrd, fbrd, lcr = (agent.mmio_read(UART + r, 4) for r in (IBRD, FBRD, LCR_H))
    try:
        agent.mmio_write(UART + IBRD, 4, 0xFFFF)
        agent.mmio_write(UART + FBRD, 4, 0xFF)
        agent.mmio_write(UART + LCR_H, 4, lcr)
        observed = (agent.mmio_read(UART + IBRD, 4), agent.mmio_read(UART + FBRD, 4))
    finally:
        agent.mmio_write(UART + IBRD, 4, ibrd)
        agent.mmio_write(UART + FBRD, 4, fbrd)
        agent.mmio_write(UART + LCR_H, 4, lcr)
    assert observed == (0xFFFF, 0x3F), f"IBRD/FBRD after writing 0xffff/0xff: expected (0xffff, 0x3f), observed {observed}"
    restored = (agent.mmio_read(UART + IBRD, 4), agent.mmio_read(UART + FBRD, 4), agent.mmio_read(UART + LCR_H, 4))
    assert restored == (ibrd, fbrd, lcr), f"restored IBRD/FBRD/LCR_H {restored} differ from {(ibrd, fbrd, lcr)}"


def test_line_control_reads_back(machine: Machine) -> None:
    """DDI 0183G, UARTLCR_H bits [7:0] (SPS, WLEN, FEN, STP2, EPS, PEN, BRK): the value the agent
    programmed (8 data bits, FIFOs on: 0x70) reads back."""
    lcr = machine.agent.mmio_read(UART + LCR_H, 4)
    assert lcr & 0xFF == 0x70, f"UARTLCR_H: expected 0x70 (WLEN=8 bits, FEN), observed {lcr:#x}"


def test_interrupt_status_clear_and_mask(machine: Machine) -> None:
    """DDI 0183G, UARTTXINTR with the FIFOs disabled: asserted when the one-character holding
    register is empty, cleared by a write to UARTICR; UARTMIS = UARTRIS AND UARTIMSC. The guest
    runs the sequence with its interrupts masked (agent ``uart_tx_irq``): ICR.TXIC clears
    RIS.TXRIS; a character sent sets it again; unmasked it shows in MIS, masked not; ICR clears
    it again."""
    r = machine.agent.request("uart_tx_irq")
    v = {k: r.int(k) for k in ("ris_cleared", "ris_sent", "ris_unmasked", "mis_unmasked", "ris_masked", "mis_masked",
                              "ris_after_icr", "imsc")}
    for name, value in v.items():
        machine.record(f"pl011_{name}", value)
    tx = {k: bool(val & TXIM) for k, val in v.items() if k != "imsc"}
    expected = {"ris_cleared": False, "ris_sent": True, "ris_unmasked": True, "mis_unmasked": True,
                "ris_masked": True, "mis_masked": False, "ris_after_icr": False}
    assert tx == expected, f"TX interrupt bit through ICR/send/IMSC: expected {expected}, observed {tx} (raw {v})"
    imsc_on, imsc_off = v["imsc"] | TXIM, v["imsc"] & ~TXIM
    assert v["mis_unmasked"] == v["ris_unmasked"] & imsc_on and v["mis_masked"] == v["ris_masked"] & imsc_off, (
        f"UARTMIS must equal UARTRIS AND UARTIMSC: {v}")


def test_receive_interrupt_is_delivered_through_the_gic(machine: Machine) -> None:
    """DDI 0183G, UARTRXINTR (asserted when the receive FIFO reaches its trigger level or on the
    receive timeout, RTIM) and Arm IHI 0069 (GICv3) SPI delivery: a 200-byte burst from the host
    arrives intact, and the guest's handler for the PL011's SPI (INTID 33 on QEMU virt) ran at
    least once, with no byte lost."""
    agent = machine.agent
    before = agent.irq_count(UART_INTID)
    data = bytes((i * 37 + 11) % 251 + 1 for i in range(200)).replace(b"\n", b"x").replace(b"\r", b"y")
    burst = agent.uart_burst(data)
    after = agent.irq_count(UART_INTID)
    machine.record("pl011_rx_irqs", burst.irqs)
    assert burst.intact, f"burst of {len(data)} bytes: received {burst.received}, fnv {burst.fnv:#x}"
    assert burst.irqs >= 1 and after - before >= burst.irqs, (
        f"RX interrupts for the burst: handler ran {burst.irqs} times, INTID {UART_INTID} counted {after - before}")
    assert burst.overruns == 0, f"receive overruns: {burst.overruns}"
