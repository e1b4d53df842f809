"""Integration: interrupts through the in-kernel PIC, IOAPIC and LAPIC (MSI), the PIT,
UART receive interrupts raised by host input, and SMP bring-up with INIT/SIPI."""

from __future__ import annotations

import time

import pytest

from god.kvm import ioctls as k
from guestbuild import build_c64, run_guest

UART_RX_COMMON = r"""
static volatile int got = -1, irqs;
static void uart_isr(u64 v) {
    irqs++;
    while (inb(0x3fd) & 1) got = inb(0x3f8);
    ACK();
}
int main(void) {
    idt_init();
    SETUP();
    handlers[VEC] = uart_isr;
    outb(0x3f9, 0x01);            /* IER: received-data interrupt */
    puts("READY\n");
    while (got < 0) sti_hlt();    /* HLT stays in the kernel: no busy loop */
    cli();
    puts("GOT "); putc((char)got); putc('\n');
    return irqs;
}
"""


def _feed_on_ready(data: bytes):
    fed = []

    def on_output(m, out: bytes) -> None:
        if b"READY\n" in out and not fed:
            fed.append(1)
            m.uart.feed(data)
    return on_output


def test_uart_rx_interrupt_through_pic(kvm, gcc, tmp_path):
    src = ("#define VEC 0x24\n#define ACK() pic_eoi(4)\n"
           "#define SETUP() do { pic_init(); pic_unmask(4); } while (0)\n" + UART_RX_COMMON)
    r = run_guest(build_c64(tmp_path, src), on_output=_feed_on_ready(b"x"), timeout=20)
    assert "GOT x" in r.text, (r.result, r.text)
    assert r.result.status == (1 << 1) | 1  # exactly one interrupt


def test_uart_rx_interrupt_through_ioapic(kvm, gcc, tmp_path):
    src = ("#define VEC 0x41\n#define ACK() lapic_eoi()\n"
           "#define SETUP() do { pic_init(); lapic_enable(); ioapic_route(4, 0x41, 0); } while (0)\n"
           + UART_RX_COMMON)
    r = run_guest(build_c64(tmp_path, src), on_output=_feed_on_ready(b"q"), timeout=20)
    assert "GOT q" in r.text, (r.result, r.text)
    assert r.result.status == 3


MSI_C = r"""
static volatile int n;
static void msi_isr(u64 v) { n++; lapic_eoi(); }
int main(void) {
    idt_init(); pic_init(); lapic_enable();
    handlers[0x52] = msi_isr;
    puts("READY\n");
    for (int seen = 0; seen < 3; ) {
        sti_hlt();
        cli();
        if (n > seen) { seen = n; putc('I'); }   /* ask the host for the next one */
    }
    return n;
}
"""


def test_msi_through_lapic(kvm, gcc, tmp_path):
    sent = []

    def on_output(m, out: bytes) -> None:
        # One MSI (fixed delivery to APIC 0, vector 0x52) after READY and after each 'I':
        # MSIs sent back to back would coalesce in the LAPIC's IRR bit.
        if b"READY\n" in out and len(sent) <= out.count(b"I") and len(sent) < 3:
            sent.append(m.vm.signal_msi(0xFEE00000, 0x52))
    r = run_guest(build_c64(tmp_path, MSI_C), on_output=on_output, timeout=20)
    assert r.result.status == (3 << 1) | 1, (r.result, r.text)
    assert sent == [1, 1, 1]  # KVM_SIGNAL_MSI: delivered each time


PIT_C = r"""
static volatile int ticks;
static void pit_isr(u64 v) { ticks++; pic_eoi(0); }
int main(void) {
    idt_init(); pic_init();
    handlers[0x20] = pit_isr;
    outb(0x43, 0x34);                 /* channel 0, lobyte/hibyte, mode 2 (rate generator) */
    outb(0x40, 1193 & 0xff); outb(0x40, 1193 >> 8);   /* 1193182 / 1193 = ~1000 Hz */
    pic_unmask(0);
    puts("START\n");
    while (ticks < 100) sti_hlt();
    cli();
    puts("DONE\n");
    return 100;
}
"""


def test_pit_ticks_counted_by_guest(kvm, gcc, tmp_path):
    stamps: dict[str, float] = {}

    def on_output(m, out: bytes) -> None:
        for word in ("START", "DONE"):
            if word.encode() in out and word not in stamps:
                stamps[word] = time.monotonic()
    r = run_guest(build_c64(tmp_path, PIT_C), on_output=on_output, timeout=30)
    assert r.result.status == (100 << 1 | 1) & 0xFF, (r.result, r.text)
    elapsed = stamps["DONE"] - stamps["START"]
    # 100 ticks at ~1 kHz = 0.1 s; generous bounds for a shared, loaded machine.
    assert 0.08 < elapsed < 5.0, elapsed


