/* The arm64 probe's boot order, exceptions and exit. */
#include "probe.h"

u8 cpu_stacks[MAX_CPUS * STACK_SIZE] __attribute__((aligned(16)));
volatile int cpus_online;
volatile int cpu_up[MAX_CPUS];
volatile int semihost_failed;
volatile int guard_armed[MAX_CPUS];
volatile u64 guard_esr[MAX_CPUS];
static volatile int semihost_trying;
i64 boot_cpu_on;

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

/* Exit with a status the host sees, (s << 1) | 1 as through the x86 exit port: Arm semihosting
 * SYS_EXIT (ADP_Stopped_ApplicationExit) where the hypervisor implements it (QEMU TCG), else
 * PSCI SYSTEM_RESET2 with god's vendor reset type and s as the cookie where PSCI_FEATURES
 * says RESET2 exists (KVM's PSCI 1.1: god), else a plain SYSTEM_OFF (x1 carries the odd status
 * for a VMM that wants it; DEN0022 gives SYSTEM_OFF no arguments). */
void system_exit(u64 status) {
    static u64 block[2];
    irq_off();
    block[0] = 0x20026;
    block[1] = (status << 1) | 1;
    semihost_trying = 1;
    semihost_exit(block);
    semihost_trying = 0;
    if (psci_call(PSCI_FEATURES, PSCI_SYSTEM_RESET2, 0, 0) >= 0)
        psci_call(PSCI_SYSTEM_RESET2, GOD_RESET2_EXIT, status, 0);
    psci_call(PSCI_SYSTEM_OFF, block[1], 0, 0);
}

void panic_exit(const char *why, u64 a, u64 b) {
    log_kv(why, "a", a, "b", b);
    uart_puts("probe: fatal, leaving through SYSTEM_OFF\r\n");
    system_exit(0x7F);
    for (;;)
        __asm__ volatile("wfi");
}

struct frame {
    u64 x[31];
    u64 elr, spsr;
};

static const char *kind_name(u64 kind) {
    static const char *names[] = {"sync-sp0", "irq-sp0", "fiq-sp0", "serror-sp0", "sync", "irq", "fiq", "serror",
                                  "lower-el"};
    return kind <= EXC_LOWER ? names[kind] : "?";
}

void exc_handler(struct frame *f, u64 kind) {
    int cpu = this_cpu();
    if (kind == EXC_IRQ) {
        irq_dispatch(cpu);
        return;
    }
    u64 esr = read_sysreg(esr_el1), ec = esr >> 26 & 0x3f;
    if (kind == EXC_SYNC && ec == 0x25 && guard_armed[cpu]) { /* data abort of a guarded rd/wr */
        guard_esr[cpu] = esr | 1ULL << 63;
        f->elr += 4;
        return;
    }
    if (kind == EXC_SYNC && ec == 0x00 && semihost_trying) { /* HLT #0xF000 is UNDEFINED here */
        semihost_failed = 1;
        f->elr += 4;
        return;
    }
    struct out o;
    o.n = 0;
    o_str(&o, "probe: PANIC unexpected exception ");
    o_str(&o, kind_name(kind));
    o_kv_dec(&o, "cpu", (u64)cpu);
    o_kv_hex(&o, "esr", esr);
    o_kv_hex(&o, "elr", f->elr);
    o_kv_hex(&o, "far", read_sysreg(far_el1));
    o_kv_hex(&o, "spsr", f->spsr);
    o_str(&o, "\r\n");
    uart_write(o.buf, o.n);
    system_exit(0x7E);
    for (;;)
        __asm__ volatile("wfi");
}

void secondary_main(int cpu) {
    gic_cpu_init(cpu);
    gic_config(PTIMER_INTID, cpu, 1, 0x80); /* its own timers: the agent's waits and CNTV */
    gic_enable(PTIMER_INTID, cpu, 1);
    gic_config(VTIMER_INTID, cpu, 1, 0x90);
    gic_enable(VTIMER_INTID, cpu, 1);
    gic_config(CALL_SGI, cpu, 0, 0x80);
    gic_enable(CALL_SGI, cpu, 1);
    cpu_up[cpu] = 1;
    cpus_online++; /* the BSP waits for cpu_up; cpus_online has this one writer here */
    dsb();
    __asm__ volatile("sev");
    agent_secondary_loop(cpu);
}

void probe_main(u64 dtb) {
    uart_init();
    cpus_online = 1;
    cpu_up[0] = 1;
    u64 el = read_sysreg(CurrentEL) >> 2;
    log_kv("probe: arm64 boot", "dtb", dtb, "el", el);
    log_kv("probe: timer", "cntfrq", cntfrq(), "cntvct", cntvct());
    gic_dist_init();
    gic_cpu_init(0);
    gic_config(UART_INTID, 0, 1, 0x80); /* the console above every test line (0xa0) */
    gic_enable(UART_INTID, 0, 1);
    gic_config(PTIMER_INTID, 0, 1, 0x80);
    gic_enable(PTIMER_INTID, 0, 1);
    gic_config(VTIMER_INTID, 0, 1, 0x90);
    gic_enable(VTIMER_INTID, 0, 1);
    irq_on();
    /* vCPU 1, if the machine has one: PSCI CPU_ON (DEN0022 5.6) with our secondary entry;
     * NOT_PRESENT/INVALID_PARAMETERS on a one-vCPU machine */
    boot_cpu_on = psci_call(PSCI_CPU_ON, 1, (u64)secondary_entry, 1);
    if (boot_cpu_on == 0) {
        u64 end = cntvct() + ns_to_cnt(2000000000ULL);
        WAIT_UNTIL(cpu_up[1], end);
    }
    log_kv("probe: cpu_on", "ret", (u64)boot_cpu_on, "online", (u64)cpus_online);
    agent_banner();
    agent_loop();
}
