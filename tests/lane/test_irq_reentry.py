"""The recogniser of the SVM lane's IRQ re-entry deadlock (tests/lane/irq_reentry.py), on the
stop lines god printed for three real hangs (2026-12-07, the lane's tests/lane/test_linux_on_god.py
with one host core busy: two inside handle_edge_irq, the first with its KASLR slide removed as
``nokaslr`` now gives, and one inside handle_level_irq) and on variants that must not match.
No lane boot."""

from __future__ import annotations

from tests.lane.irq_reentry import recognise

# What the lane script prints from the lane kernel's /proc/kallsyms (Debian 6.1.0-57-amd64)
SYMBOLS = """\
@@lane-sym handle_level_irq ffffffff811253b0 ffffffff81125510
@@lane-sym handle_fasteoi_irq ffffffff81125510 ffffffff811256e0
@@lane-sym handle_edge_irq ffffffff811256e0 ffffffff81125900
@@lane-sym common_interrupt ffffffff81a45600 ffffffff81a456a0
@@lane-sym native_queued_spin_lock_slowpath ffffffff81a5a140 ffffffff81a5a3e0
"""
# Stack words 34-39: the nested delivery's frame (orig_ax -1, rip = the retpoline thunk,
# cs 0x10, rflags 0x6: IF clear, rsp, ss); word 41 is the outer handle_edge_irq+0x73.
STOP = (
    "god: vCPU 0 stopped at rip=0xffffffff81a5a1a9 (ring 0), code: 8b 03 84 c0 75 f8 b8 01 00 00 00 66 89 03 "
    "5b 5d rflags=0x2 (interrupts off), 34063 exits; rax=0x101 rbx=0xff20c8d4011a3ca4 rcx=0xffffffff81c01220 "
    "rdx=0x0 rsi=0x1 rdi=0xff20c8d4011a3ca4 rsp=0xff6d9aef40003e60 rbp=0xff20c8d4011a3ca4 r8=0x0 r9=0x0 "
    "r10=0x0 r11=0x0 r12=0x30 r13=0xffffffff82a03d98 r14=0x0 r15=0x0; stack: 0xff20c8d4011a3c00 "
    "0xff20c8d4011a3ca4 0x30 0xffffffff82a03d98 0xffffffff81a5a025 0xffffffff811256fb 0xff6d9aef40003ef8 "
    "0xff20c8d4011a3c00 0x30 0xffffffff81034b7f 0xff6d9aef40003ef8 0x30 0x0 0x0 0xffffffff81a4563f 0x0 0x0 "
    "0x0 0xffffffff81c00e62 0x0 0x0 0x0 0xff20c8d4011a3c28 0xff20c8d4011a3ca4 0xff20c8d4011a3c00 "
    "0xff6d9aef40003ff8 0x0 0x0 0x0 0xffffffff81070cb0 0xffffffff81c01220 0xff20c8d4011a3c00 0x30 "
    "0xff20c8d401152300 0xffffffffffffffff 0xffffffff81e01580 0x10 0x6 0xff6d9aef40003fa8 0x0 "
    "0xffffffff81124b10 0xffffffff81125753 0xffffffff82a03d98 0xff20c8d4011a3c00 0x30 0xffffffff81034b7f "
    "0xffffffff82a03d98 0x30 0x0 0x0 0xffffffff81a4567d 0xffffffff82a03d78 ?"
)

# The 8259 variant, early in boot: the outer handle_level_irq (word 43, below the frame at
# 33-38) was in mask_and_ack_8259A; the frame's rflags 0x46 has IF clear.
STOP_8259 = (
    "god: vCPU 0 stopped at rip=0xffffffff81a5a1a9 (ring 0), code: 8b 03 84 c0 75 f8 b8 01 00 00 00 66 89 03 "
    "5b 5d rflags=0x2 (interrupts off), 33367 exits; rax=0x101 rbx=0xff110000049a20a4 rcx=0xffffffff81c01220 "
    "rdx=0x0 rsi=0x1 rdi=0xff110000049a20a4 rsp=0xffa0000000003e58 rbp=0xff110000049a20a4 r8=0x0 r9=0x0 "
    "r10=0x0 r11=0x0 r12=0x30 r13=0xffffffff82a03dd8 r14=0x0 r15=0x0; stack: 0xff110000049a2000 "
    "0xff110000049a20a4 0x30 0xffffffff82a03dd8 0xffffffff81a5a026 0xffffffff811253c9 0xffa0000000003ee8 "
    "0xff110000049a2000 0xffffffff81034b7f 0xffa0000000003ee8 0x30 0x0 0x0 0xffffffff81a4563f 0x0 0x0 0x0 "
    "0xffffffff81c00e62 0x0 0x0 0x0 0x82 0x1 0x0 0xffa0000000003ff8 0x0 0x0 0x0 0xffff 0x0 0x1 0x30 "
    "0xffffffff8331b8a8 0xffffffffffffffff 0xffffffff81037e04 0x10 0x46 0xffa0000000003f98 0x0 "
    "0xffffffff81037da1 0xff110000049a2000 0xff110000049a20a4 0x30 0xffffffff811253e3 0xffffffff82a03dd8 "
    "0xff110000049a2000 0xffffffff81034b7f 0xffffffff82a03dd8 0x30 0x0 0x0 0xffffffff81a4567d "
    "0xffffffff82a03db8 ?"
)

