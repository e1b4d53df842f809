"""god's 8259A pair against the Intel 8259A datasheet (order 231468-003): "Interrupt
Sequence", "Programming the 8259A" (ICW1-4, OCW1-3), "Special Fully Nest Mode", "Reading the
8259A Status", "Poll Command", "Cascade Mode"; and the PIIX ELCR (Intel 82371FB datasheet,
ELCR1/ELCR2 at 4D0h/4D1h)."""

from __future__ import annotations

from god.devices.pic import DualPic


class Rig:
    def __init__(self, icw4: int = 0x01) -> None:
        self.ints: list[bool] = []
        self.acked: list[int] = []
        self.pic = DualPic(self.ints.append)
        self.pic.on_ack = self.acked.append
        # The PC initialization: ICW1 edge + ICW4, ICW2 vector bases 0x20/0x28, ICW3 cascade on
        # IR2, ICW4 8086 mode; all unmasked.
        for base, vec, icw3 in ((0x20, 0x20, 0x04), (0xA0, 0x28, 0x02)):
            self.out(base, 0x11)
            self.out(base + 1, vec)
            self.out(base + 1, icw3)
            self.out(base + 1, icw4)
            self.out(base + 1, 0x00)

    def out(self, port: int, v: int) -> None:
        dev = {0x20: self.pic.master_port, 0xA0: self.pic.slave_port, 0x4D0: self.pic.elcr_port}
        base = port & ~1
        dev[base].write(port - base, 1, v)

    def inp(self, port: int) -> int:
        dev = {0x20: self.pic.master_port, 0xA0: self.pic.slave_port, 0x4D0: self.pic.elcr_port}
        base = port & ~1
        return dev[base].read(port - base, 1)

    def pulse(self, irq: int) -> None:
        self.pic.set_irq(irq, True)
        self.pic.set_irq(irq, False)


def test_vector_from_icw2_and_int_output():
    """Interrupt Sequence: a request raises INT; the INTA cycle returns ICW2's T7-T3 with the
    IR level in the low 3 bits."""
    r = Rig()
    r.pulse(3)
    assert r.pic.output and r.pic.acknowledge() == 0x23 and not r.pic.output


def test_irr_and_isr_reads_through_ocw3():
    """Reading the 8259A Status: OCW3 RR=1 RIS=0 selects IRR, RIS=1 ISR, at the even port;
    in edge mode the IRR bit is reset by INTA and the ISR bit set."""
    r = Rig()
    r.pulse(5)
    r.out(0x20, 0x0A)
    assert r.inp(0x20) == 0x20
    r.pic.acknowledge()
    assert r.inp(0x20) == 0x00
    r.out(0x20, 0x0B)
    assert r.inp(0x20) == 0x20


def test_imr_masks_and_reads_back():
    """OCW1 sets the IMR, read back at the odd port; a masked request does not raise INT."""
    r = Rig()
    r.out(0x21, 0xF7)
    assert r.inp(0x21) == 0xF7
    r.pulse(0)
    assert not r.pic.output
    r.out(0x21, 0xF6)
    assert r.pic.output  # IRR kept the request


def test_fully_nested_priority():
    """Fully Nested Mode: IR0 highest, IR7 lowest; while an IR is in service only higher
    priority requests are passed to the CPU."""
    r = Rig()
    r.pulse(5)
    r.pulse(1)
    assert r.pic.acknowledge() == 0x21
    r.pulse(3)
    assert not r.pic.output          # IR3 is lower than IR1 in service
    r.out(0x20, 0x20)                # non-specific EOI clears IR1
    assert r.pic.acknowledge() == 0x23


def test_specific_eoi():
    """OCW2 R=0 SL=1 EOI=1: the specific EOI resets the ISR bit named by L2-L0."""
    r = Rig()
    r.pulse(4)
    r.pic.acknowledge()
    r.pulse(1)
    r.pic.acknowledge()             # IR1 nests in IR4: ISR = IR1 | IR4
    r.out(0x20, 0x64)               # specific EOI for IR4 (a non-specific one would take IR1)
    r.out(0x20, 0x0B)
    assert r.inp(0x20) == 0x02


