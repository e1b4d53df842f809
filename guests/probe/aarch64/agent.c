/* The arm64 probe's agent (docs/agent-protocol.md): request lines in over the PL011, replies
 * out. Commands that have an x86 meaning keep their names with the GIC's (line = INTID);
 * GIC, generic timer and PSCI checks have commands of their own. "cpu=N" runs a request on
 * vCPU N through a mailbox (SEV wakes it). */
#include "probe.h"
#include "../protocol.h"

static u64 ms_to_cnt(u64 ms) { return ns_to_cnt(ms * 1000000ULL); }

/* ------------------------------------------------------------------ commands */
static int h_hello(struct ctx *c) {
    u64 f = cntfrq();
    o_kv_str(c->o, "name", "probe");
    o_kv_str(c->o, "arch", "aarch64");
    o_kv_dec(c->o, "proto", 1);
    o_kv_dec(c->o, "cpus", (u64)cpus_online);
    o_kv_dec(c->o, "tsc_khz", f / 1000);
    o_kv_dec(c->o, "cntfrq", f);
    o_kv_dec(c->o, "el", read_sysreg(CurrentEL) >> 2);
    o_kv_hex(c->o, "midr", read_sysreg(midr_el1));
    o_kv_dec(c->o, "gic_lines", gic_spi_lines());
    o_kv_hex(c->o, "boot_cpu_on", (u64)boot_cpu_on);
    o_kv_str(c->o, "caps", "mmio,irq,timer,uart,exit,smp,gic,psci");
    return 0;
}

static int h_ping(struct ctx *c) {
    o_kv_dec(c->o, "cpu", (u64)c->cpu);
    return 0;
}

static int guarded(struct ctx *c, int write, u64 addr, u64 width, u64 *value) {
    int cpu = c->cpu;
    if (width != 1 && width != 2 && width != 4 && width != 8)
        return E_WIDTH;
    if (addr & (width - 1)) {
        c->err_text = "unaligned";
        return E_ARG; /* Device memory (MMU off) faults on an unaligned access */
    }
    guard_esr[cpu] = 0;
    guard_armed[cpu] = 1;
    dsb();
    if (write) {
        if (width == 1) mmio_wr8(addr, *value);
        else if (width == 2) mmio_wr16(addr, *value);
        else if (width == 4) mmio_wr32(addr, *value);
        else mmio_wr64(addr, *value);
    } else {
        if (width == 1) *value = mmio_rd8(addr);
        else if (width == 2) *value = mmio_rd16(addr);
        else if (width == 4) *value = mmio_rd32(addr);
        else *value = mmio_rd64(addr);
    }
    dsb();
    guard_armed[cpu] = 0;
    if (guard_esr[cpu]) {
        c->err_text = "data_abort";
        return E_FAULT;
    }
    return 0;
}

static int h_rd(struct ctx *c) {
    ARG(addr, "addr", 1, 0, ~0ULL);
    ARG(width, "width", 1, 0, 8);
    u64 v = 0;
    int rc = guarded(c, 0, addr, width, &v);
    if (rc)
        return rc;
    o_kv_hex(c->o, "value", v);
    return 0;
}

static int h_wr(struct ctx *c) {
    ARG(addr, "addr", 1, 0, ~0ULL);
    ARG(width, "width", 1, 0, 8);
    ARG(value, "value", 1, 0, ~0ULL);
    if (width < 8 && value >> (width * 8)) {
        c->err_text = "value";
        return E_ARG;
    }
    return guarded(c, 1, addr, width, &value);
}

static int line_arg(struct ctx *c, u64 *line) {
    int rc = arg_u64(c, "line", line, 1, 0, gic_spi_lines() - 1);
    if (!rc && (*line == UART_INTID || *line == PTIMER_INTID || *line == CALL_SGI)) {
        c->err_text = "line_is_the_agents_own";
        return E_ARG;
    }
    return rc;
}