PIT_PROGRAM_C = r"""
int main(void) {
    outb(0x43, 0x34); outb(0x40, 0xa9); outb(0x40, 0x04);   /* ch0 mode 2, count 0x04a9 */
    outb(0x43, 0xb0); outb(0x42, 0x34); outb(0x42, 0x12);   /* ch2 mode 0, count 0x1234 */
    outb(0x43, 0x00);                                        /* latch ch0 */
    u8 lo = inb(0x40), hi = inb(0x40);
    u16 c = lo | hi << 8;
    return (c > 0 && c <= 0x04a9) ? 1 : 2;                   /* counting down from 0x4a9 */
}
"""


def test_pit_programming_through_in_kernel_device(kvm, gcc, tmp_path):
    r = run_guest(build_c64(tmp_path, PIT_PROGRAM_C), keep=True, irqchip="kernel")
    try:
        assert r.result.status == 3, (r.result, r.text)
        st = r.machine.vm.get_pit2()
        assert st.channels[0].count == 0x04A9 and st.channels[0].mode == 2
        assert st.channels[0].rw_mode == 3  # lobyte then hibyte
        assert st.channels[2].count == 0x1234 and st.channels[2].mode == 0
        # No PIT port access reached userspace: the in-kernel PIT handled them all.
        assert not any(0x40 <= p <= 0x43 for p in r.machine.pio.unassigned)
    finally:
        r.machine.close()


def test_pit_programming_through_gods_own_device(kvm, gcc, tmp_path):
    r = run_guest(build_c64(tmp_path, PIT_PROGRAM_C), keep=True)  # split irqchip (default)
    try:
        assert r.result.status == 3, (r.result, r.text)
        ch = r.machine.irqchip.pit.channels
        assert (ch[0].count_reg, ch[0].mode, ch[0].rw) == (0x04A9, 2, 3)
        assert (ch[2].count_reg, ch[2].mode) == (0x1234, 0)
        assert not any(0x40 <= p <= 0x43 for p in r.machine.pio.unassigned)
    finally:
        r.machine.close()


@pytest.mark.parametrize("irqchip", ["split", "kernel"])
def test_pit_ticks_on_both_irqchips(kvm, gcc, tmp_path, irqchip):
    r = run_guest(build_c64(tmp_path, PIT_C), timeout=30, irqchip=irqchip)
    assert r.result.status == (100 << 1 | 1) & 0xFF, (r.result, r.text)


SMP_C = r"""
/* 16-bit AP trampoline, copied to 0x8000: print "AP" and set a flag at 0x9000. */
__asm__(".code16\n"
        "tramp_start:\n"
        "  mov %cs, %ax\n  mov %ax, %ds\n"
        "  mov $0x3f8, %dx\n  mov $'A', %al\n  out %al, %dx\n  mov $'P', %al\n  out %al, %dx\n"
        "  movw $0x4242, 0x1000\n"
        "1: cli\n  hlt\n  jmp 1b\n"
        "tramp_end:\n"
        ".code64\n");
extern char tramp_start[], tramp_end[];
static void icr(u32 hi, u32 lo) {
    MMIO(u32, LAPIC + 0x310) = hi; MMIO(u32, LAPIC + 0x300) = lo;
    while (MMIO(u32, LAPIC + 0x300) & (1 << 12)) pause();   /* delivery pending */
}
int main(void) {
    lapic_enable();
    for (char *s = tramp_start, *d = (char *)0x8000; s < tramp_end; ) *d++ = *s++;
    icr(1 << 24, 0x4500);            /* INIT to APIC 1 */
    icr(1 << 24, 0x4608);            /* SIPI, vector 0x08 -> 0x8000 */
    for (long i = 0; i < 2000000 && MMIO(u16, 0x9000) != 0x4242; i++) pause();
    if (MMIO(u16, 0x9000) != 0x4242) { puts("no AP\n"); return 2; }
    puts(" BSP"); puthex(lapic_id()); putc('\n');
    return 1;
}
"""


def test_smp_two_vcpus_init_sipi(kvm, gcc, tmp_path):
    r = run_guest(build_c64(tmp_path, SMP_C), cpus=2, timeout=30)
    assert r.result.status == 3, (r.result, r.text)
    assert r.text.startswith("AP BSP0x0000000000000000"), r.text
    assert r.machine.runners[1].exits >= 2  # the AP's own port I/O exits


def test_exit_reason_names_are_known():
    assert k.EXIT_NAMES[k.EXIT_INTERNAL_ERROR] == "INTERNAL_ERROR"
