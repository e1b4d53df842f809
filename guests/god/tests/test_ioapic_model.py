"""god's 82093AA IOAPIC model against its datasheet (Intel 82093AA I/O Advanced Programmable
Interrupt Controller, order 290566-001) and the MSI format of the Intel SDM vol. 3, 11.11.
No KVM: MSIs are recorded."""

from __future__ import annotations

from god.devices.diag import Diag
from god.devices.ioapic import Ioapic

SEL, WIN = 0x00, 0x10


class Rig:
    def __init__(self, accept: bool = True, trace: bool = False) -> None:
        self.msis: list[tuple[int, int]] = []
        self.routes: list[list[tuple[int, int, int]]] = []
        self.lines: list[str] = []
        self.accept = accept
        self.io = Ioapic(self._send, self.routes.append, ioapic_id=2,
                         diag=Diag(trace=trace, sink=self.lines.append))

    def _send(self, address: int, data: int) -> bool:
        self.msis.append((address, data))
        return self.accept

    def rd(self, reg: int) -> int:
        self.io.write(SEL, 4, reg)
        return self.io.read(WIN, 4)

    def wr(self, reg: int, value: int) -> None:
        self.io.write(SEL, 4, reg)
        self.io.write(WIN, 4, value)

    def route(self, pin: int, low: int, high: int = 0) -> None:
        self.wr(0x11 + 2 * pin, high)
        self.wr(0x10 + 2 * pin, low)


def test_version_register():
    """3.2.2 IOAPICVER: version 11h in bits 7:0, maximum redirection entry 17h (24 pins) in
    bits 23:16."""
    assert Rig().rd(0x01) == 0x00170011


def test_id_and_arbitration_registers():
    """3.2.1 IOAPICID bits 27:24 are R/W; 3.2.3 IOAPICARB is read-only and holds the
    arbitration ID, loaded from the APIC ID."""
    r = Rig()
    assert r.rd(0x00) == 2 << 24
    r.wr(0x00, 0x0A000000)
    assert r.rd(0x00) == 0x0A000000
    r.wr(0x02, 0x05000000)  # read-only
    assert r.rd(0x02) == 0x0A000000


def test_ioregsel_reads_back():
    """3.1.1 IOREGSEL: bits 7:0 select the register, read/write."""
    r = Rig()
    r.io.write(SEL, 4, 0x13)
    assert r.io.read(SEL, 4) == 0x13


def test_entries_masked_after_reset():
    """3.2.4: the redirection entries come out of reset masked (bit 16 set)."""
    r = Rig()
    assert all(r.rd(0x10 + 2 * p) & (1 << 16) for p in range(24))
    r.io.set_irq(5, True)
    assert r.msis == []


def test_edge_pin_sends_one_msi_per_rising_edge():
    """3.2.4 trigger mode 0 = edge; delivery by MSI (SDM 11.11.1 address 0xFEExx000 with the
    destination in bits 19:12, 11.11.2 data = vector, delivery mode 10:8)."""
    r = Rig()
    r.route(4, 0x41, 0x01000000)   # fixed, physical, edge, high, dest APIC 1
    r.io.set_irq(4, True)
    r.io.set_irq(4, True)           # still high: no new edge
    r.io.set_irq(4, False)
    r.io.set_irq(4, True)
    assert r.msis == [(0xFEE01000, 0x41)] * 2


def test_edge_on_masked_pin_is_ignored_not_held():
    """3.2.4 Interrupt Mask: edge-sensitive interrupts signalled on a masked pin are ignored,
    i.e. not delivered or held pending."""
    r = Rig()
    r.route(3, 0x10033)             # masked
    r.io.set_irq(3, True)
    r.route(3, 0x00033)             # unmask while the line is still high
    assert r.msis == []