static int h_irq_arm(struct ctx *c) {
    u64 line;
    int rc = line_arg(c, &line);
    if (rc)
        return rc;
    ARG(prio, "prio", 0, 0xa0, 0xff);
    const char *trig = arg_str(c, "trig"), *eoi = arg_str(c, "eoi");
    manual_eoi[line] = eoi && streq(eoi, "manual");
    gic_config((int)line, c->cpu, trig && streq(trig, "level"), (u8)prio);
    gic_enable((int)line, c->cpu, 1);
    o_kv_hex(c->o, "vector", line);
    o_kv_hex(c->o, "pin", line);
    return 0;
}

static int h_irq_mask(struct ctx *c) {
    u64 line;
    int rc = line_arg(c, &line);
    if (!rc)
        gic_enable((int)line, c->cpu, 0);
    return rc;
}

static int h_irq_unmask(struct ctx *c) {
    u64 line;
    int rc = line_arg(c, &line);
    if (!rc)
        gic_enable((int)line, c->cpu, 1);
    return rc;
}

static int h_irq_count(struct ctx *c) {
    ARG(line, "line", 1, 0, NINTID - 1);
    u64 n = 0;
    for (int i = 0; i < MAX_CPUS; i++)
        n += intid_counts[i][line];
    o_kv_dec(c->o, "count", n);
    o_kv_hex(c->o, "vector", line);
    o_kv_dec(c->o, "masked", !gic_enabled((int)line, c->cpu));
    return 0;
}

static int h_vec_count(struct ctx *c) {
    ARG(vector, "vector", 1, 0, NINTID - 1);
    o_kv_dec(c->o, "count", intid_counts[c->cpu][vector]);
    return 0;
}

static int h_counts_reset(struct ctx *c) {
    for (int i = 0; i < MAX_CPUS; i++)
        for (int j = 0; j < NINTID; j++)
            if (j != UART_INTID)
                intid_counts[i][j] = 0;
    return 0;
}

static int h_eoi(struct ctx *c) {
    o_kv_dec(c->o, "sent", (u64)gic_release_held(c->cpu));
    return 0;
}

static int h_ipi(struct ctx *c) {
    ARG(to, "to", 1, 0, MAX_CPUS - 1);
    ARG(vector, "vector", 1, 0, CALL_SGI - 1);
    ARG(n, "n", 0, 1, 1000);
    if (!cpu_up[to])
        return E_NOCPU;
    u64 received = 0;
    for (u64 i = 0; i < n; i++) {
        u32 before = intid_counts[to][vector];
        gic_sgi((int)to, (int)vector);
        u64 end = cntvct() + ms_to_cnt(100);
        WAIT_UNTIL(intid_counts[to][vector] != before, end);
        received += intid_counts[to][vector] != before;
    }
    o_kv_dec(c->o, "sent", n);
    o_kv_dec(c->o, "received", received);
    return 0;
}

static int h_clock(struct ctx *c) {
    u64 t = cntvct();
    o_kv_dec(c->o, "tsc", t);
    o_kv_dec(c->o, "cnt", t);
    o_kv_dec(c->o, "ns", cnt_to_ns(t));
    o_kv_dec(c->o, "cpu", (u64)c->cpu);
    o_kv_dec(c->o, "cntfrq", cntfrq());
    return 0;
}

static int h_halt(struct ctx *c) {
    ARG(ms, "ms", 1, 0, 600000);
    u64 start = cntvct(), end = start + ms_to_cnt(ms), wakeups = 0;
    while (cntvct() < end) {
        irq_off();
        if (cntvct() < end) {
            ptimer_arm(end);
            __asm__ volatile("wfi" ::: "memory");
        }
        irq_on();
        wakeups++;
    }
    o_kv_dec(c->o, "ns", cnt_to_ns(cntvct() - start));
    o_kv_dec(c->o, "wakeups", wakeups);
    return 0;
}

static int h_uart_stats(struct ctx *c) {
    o_kv_dec(c->o, "rx_bytes", rx_bytes);
    o_kv_dec(c->o, "rx_irqs", rx_irqs);
    o_kv_dec(c->o, "overruns", rx_overruns);
    o_kv_dec(c->o, "dropped", rx_dropped);
    return 0;
}

