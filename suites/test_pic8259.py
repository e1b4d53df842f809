"""Intel 8259A programmable interrupt controllers, register level: OCW1 (IMR), OCW3
(IRR/ISR read, poll), OCW2 (specific EOI), and the PIIX edge/level control registers
(Intel 8259A data sheet, order 231468, "Operation Command Words"; Intel 82371AB PIIX4 data
sheet 12.5, ELCR1/ELCR2 at 0x4d0/0x4d1).

The probe masks both 8259As and leaves LAPIC LINT0 masked, so an IRQ made pending here never
reaches the CPU; each sequence runs with interrupts off and leaves the masks as they were.
"""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.ioseq import PortSeq

from . import device_state

# Each sequence leaves the masks as they were, ISR empty and PIT channel 0 stopped: the checks
# share a guest (vmm_shared; --vmm-fresh boots one per check).
pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("mmio", "portseq"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.pic8259)]

MASTER_CMD, MASTER_DATA, SLAVE_CMD, SLAVE_DATA = 0x20, 0x21, 0xA0, 0xA1
OCW3_READ_IRR, OCW3_READ_ISR, OCW3_POLL = 0x0A, 0x0B, 0x0C
OCW2_SPECIFIC_EOI = 0x60  # | level
ELCR1, ELCR2 = 0x4D0, 0x4D1
PIT_CONTROL, PIT_CH0 = 0x43, 0x40


def raise_irq0(seq: PortSeq) -> PortSeq:
    """PIT channel 0 mode 0 with a count of 2: OUT (IRQ0) rises within 2 us and stays high."""
    return seq.out(PIT_CONTROL, 0x30).delay(20).out(PIT_CH0, 2).out(PIT_CH0, 0).delay(200)


@pytest.mark.parametrize("port", [MASTER_DATA, SLAVE_DATA])
def test_imr_round_trip(machine: Machine, port: int) -> None:
    """OCW1: the interrupt mask register is written and read at A0=1 (0x21, 0xa1)."""
    (before,) = PortSeq().read(port).run(machine.agent)
    values = PortSeq().out(port, 0xA5).read(port).out(port, 0x5A).read(port).out(port, before).run(machine.agent)
    assert values == [0xA5, 0x5A], f"IMR at {port:#x}: wrote 0xa5, 0x5a, read back {[hex(v) for v in values]}"


def test_isr_empty_with_nothing_in_service(machine: Machine) -> None:
    """OCW3 RR=1 RIS=1: the next read of A0=0 returns the in-service register; with every
    line masked nothing was acknowledged, so both ISRs read 0."""
    values = PortSeq().out(MASTER_CMD, OCW3_READ_ISR).read(MASTER_CMD).out(SLAVE_CMD, OCW3_READ_ISR).read(SLAVE_CMD).run(machine.agent)
    assert values == [0, 0], f"ISR master/slave: expected 0/0, observed {values}"


def test_irr_poll_isr_and_specific_eoi(machine: Machine) -> None:
    """An edge on IRQ0 sets IRR bit 0 even while masked (IMR only keeps it from the priority
    resolver). Unmasked, the poll command (OCW3 P=1) acknowledges it: the read returns
    1000 0LLL = 0x80 and sets ISR bit 0. A specific EOI (OCW2 0x60|L) for another level
    leaves ISR alone; the one for level 0 clears it."""
    seq = PortSeq().read(MASTER_DATA)
    raise_irq0(seq)
    seq.out(MASTER_CMD, OCW3_READ_IRR).read(MASTER_CMD)
    seq.out(MASTER_DATA, 0xFE).out(MASTER_CMD, OCW3_POLL).read(MASTER_CMD)
    seq.out(MASTER_CMD, OCW3_READ_ISR).read(MASTER_CMD)
    seq.out(MASTER_CMD, OCW2_SPECIFIC_EOI | 3).out(MASTER_CMD, OCW3_READ_ISR).read(MASTER_CMD)
    seq.out(MASTER_CMD, OCW2_SPECIFIC_EOI | 0).out(MASTER_CMD, OCW3_READ_ISR).read(MASTER_CMD)
    seq.out(MASTER_DATA, 0xFF).out(MASTER_CMD, OCW3_POLL).read(MASTER_CMD)
    seq.out(PIT_CONTROL, 0x30)
    imr, irr, polled, isr, isr_wrong_eoi, isr_after, poll_masked = seq.run(machine.agent)
    PortSeq().out(MASTER_DATA, imr).run(machine.agent)
    assert irr & 1, f"IRR after an IRQ0 edge: bit 0 expected, observed {irr:#04x}"
    assert polled == 0x80, f"poll with IRQ0 pending: expected 0x80 (interrupt, level 0), observed {polled:#04x}"
    assert isr == 0x01, f"ISR after the poll acknowledged IRQ0: expected 0x01, observed {isr:#04x}"
    assert isr_wrong_eoi == 0x01, f"ISR after a specific EOI for level 3: expected 0x01, observed {isr_wrong_eoi:#04x}"
    assert isr_after == 0, f"ISR after a specific EOI for level 0: expected 0, observed {isr_after:#04x}"
    assert poll_masked & 0x80 == 0, f"poll with every line masked: expected no interrupt (bit 7 clear), observed {poll_masked:#04x}"


@pytest.mark.parametrize(("port", "fixed_edge"), [(ELCR1, 0x07), (ELCR2, 0x21)])
def test_elcr_keeps_pc_edge_lines_edge(machine: Machine, port: int, fixed_edge: int) -> None:
    """PIIX4 12.5.x ELCR1/ELCR2: IRQ0, 1, 2 (ELCR1 bits 2:0) and IRQ8, 13 (ELCR2 bits 0, 5)
    are edge-triggered on a PC: those bits read 0 whatever is written; the others are
    read/write."""
    (before,) = PortSeq().read(port).run(machine.agent)
    if before == 0xFF:
        (again,) = PortSeq().out(port, 0).read(port).out(port, before).run(machine.agent)
        if again == 0xFF:
            pytest.skip(f"no ELCR at {port:#x} (reads 0xff and ignores writes): not a PIIX-style PC")
    all_set, cleared = PortSeq().out(port, 0xFF).read(port).out(port, 0).read(port).out(port, before).run(machine.agent)
    assert all_set == 0xFF & ~fixed_edge, f"ELCR {port:#x} after writing 0xff: expected {0xFF & ~fixed_edge:#04x}, observed {all_set:#04x}"
    assert cleared == 0, f"ELCR {port:#x} after writing 0: observed {cleared:#04x}"
