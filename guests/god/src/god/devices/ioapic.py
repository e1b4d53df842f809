"""Intel 82093AA I/O APIC (datasheet 290566-001, May 1996): 24 pins, delivered to the local
APICs as MSI writes.

Registers (section 3): IOREGSEL at offset 0x00 selects an indirect register, IOWIN at 0x10
reads/writes it. Indirect registers: 0x00 IOAPICID (ID in bits 27:24), 0x01 IOAPICVER
(version 0x11 in bits 7:0, maximum redirection entry 0x17 in bits 23:16), 0x02 IOAPICARB
(arbitration ID in bits 27:24, read-only), 0x10-0x3F the redirection table (two registers
per pin, low dword first). Redirection entry (section 3.2.4): vector 7:0, delivery mode 10:8,
destination mode 11, delivery status 12 (RO), polarity 13, remote IRR 14 (RO), trigger
mode 15, mask 16, destination 63:56.

Semantics kept from the datasheet:
- edge-triggered pins deliver on the asserting edge; an edge on a masked pin is ignored
  (not held pending);
- level-triggered pins deliver while asserted, unmasked and remote IRR clear; remote IRR is
  set when the interrupt is accepted and cleared by an EOI with the entry's vector
  (`eoi(vector)`, from KVM_EXIT_IOAPIC_EOI); a line still asserted then is sent again;
- polarity: an active-low pin is asserted while its input is low (god's ISA devices drive
  active high: programming active-low on such a pin gets a one-line warning);
- delivery status reads 1 while a level interrupt is asserted but was refused by the LAPICs.

What god does not model gets a `god:` warning once (SMI, INIT and ExtINT without a PIC);
reserved delivery modes (011, 110) and reserved registers are traced with
`--trace-unassigned`: reserved registers read 0, writes to them and to RO bits are ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from god.devices.diag import QUIET, Diag

IOAPIC_PINS = 24
IOAPIC_VERSION = 0x11
IOAPIC_WINDOW = 0x1000          # the page at 0xfec00000; registers at 0x00 and 0x10
REG_SELECT, REG_WINDOW = 0x00, 0x10
REG_ID, REG_VER, REG_ARB, REG_REDTBL = 0x00, 0x01, 0x02, 0x10

VECTOR_MASK = 0xFF
DELIVERY_SHIFT = 8
DEST_MODE_LOGICAL = 1 << 11
DELIVERY_STATUS = 1 << 12
POLARITY_LOW = 1 << 13
REMOTE_IRR = 1 << 14
TRIGGER_LEVEL = 1 << 15
MASKED = 1 << 16
RO_BITS = DELIVERY_STATUS | REMOTE_IRR
DEST_SHIFT = 56

DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI, DM_INIT, DM_EXTINT = 0, 1, 2, 4, 5, 7
DM_RESERVED = (3, 6)

# MSI format (Intel SDM vol. 3, 11.11): address 0xFEE00000 | dest << 12 | DM << 2, data
# vector | delivery mode << 8 | level-assert << 14 | trigger << 15.
MSI_BASE = 0xFEE00000
MSI_DEST_SHIFT = 12
MSI_DEST_LOGICAL = 1 << 2
MSI_LEVEL_ASSERT = 1 << 14
MSI_TRIGGER_LEVEL = 1 << 15


def entry_msi(entry: int) -> tuple[int, int]:
    """(MSI address, MSI data) a redirection entry sends."""
    address = MSI_BASE | ((entry >> DEST_SHIFT) & 0xFF) << MSI_DEST_SHIFT
    if entry & DEST_MODE_LOGICAL:
        address |= MSI_DEST_LOGICAL
    data = (entry & VECTOR_MASK) | (entry & (7 << DELIVERY_SHIFT))
    if entry & TRIGGER_LEVEL:
        data |= MSI_TRIGGER_LEVEL | MSI_LEVEL_ASSERT
    return address, data


class Ioapic:
    def __init__(self, send_msi: Callable[[int, int], bool],
                 routes_changed: Callable[[list[tuple[int, int, int]]], None] | None = None,
                 ioapic_id: int = 0, diag: Diag = QUIET,
                 active_high_pins: frozenset[int] = frozenset(range(16))) -> None:
        """send_msi(address, data) -> accepted; routes_changed(list of (pin, address, data))
        mirrors the table to KVM so it knows which vectors need EOI exits."""
        self.send_msi = send_msi
        self.routes_changed = routes_changed
        self.diag = diag
        self.active_high_pins = active_high_pins
        self.extint_vector: Callable[[], int | None] | None = None  # the PIC's INTA
        # pin -> called on every EOI of the pin's vector, edge-triggered or not (the PIT's
        # lost-tick policy); KVM is told to exit on those EOIs too (see _push_routes).
        self.ack_pins: dict[int, Callable[[], None]] = {}
        # nudge(msi_address): a level pin waits for an EOI; the machine may poke the LAPICs
        # at that address so an EOI exit KVM is holding back reaches god (see god.irqchip).
        self.nudge: Callable[[int], None] | None = None
        self.id = ioapic_id & 0xF
        self.select = 0
        self.entries = [MASKED] * IOAPIC_PINS       # reset: all masked (section 3.2.4)
        self.inputs = [False] * IOAPIC_PINS          # the wire level on each pin
        self._routes: list[tuple[int, int]] | None = None
        self._lock = threading.RLock()

    # --- the pins ---------------------------------------------------------------------------
    def _asserted(self, pin: int) -> bool:
        return self.inputs[pin] != bool(self.entries[pin] & POLARITY_LOW)

    def set_irq(self, pin: int, level: bool) -> bool:
        """Drive the wire of `pin` (True = high); True if an interrupt was sent for it."""
        with self._lock:
            was = self._asserted(pin)
            self.inputs[pin] = level
            now = self._asserted(pin)
            e = self.entries[pin]
            if e & TRIGGER_LEVEL:
                if now:
                    return self._service(pin)
                self.entries[pin] &= ~DELIVERY_STATUS
            elif now and not was and not e & MASKED:
                return self._send(pin)
            return False

    def pulse(self, pin: int) -> bool:
        """One request from an edge source (the PIT): up, then down."""
        with self._lock:
            sent = self.set_irq(pin, True)
            self.set_irq(pin, False)
            return sent

    def _service(self, pin: int) -> bool:
        """Level pin: send if asserted, unmasked and not already waiting for its EOI."""
        e = self.entries[pin]
        if e & (MASKED | REMOTE_IRR) or not self._asserted(pin):
            if e & REMOTE_IRR and not e & MASKED and self.nudge is not None \
                    and self._asserted(pin):
                self.nudge(entry_msi(e)[0])  # waiting for an EOI that may be held back
            return False
        if self._send(pin):
            self.entries[pin] = (self.entries[pin] | REMOTE_IRR) & ~DELIVERY_STATUS
            return True
        self.entries[pin] |= DELIVERY_STATUS
        return False

    def _send(self, pin: int) -> bool:
        e = self.entries[pin]
        mode = (e >> DELIVERY_SHIFT) & 7
        if mode in DM_RESERVED:
            self.diag.reserved(f"ioapic-dm-{pin}", f"IOAPIC redirection entry {pin}: reserved "
                               f"delivery mode {mode:03b}: nothing sent")
            return False
        if mode in (DM_SMI, DM_INIT):
            self.diag.unmodelled(f"ioapic-dm-{mode}", f"IOAPIC redirection entry {pin}: "
                                 f"delivery mode {'SMI' if mode == DM_SMI else 'INIT'}")
        if mode == DM_EXTINT:
            # Virtual wire through the IOAPIC: the 8259 supplies the vector (INTA).
            vector = self.extint_vector() if self.extint_vector is not None else None
            if vector is None:
                self.diag.unmodelled(f"ioapic-extint-{pin}", f"IOAPIC redirection entry {pin}: "
                                     "ExtINT delivery with no 8259 interrupt pending")
                return False
            address, data = entry_msi((e & ~(VECTOR_MASK | 7 << DELIVERY_SHIFT)) | vector)
            return self.send_msi(address, data)
        if pin in self.ack_pins:
            # Sent level-triggered so the LAPIC broadcasts its EOI (under PVM an edge
            # interrupt's EOI never leaves the LAPIC even when KVM is asked to exit on it).
            e |= TRIGGER_LEVEL
        address, data = entry_msi(e)
        return self.send_msi(address, data)

    def eoi(self, vector: int) -> None:
        """An EOI broadcast from a local APIC (KVM_EXIT_IOAPIC_EOI)."""
        acks = []
        with self._lock:
            for pin, e in enumerate(self.entries):
                if e & VECTOR_MASK != vector:
                    continue
                if e & TRIGGER_LEVEL and e & REMOTE_IRR:
                    self.entries[pin] = e & ~REMOTE_IRR
                    self._service(pin)  # still asserted: the interrupt comes again
                ack = self.ack_pins.get(pin)
                if ack is not None:
                    acks.append(ack)
        for ack in acks:  # outside the lock: an ack may send the next interrupt right away
            ack()

    # --- registers --------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset == REG_SELECT:
                return self.select
            if offset == REG_WINDOW:
                return self._read_indirect(self.select)
            self.diag.reserved(f"ioapic-off-{offset:#x}", f"IOAPIC read of offset {offset:#x} "
                               "(only IOREGSEL 0x00 and IOWIN 0x10 exist): 0")
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            if offset == REG_SELECT:
                self.select = value & 0xFF
            elif offset == REG_WINDOW:
                self._write_indirect(self.select, value & 0xFFFFFFFF)
            else:
                self.diag.reserved(f"ioapic-off-{offset:#x}", f"IOAPIC write of {value:#x} to "
                                   f"offset {offset:#x} (only IOREGSEL and IOWIN exist): ignored")

    def _read_indirect(self, reg: int) -> int:
        if reg == REG_ID:
            return self.id << 24
        if reg == REG_VER:
            return (IOAPIC_PINS - 1) << 16 | IOAPIC_VERSION
        if reg == REG_ARB:
            return self.id << 24  # loaded from the ID (section 3.2.3)
        pin, high = divmod(reg - REG_REDTBL, 2)
        if 0 <= pin < IOAPIC_PINS and reg >= REG_REDTBL:
            e = self.entries[pin]
            return (e >> 32) & 0xFFFFFFFF if high else e & 0xFFFFFFFF
        self.diag.reserved(f"ioapic-reg-{reg:#x}", f"IOAPIC read of reserved register {reg:#x}: 0")
        return 0

    def _write_indirect(self, reg: int, value: int) -> None:
        if reg == REG_ID:
            self.id = (value >> 24) & 0xF
            return
        pin, high = divmod(reg - REG_REDTBL, 2)
        if reg < REG_REDTBL or pin >= IOAPIC_PINS:
            self.diag.reserved(f"ioapic-reg-{reg:#x}", f"IOAPIC write of {value:#x} to "
                               f"{'read-only' if reg in (REG_VER, REG_ARB) else 'reserved'} "
                               f"register {reg:#x}: ignored")
            return
        old = self.entries[pin]
        if high:
            new = (old & 0xFFFFFFFF) | (value & 0xFF000000) << 32  # bits 55:32 reserved
        else:
            new = (old & ~0xFFFFFFFF) | (value & ~RO_BITS & 0x1FFFF) | (old & RO_BITS)
            if not new & TRIGGER_LEVEL:
                new &= ~(REMOTE_IRR | DELIVERY_STATUS)  # remote IRR means nothing for edge
        self.entries[pin] = new
        if new & POLARITY_LOW and not old & POLARITY_LOW and pin in self.active_high_pins:
            self.diag.unmodelled(f"ioapic-pol-{pin}", f"IOAPIC redirection entry {pin} set "
                                 "active-low, but god's ISA device on that pin drives it active-high")
        self._push_routes()
        if new & TRIGGER_LEVEL:
            self._service(pin)  # unmasked with the line asserted: deliver now

    def _push_routes(self) -> None:
        if self.routes_changed is None:
            return
        # Only the trigger bit of a KVM route matters to KVM (it scans level-triggered MSI
        # routes for the vectors whose EOI must exit); pins that want every EOI say level.
        routes = [entry_msi(e | (TRIGGER_LEVEL if pin in self.ack_pins else 0))
                  for pin, e in enumerate(self.entries)]
        if routes != self._routes:
            self._routes = routes
            self.routes_changed([(pin, a, d) for pin, (a, d) in enumerate(routes)])

    def reset_routes(self) -> None:
        """Tell KVM the initial table (before the guest writes any entry)."""
        with self._lock:
            self._routes = None
            self._push_routes()