static int h_rx_burst(struct ctx *c) {
    ARG(n, "n", 1, 1, 1000000);
    ARG(ms, "ms", 0, 5000, 600000);
    struct out g;
    g.n = 0;
    u32 irq0 = rx_irqs, ovr0 = rx_overruns, drop0 = rx_dropped, empty0 = rx_empty_irqs;
    while (rx_available())
        (void)rx_getc();
    send_go(&g);
    u64 end = cntvct() + ms_to_cnt(ms), got = 0;
    u32 h = 0x811C9DC5u;
    while (got < n) {
        int ch = rx_getc();
        if (ch < 0) {
            WAIT_UNTIL(rx_available(), end);
            if (!rx_available())
                break;
            continue;
        }
        h = (h ^ (u32)ch) * 0x01000193u;
        got++;
    }
    o_kv_dec(c->o, "bytes", got);
    o_kv_dec(c->o, "irqs", rx_irqs - irq0);
    o_kv_hex(c->o, "fnv", h);
    o_kv_dec(c->o, "overruns", rx_overruns - ovr0);
    o_kv_dec(c->o, "dropped", rx_dropped - drop0);
    o_kv_dec(c->o, "timed_out", got < n);
    o_kv_dec(c->o, "empty_irqs", rx_empty_irqs - empty0);
    return 0;
}

static int h_exit(struct ctx *c) {
    ARG(status, "status", 0, 0, 0x7f);
    system_exit(status);
    return E_UNSUPPORTED; /* still running: neither semihosting nor SYSTEM_OFF stopped us */
}

/* --- GICv3 CPU interface */
static int h_gic_pmr(struct ctx *c) {
    ARG(value, "value", 0, 0x100, 0x100);
    o_kv_hex(c->o, "old", read_sysreg(ICC_PMR_EL1));
    if (value <= 0xff) {
        write_sysreg(ICC_PMR_EL1, value);
        isb();
    }
    o_kv_hex(c->o, "pmr", read_sysreg(ICC_PMR_EL1));
    o_kv_hex(c->o, "rpr", read_sysreg(ICC_RPR_EL1));
    return 0;
}

static int h_gic_eoimode(struct ctx *c) {
    ARG(mode, "mode", 1, 0, 1);
    if (nheld[c->cpu]) {
        c->err_text = "eois_held";
        return E_ARG;
    }
    o_kv_dec(c->o, "old", (u64)eoimode[c->cpu]);
    gic_set_eoimode((int)mode);
    o_kv_dec(c->o, "mode", read_sysreg(ICC_CTLR_EL1) >> 1 & 1);
    return 0;
}

/* GICR_WAKER (IHI 0069, 12.11.41): ProcessorSleep=1 must be followed by ChildrenAsleep=1,
 * ProcessorSleep=0 by ChildrenAsleep=0; done with interrupts masked (the redistributor does
 * not forward while asleep) and always left awake */
/* Polls of ChildrenAsleep: immediate on QEMU, a few on hardware; each poll is an MMIO exit
 * (~2 ms in the ARM64 lane), so a GIC that never answers costs ~4 s, not the agent's timeout. */
#define WAKER_SPINS 2000u
static int h_gicr_waker(struct ctx *c) {
    u64 w = gicr_base(c->cpu) + 0x14;
    irq_off();
    u32 before = r32(w);
    w32(w, before | 2);
    u32 asleep = 0, spins_sleep = 0, spins_wake = 0;
    for (; spins_sleep < WAKER_SPINS && !((asleep = r32(w)) & 4); spins_sleep++)
        ;
    w32(w, r32(w) & ~2u);
    u32 awake = 0;
    for (; spins_wake < WAKER_SPINS && ((awake = r32(w)) & 4); spins_wake++)
        ;
    irq_on();
    o_kv_hex(c->o, "before", before);
    o_kv_hex(c->o, "asleep", asleep);
    o_kv_hex(c->o, "awake", awake);
    o_kv_dec(c->o, "spins_sleep", spins_sleep);
    o_kv_dec(c->o, "spins_wake", spins_wake);
    return 0;
}