def test_level_pin_remote_irr_and_eoi():
    """3.2.4 Remote IRR (bit 14): set when the local APIC accepts a level interrupt, cleared by
    an EOI with the entry's vector; while set, the asserted pin is not sent again. After the
    EOI a still-asserted level pin is delivered again."""
    r = Rig()
    r.route(9, 0x8051)              # level, vector 0x51
    r.io.set_irq(9, True)
    assert r.msis == [(0xFEE00000, 0xC051)]  # data bit 15 trigger=level, bit 14 assert
    assert r.rd(0x10 + 18) & (1 << 14)
    r.io.set_irq(9, False)
    r.io.set_irq(9, True)
    assert len(r.msis) == 1         # remote IRR blocks
    r.io.eoi(0x52)                  # another vector: no effect
    assert r.rd(0x10 + 18) & (1 << 14)
    r.io.eoi(0x51)
    assert len(r.msis) == 2         # still asserted: sent again
    r.io.set_irq(9, False)
    r.io.eoi(0x51)
    assert not r.rd(0x10 + 18) & (1 << 14) and len(r.msis) == 2


def test_level_pin_asserted_while_masked_delivers_on_unmask():
    """3.2.4: level asserts on a masked pin are ignored, but the pin is level-sensitive: once
    unmasked with the input still asserted the interrupt is sent."""
    r = Rig()
    r.route(4, 0x18041)
    r.io.set_irq(4, True)
    assert r.msis == []
    r.route(4, 0x08041)
    assert r.msis == [(0xFEE00000, 0xC041)]


def test_active_low_polarity():
    """3.2.4 Interrupt Input Pin Polarity (bit 13): 1 = low active; the pin is asserted while
    its input is low."""
    r = Rig()
    r.io.set_irq(20, True)
    r.route(20, 0x2000 | 0x60)      # edge, low active
    r.io.set_irq(20, False)         # falling input = asserting edge
    assert r.msis == [(0xFEE00000, 0x60)]


def test_logical_destination_and_lowest_priority():
    """3.2.4 destination mode (bit 11) and delivery mode 001; SDM 11.11.1: DM is MSI address
    bit 2, the destination (a logical mask here) bits 19:12."""
    r = Rig()
    r.route(6, 0x0900 | 0x70, 0x03000000)
    r.io.set_irq(6, True)
    assert r.msis == [(0xFEE03004, 0x0170)]


def test_read_only_bits_ignore_writes():
    """3.2.4: delivery status (bit 12) and remote IRR (bit 14) are read-only."""
    r = Rig()
    r.route(2, 0x5000 | 0x30)
    assert r.rd(0x14) & 0x5000 == 0


def test_refused_level_interrupt_shows_delivery_status():
    """3.2.4 Delivery Status (bit 12): 1 = send pending, the interrupt could not be delivered
    yet."""
    r = Rig(accept=False)
    r.route(7, 0x8044)
    r.io.set_irq(7, True)
    assert r.rd(0x10 + 14) & (1 << 12) and not r.rd(0x10 + 14) & (1 << 14)


def test_reserved_delivery_mode_sends_nothing_and_is_traced():
    """3.2.4 delivery modes 011 and 110 are reserved: god sends nothing and says so with
    --trace-unassigned."""
    r = Rig(trace=True)
    r.route(1, 0x0300 | 0x40)
    r.io.set_irq(1, True)
    assert r.msis == [] and any("reserved delivery mode 011" in x for x in r.lines)


def test_reserved_register_reads_zero():
    """3.0: only registers 00h-02h and 10h-3Fh exist; god answers 0 for the others."""
    r = Rig(trace=True)
    assert r.rd(0x05) == 0 and r.rd(0x40) == 0
    assert any("reserved register 0x5" in x for x in r.lines)


def test_routes_follow_the_table():
    """KVM's GSI routes mirror each entry as an MSI (api.rst KVM_CAP_SPLIT_IRQCHIP: level
    MSI routes on the reserved GSIs give EOI exits for their vectors)."""
    r = Rig()
    r.route(10, 0x8055, 0x01000000)
    assert r.routes[-1][10] == (10, 0xFEE01000, 0xC055)