def test_auto_eoi():
    """ICW4 AEOI=1: the ISR bit is reset at the end of the INTA sequence."""
    r = Rig(icw4=0x03)
    r.pulse(6)
    assert r.pic.acknowledge() == 0x26
    r.out(0x20, 0x0B)
    assert r.inp(0x20) == 0


def test_cascade_through_ir2():
    """Cascade Mode: a slave request raises the master's IR2; INTA gives the slave's vector;
    both ISR bits are set (master IR2, slave IR4 for IRQ 12)."""
    r = Rig()
    r.pulse(12)
    assert r.pic.acknowledge() == 0x2C
    r.out(0x20, 0x0B)
    r.out(0xA0, 0x0B)
    assert (r.inp(0x20), r.inp(0xA0)) == (0x04, 0x10)


def test_spurious_ir7():
    """Interrupt Sequence: if the request is gone before INTA, the 8259A issues IR7's vector
    and does not set ISR."""
    r = Rig()
    r.out(0x4D0, 0x08)              # IRQ3 level-triggered
    r.pic.set_irq(3, True)
    r.pic.set_irq(3, False)
    assert r.pic.acknowledge() == 0x27
    r.out(0x20, 0x0B)
    assert r.inp(0x20) == 0


def test_level_triggered_irr_follows_the_line():
    """ELCR bit = 1: level-sensitive; the IRR bit follows the input (ICW1 LTIM semantics), so a
    request still high after EOI is presented again."""
    r = Rig()
    r.out(0x4D1, 0x04)              # IRQ10 level
    r.pic.set_irq(10, True)
    assert r.pic.acknowledge() == 0x2A
    r.out(0xA0, 0x20)
    r.out(0x20, 0x20)
    assert r.pic.output and r.pic.acknowledge() == 0x2A


def test_elcr_reserved_bits():
    """82371FB ELCR1 bits 2:0 and ELCR2 bits 5 and 0 (IRQ 0, 1, 2, 8, 13) are reserved: always
    edge, read 0."""
    r = Rig()
    r.out(0x4D0, 0xFF)
    r.out(0x4D1, 0xFF)
    assert (r.inp(0x4D0), r.inp(0x4D1)) == (0xF8, 0xDE)


def test_icw1_clears_imr_and_isr():
    """ICW1: the IMR is cleared and the special mask mode reset; the ISR is cleared."""
    r = Rig()
    r.out(0x21, 0xFF)
    r.out(0x20, 0x11)
    r.out(0x21, 0x20)
    r.out(0x21, 0x04)
    r.out(0x21, 0x01)
    assert r.inp(0x21) == 0x00


def test_poll_command():
    """Poll Command: OCW3 P=1; the next read of the even port is the INTA: bit 7 = request,
    W2-W0 the highest-priority level."""
    r = Rig()
    r.pulse(6)
    r.out(0x20, 0x0C)
    assert r.inp(0x20) == 0x86
    r.out(0x20, 0x0B)
    assert r.inp(0x20) == 0x40


def test_rotate_on_non_specific_eoi():
    """OCW2 R=1 SL=0 EOI=1: the IR just served becomes the lowest priority."""
    r = Rig()
    r.pulse(0)
    r.pic.acknowledge()             # IR0
    r.out(0x20, 0xA0)               # rotate: IR0 now lowest, IR1 highest
    r.pulse(0)
    r.pulse(4)
    assert r.pic.acknowledge() == 0x24


def test_special_mask_mode():
    """OCW3 ESMM=1 SMM=1: an in-service level masked in the IMR no longer blocks lower
    priority requests."""
    r = Rig()
    r.pulse(1)
    r.pic.acknowledge()
    r.pulse(5)
    assert not r.pic.output
    r.out(0x21, 0x02)               # mask IR1
    r.out(0x20, 0x68)               # set special mask mode
    assert r.pic.output and r.pic.acknowledge() == 0x25


def test_inta_reports_the_acknowledged_irq():
    """What the PIT's lost-tick policy counts as 'taken': the IRQ each INTA hands out."""
    r = Rig()
    r.pulse(0)
    r.pulse(9)
    r.pic.acknowledge()
    r.out(0x20, 0x20)               # EOI IR0: the cascade (IR2) may now be served
    r.pic.acknowledge()
    assert r.acked == [0, 9]