/* --- generic timer: CNTV one-shot, polled as well so it answers if the PPI never comes */
static int h_cntv_oneshot(struct ctx *c) {
    ARG(us, "us", 1, 1, 600000000ULL);
    int cpu = c->cpu;
    u64 ticks = ns_to_cnt(us * 1000ULL);
    u32 before = vtimer_fired[cpu];
    u64 start = cntvct(), cval = start + ticks;
    write_sysreg(cntv_cval_el0, cval);
    write_sysreg(cntv_ctl_el0, 1); /* ENABLE, IMASK=0 */
    isb();
    u64 end = cval + ticks + ms_to_cnt(1000);
    WAIT_UNTIL(vtimer_fired[cpu] != before, end);
    int fired = vtimer_fired[cpu] != before;
    u64 at = fired ? vtimer_at[cpu] : cntvct();
    u64 ctl = read_sysreg(cntv_ctl_el0);
    write_sysreg(cntv_ctl_el0, 0);
    isb();
    o_kv_dec(c->o, "requested_ns", us * 1000ULL);
    o_kv_dec(c->o, "elapsed_ns", cnt_to_ns(at - start));
    o_kv_dec(c->o, "fired", (u64)fired);
    o_kv_dec(c->o, "count", vtimer_fired[cpu] - before);
    o_kv_dec(c->o, "start", start);
    o_kv_dec(c->o, "cval", cval);
    o_kv_dec(c->o, "at", at);
    o_kv_dec(c->o, "early", at < cval);
    o_kv_hex(c->o, "ctl", ctl);
    return 0;
}

/* --- PSCI (DEN0022) over HVC */
static int h_psci(struct ctx *c) {
    ARG(fid, "fid", 1, 0, 0xffffffffULL);
    ARG(a1, "a1", 0, 0, ~0ULL);
    ARG(a2, "a2", 0, 0, ~0ULL);
    ARG(a3, "a3", 0, 0, ~0ULL);
    if (fid == PSCI_CPU_ON || fid == 0x84000009ULL) { /* CPU_ON needs our entry; no SYSTEM_RESET */
        c->err_text = "use_cpu_on";
        return E_ARG;
    }
    if (fid == PSCI_SYSTEM_OFF)
        irq_off(); /* SYSTEM_OFF does not return (DEN0022 5.10); if it does, we say so */
    i64 r = psci_call(fid, a1, a2, a3);
    o_kv_hex(c->o, "ret", (u64)r);
    return 0;
}

static int h_cpu_on(struct ctx *c) {
    ARG(target, "target", 1, 0, MAX_CPUS - 1);
    ARG(ms, "ms", 0, 2000, 60000);
    /* MPIDR of vCPU n on QEMU virt and god: Aff0 = n */
    i64 r = psci_call(PSCI_CPU_ON, target, (u64)secondary_entry, target);
    u64 end = cntvct() + ms_to_cnt(ms);
    if (r == 0)
        WAIT_UNTIL(cpu_up[target], end);
    o_kv_hex(c->o, "ret", (u64)r);
    o_kv_dec(c->o, "online", (u64)cpu_up[target]);
    o_kv_dec(c->o, "cpus", (u64)cpus_online);
    return 0;
}

/* --- PL011 transmit interrupt (DDI 0183, UARTTXINTR; UARTRIS/UARTMIS/UARTICR/UARTIMSC):
 * with the agent's interrupts masked and the FIFOs off (one-character holding register), the
 * raw status TXRIS is cleared by ICR, set again once a written byte has left, and
 * MIS = RIS AND IMSC. LCR_H and IMSC are restored. */
