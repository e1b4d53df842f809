"""Recognise the SVM lane's known IRQ re-entry deadlock in god's stop line (docs/lane.md,
"Known gaps").

The platform limit: the nested kvm_amd on QEMU TCG's SVM sometimes delivers a Linux guest's
timer vector a second time while the guest's IF is 0, inside the first handler, which then
spins on the interrupt descriptor lock its own CPU holds. When god is stopped (the lane
part's timeout), its ``--stats`` stop line shows the whole signature:

- the vCPU spins in ``native_queued_spin_lock_slowpath`` with interrupts off;
- its stack holds, from the top: the inner flow handler (``handle_edge_irq`` once the IOAPIC
  routes the timer, ``handle_level_irq`` while the 8259 does) and ``common_interrupt`` (the
  second delivery), then the hardware interrupt frame of that delivery (``orig_ax`` -1,
  ``rip``, ``cs`` 0x10, ``rflags``) whose saved ``rflags`` has IF **clear**, which SDM vol. 3A
  6.8.1 forbids for a maskable interrupt; the outer flow handler, holding the descriptor's
  lock, is the one interrupted: the frame's saved ``rip`` is in it (caught right after its
  ``_raw_spin_lock`` returned) or a return address into it lies a little below the frame
  (caught in ``apic_ack_edge`` and in ``mask_and_ack_8259A``).

Anything else (another hang, another stop, a god defect) does not match, so the Linux checks
fail as they should. Symbols come from the lane kernel's ``/proc/kallsyms`` (the same Debian
vmlinux; the guest runs it with ``nokaslr`` so the addresses agree), printed by the lane
script as ``@@lane-sym NAME START END`` lines only when the Linux part failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPIN = "native_queued_spin_lock_slowpath"
ENTRY = "common_interrupt"
# Linux's IRQ flow handlers (kernel/irq/chip.c), each holding the descriptor's lock
FLOW_HANDLERS = ("handle_edge_irq", "handle_level_irq", "handle_fasteoi_irq")
SYMBOLS = (SPIN, ENTRY, *FLOW_HANDLERS)
# How far below the nested frame the outer flow handler's return address may lie: the
# interrupted callee's own frame (a few saved registers and return addresses) sits between.
OUTER_WORDS = 16
# The lane script's awk: text symbols sorted by address; each wanted one with the next
# higher address as its end. Printed only after a failed Linux part.
SYMBOL_SCRIPT = (
    "grep ' [tT] ' /proc/kallsyms | sort | awk -v want='" + " ".join(SYMBOLS) + "' "
    "'BEGIN { n = split(want, w, \" \"); for (i = 1; i <= n; i++) W[w[i]] = 1 } "
    "{ if (p != \"\" && $1 != a) { print \"@@lane-sym \" p \" \" a \" \" $1; p = \"\" } "
    "if ($3 in W) { p = $3; a = $1 } }'"
)

IF = 1 << 9  # RFLAGS.IF (SDM vol. 1 3.4.3)
RFLAGS_FIXED = 1 << 1  # bit 1 of RFLAGS always reads 1: tells a saved rflags from other words
KERNEL_CS = 0x10  # Linux x86-64 __KERNEL_CS
ORIG_AX_IRQ = (1 << 64) - 1  # common_interrupt sets orig_ax to -1 once it has read the vector
KERNEL_TEXT = 0xffffffff80000000  # kernel text lies above this (Documentation/arch/x86/x86_64/mm.rst)

STOP_LINE = re.compile(r"god: vCPU \d+ stopped at rip=(0x[0-9a-f]+) .*?rflags=(0x[0-9a-f]+).*?"
                       r"; stack: ((?:0x[0-9a-f]+ ?)+)")
SYMBOL_LINE = re.compile(r"@@lane-sym (\S+) ([0-9a-f]{16}) ([0-9a-f]{16})")


@dataclass(frozen=True)
class Symbol:
    name: str
    start: int
    end: int

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr < self.end


def parse_symbols(console: str) -> dict[str, Symbol]:
    return {m.group(1): Symbol(m.group(1), int(m.group(2), 16), int(m.group(3), 16))
            for m in SYMBOL_LINE.finditer(console)}


def recognise(console: str) -> str | None:
    """The evidence, as an xfail reason, when god's stop line shows the known deadlock; else None."""
    symbols = parse_symbols(console)
    if any(name not in symbols for name in SYMBOLS):
        return None
    spin, entry = symbols[SPIN], symbols[ENTRY]
    flow = [symbols[name] for name in FLOW_HANDLERS]
    for stop in STOP_LINE.finditer(console):
        rip, rflags = int(stop.group(1), 16), int(stop.group(2), 16)
        words = [int(w, 16) for w in stop.group(3).split()]
        if rip not in spin or rflags & IF:
            continue
        frame = _nested_irq_frame(words, entry, flow)
        if frame is not None:
            return (f"known SVM-lane deadlock (docs/lane.md, issue 13): god's vCPU spins in {spin.name} "
                    f"(rip={rip:#x}, interrupts off) under a second interrupt delivered with the guest's IF "
                    f"clear (saved rflags={words[frame + 2]:#x} at stack word {frame}) inside an IRQ flow handler")
    return None


def _nested_irq_frame(words: list[int], entry: Symbol, flow: list[Symbol]) -> int | None:
    """Index of the saved rip of an interrupt frame that interrupted an IRQ flow handler (or
    its callee) with IF clear, below an inner flow handler and common_interrupt; None if
    there is none."""
    def in_flow(w: int) -> bool:
        return any(w in handler for handler in flow)

    for i in range(1, len(words) - 2):
        orig_ax, saved_rip, cs, flags = words[i - 1], words[i], words[i + 1], words[i + 2]
        above, below = words[:i - 1], words[i + 5:i + 5 + OUTER_WORDS]
        if (orig_ax == ORIG_AX_IRQ and saved_rip >= KERNEL_TEXT and cs == KERNEL_CS
                and flags & RFLAGS_FIXED and not flags & IF
                and any(map(in_flow, above)) and any(w in entry for w in above)
                and (in_flow(saved_rip) or any(map(in_flow, below)))):
            return i
    return None
