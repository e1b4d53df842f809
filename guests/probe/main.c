/* Boot: CPU tables, interrupt controllers, timers, the UART, the AP, then the agent. */
#include "probe.h"

volatile int cpus_online = 1;
const char *boot_protocol = "?";

void *memcpy(void *d, const void *s, unsigned long n) {
    u8 *dp = d;
    const u8 *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memset(void *d, int c, unsigned long n) {
    u8 *dp = d;
    while (n--)
        *dp++ = (u8)c;
    return d;
}

void panic_exit(const char *why, u64 a, u64 b) {
    log_kv(why, "a", a, "b", b);
    uart_puts("probe: fatal, leaving through the exit port\r\n");
    outb(EXIT_PORT, 0x7F);
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* How many CPUs to wait for: CPUID's logical-processor count when it claims more than one
 * (QEMU reports -smp there). A VMM whose CPUID says nothing still gets a short chance. */
static int expected_cpus(void) {
    u32 r[4];
    cpuid(1, 0, r);
    int n = (r[3] & (1u << 28)) ? (int)((r[1] >> 16) & 0xFF) : 1;
    return n < 1 ? 1 : n > MAX_CPUS ? MAX_CPUS : n;
}

/* INIT-SIPI-SIPI to the other APIC ID; the trampoline must sit below 1 MiB on a 4 KiB
 * boundary (the SIPI vector is its page number). */
static void start_ap(void) {
    memcpy((void *)TRAMP_BASE, tramp_start, (unsigned long)(tramp_end - tramp_start));
    ap_stack_top = (u64)cpu_stacks + 2 * STACK_SIZE;
    u8 target = apic_ids[0] == 0 ? 1 : 0;
    /* a busy host may be slow to schedule a new vCPU thread: wait long when one is expected */
    /* The larger of the two claims: SeaBIOS under PVM lists only the CPUs it saw (1 of 2), and
     * a VMM's CPUID may overstate (god passes the host's count through). A late AP still comes
     * online on its own; this only bounds how long boot waits for it. */
    int expected = mp.found && mp.cpus > expected_cpus() ? mp.cpus : expected_cpus();
    u64 wait_ms = expected > 1 ? 2000 : 30;
    ipi_send(target, 0x4500); /* INIT, assert */
    delay_us(10000);
    for (int i = 0; i < 2 && cpus_online < 2; i++) {
        ipi_send(target, 0x4600 | (TRAMP_BASE >> 12)); /* STARTUP */
        u64 end = rdtsc() + ns_to_tsc((i ? wait_ms : 10) * 1000000ULL);
        while (cpus_online < 2 && rdtsc() < end)
            pause();
    }
}

void ap_main(void) {
    idt_init();
    lapic_init();
    cpus_online = 2;
    agent_ap_loop(1);
}

void kmain(void) {
    tsc_boot = rdtsc();
    /* PVH first: QEMU's PVH option ROM leaves the multiboot magic in eax */
    if (boot_ebx && *(volatile u32 *)(u64)boot_ebx == 0x336EC578)
        boot_protocol = "pvh";
    else if (boot_eax == 0x2BADB002)
        boot_protocol = "multiboot";
    uart_init();
    uart_puts("probe: booting\r\n");
    idt_init();
    pic_disable();
    lapic_init();
    mp_parse();
    ioapic_init();
    timer_calibrate();
    log_kv("probe: timers", "tsc_khz", tsc_khz, "lapic_khz", lapic_khz);
    line_route(UART_LINE, UART_LINE, 0, 0);
    uart_enable_rx_irq();
    sti();
    start_ap();
    log_kv("probe: mptable", "cpus", mp.found ? (u64)mp.cpus : 0xFF, "irq0_pin", (u64)line_pin(0));
    log_kv("probe: cpus", "online", (u64)cpus_online, "bsp_apic", apic_ids[0]);
    agent_banner();
    agent_loop();
}