static int h_uart_tx_irq(struct ctx *c) {
    u64 u = UART_BASE;
    irq_off();
    while (!(r32(u + 0x18) & (1u << 7)) || (r32(u + 0x18) & (1u << 3)))
        ; /* TXFE and not BUSY: nothing of ours in flight */
    u32 imsc = r32(u + 0x38), lcr_h = r32(u + 0x2C);
    w32(u + 0x2C, lcr_h & ~(1u << 4)); /* FEN=0 */
    w32(u + 0x44, 1u << 5);
    u32 ris_cleared = r32(u + 0x3C);
    w32(u + 0x00, '\r'); /* one harmless byte through the FIFO */
    while (!(r32(u + 0x18) & (1u << 7)) || (r32(u + 0x18) & (1u << 3)))
        ;
    u32 ris_sent = r32(u + 0x3C);
    w32(u + 0x38, imsc | 1u << 5);
    u32 mis_unmasked = r32(u + 0x40), ris_unmasked = r32(u + 0x3C);
    w32(u + 0x38, imsc & ~(1u << 5));
    u32 mis_masked = r32(u + 0x40), ris_masked = r32(u + 0x3C);
    w32(u + 0x44, 1u << 5);
    u32 ris_after_icr = r32(u + 0x3C);
    w32(u + 0x2C, lcr_h);
    w32(u + 0x38, imsc);
    irq_on();
    o_kv_hex(c->o, "ris_cleared", ris_cleared);
    o_kv_hex(c->o, "ris_sent", ris_sent);
    o_kv_hex(c->o, "ris_unmasked", ris_unmasked);
    o_kv_hex(c->o, "mis_unmasked", mis_unmasked);
    o_kv_hex(c->o, "ris_masked", ris_masked);
    o_kv_hex(c->o, "mis_masked", mis_masked);
    o_kv_hex(c->o, "ris_after_icr", ris_after_icr);
    o_kv_hex(c->o, "imsc", imsc);
    return 0;
}

static const struct command commands[] = {
    {"hello", h_hello, 0},
    {"ping", h_ping, 0},
    {"rd", h_rd, 0},
    {"wr", h_wr, 0},
    {"irq_arm", h_irq_arm, 0},
    {"irq_mask", h_irq_mask, 0},
    {"irq_unmask", h_irq_unmask, 0},
    {"irq_count", h_irq_count, 0},
    {"vec_count", h_vec_count, 0},
    {"counts_reset", h_counts_reset, 1},
    {"eoi", h_eoi, 0},
    {"ipi", h_ipi, 0},
    {"clock", h_clock, 0},
    {"halt", h_halt, 0},
    {"uart_stats", h_uart_stats, 1},
    {"rx_burst", h_rx_burst, 1},
    {"exit", h_exit, 1},
    {"gic_pmr", h_gic_pmr, 0},
    {"gic_eoimode", h_gic_eoimode, 0},
    {"gicr_waker", h_gicr_waker, 0},
    {"cntv_oneshot", h_cntv_oneshot, 0},
    {"psci", h_psci, 0},
    {"cpu_on", h_cpu_on, 1},
    {"uart_tx_irq", h_uart_tx_irq, 1},
};

/* ------------------------------------------------------------------ cross-CPU mailbox */
static volatile struct {
    const struct command *cmd;
    struct ctx *c;
    int rc;
    int pending, done;
} mailbox[MAX_CPUS];

int agent_run_on(int cpu, const struct command *cmd, struct ctx *c) {
    if (cpu == 0)
        return cmd->fn(c);
    mailbox[cpu].cmd = cmd;
    mailbox[cpu].c = c;
    mailbox[cpu].done = 0;
    dsb();
    mailbox[cpu].pending = 1;
    dsb();
    gic_sgi(cpu, CALL_SGI); /* wakes its WFI (TCG runs WFE as a mere yield: it would spin) */
    u64 end = cntvct() + ms_to_cnt(30000);
    while (!mailbox[cpu].done && cntvct() < end)
        ;
    if (!mailbox[cpu].done) {
        c->err_text = "cpu_did_not_answer";
        return E_TIMEOUT;
    }
    return mailbox[cpu].rc;
}

void agent_secondary_loop(int cpu) {
    irq_on();
    for (;;) {
        if (mailbox[cpu].pending) {
            mailbox[cpu].pending = 0;
            mailbox[cpu].rc = mailbox[cpu].cmd->fn(mailbox[cpu].c);
            dsb();
            mailbox[cpu].done = 1;
            dsb();
        }
        irq_off();
        if (!mailbox[cpu].pending)
            __asm__ volatile("wfi" ::: "memory");
        irq_on();
    }
}

/* ------------------------------------------------------------------ the console loop */
int agent_cpu_state(u64 cpu) {
    if (cpu >= MAX_CPUS)
        return -1;
    return cpu_up[cpu] != 0;
}

void agent_wait_for_rx(void) {
    irq_off();
    if (!rx_available())
        __asm__ volatile("wfi" ::: "memory");
    irq_on();
}

void agent_loop(void) { agent_serve(commands, sizeof(commands) / sizeof(commands[0])); }