# Delivered right after the outer handle_edge_irq took the lock: the frame's saved rip (word
# 35) is handle_edge_irq+0x1b itself, rflags 0x46.
STOP_AT_LOCK = (
    "god: vCPU 0 stopped at rip=0xffffffff81a5a1a9 (ring 0), code: 8b 03 84 c0 75 f8 b8 01 00 00 00 66 89 03 "
    "5b 5d rflags=0x2 (interrupts off), 33905 exits; rax=0x101 rbx=0xff110000049a2ea4 rcx=0xffffffff81c01220 "
    "rdx=0x0 rsi=0x1 rdi=0xff110000049a2ea4 rsp=0xffa0000000003e70 rbp=0xff110000049a2ea4 r8=0x0 r9=0x0 "
    "r10=0x0 r11=0x0 r12=0x30 r13=0xffffffff82a03d78 r14=0x0 r15=0x0; stack: 0xff110000049a2e00 "
    "0xff110000049a2ea4 0x30 0xffffffff82a03d78 0xffffffff81a5a026 0xffffffff811256fb 0xffa0000000003f08 "
    "0xff110000049a2e00 0x30 0xffffffff81034b7f 0xffa0000000003f08 0x30 0x0 0x0 0xffffffff81a4563f 0x0 0x0 "
    "0x0 0xffffffff81c00e62 0x0 0x0 0x0 0x30 0xff110000049a2ea4 0xff110000049a2e00 0xffa0000000003ff8 0x0 0x0"
    " 0x0 0x0 0xffffffff81c01220 0x1 0x30 0xff110000049a2ea4 0xffffffffffffffff 0xffffffff811256fb 0x10 0x46 "
    "0xffa0000000003fb0 0x0 0xffffffff82a03d78 0xff110000049a2e00 0x30 0xffffffff81034b7f 0xffffffff82a03d78 "
    "0x30 0x0 0x0 0xffffffff81a4567d 0xffffffff82a03d58 ?"
)


def test_the_caught_hang_is_recognised() -> None:
    reason = recognise(f"@@lane-part-end linux status=124 end=160.1\n{STOP}\n{SYMBOLS}")
    assert reason is not None
    assert "rflags=0x6" in reason and "stack word 35" in reason


def test_the_8259_variant_is_recognised() -> None:
    reason = recognise(f"{STOP_8259}\n{SYMBOLS}")
    assert reason is not None
    assert "rflags=0x46" in reason and "stack word 34" in reason


def test_the_variant_interrupted_at_the_lock_is_recognised() -> None:
    reason = recognise(f"{STOP_AT_LOCK}\n{SYMBOLS}")
    assert reason is not None
    assert "rflags=0x46" in reason and "stack word 35" in reason


def test_the_same_frame_with_if_set_is_not_the_platform_limit() -> None:
    """A nested interrupt taken with IF set is legal (SDM vol. 3A 6.8.1): a hang then is
    not the known limit, so the Linux checks must fail."""
    assert recognise(STOP.replace(" 0x10 0x6 ", " 0x10 0x206 ") + "\n" + SYMBOLS) is None


def test_a_spin_elsewhere_is_not_the_platform_limit() -> None:
    assert recognise(STOP.replace("rip=0xffffffff81a5a1a9", "rip=0xffffffff81a5a3e0") + "\n" + SYMBOLS) is None


def test_a_spin_with_interrupts_on_is_not_the_platform_limit() -> None:
    assert recognise(STOP.replace("rflags=0x2 ", "rflags=0x202 ") + "\n" + SYMBOLS) is None


def test_an_exception_frame_is_not_an_interrupt_delivery() -> None:
    """A fault's frame carries its error code in orig_ax, not -1: a page fault with IF clear
    is legal, so it does not prove a delivery against IF."""
    assert recognise(STOP.replace("0xffffffffffffffff 0xffffffff81e01580", "0x0 0xffffffff81e01580")
                     + "\n" + SYMBOLS) is None


def test_no_symbols_or_no_stop_line_recognises_nothing() -> None:
    assert recognise(STOP) is None
    assert recognise(SYMBOLS) is None
    assert recognise("") is None
