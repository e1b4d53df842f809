/* The x86 probe's commands (docs/agent-protocol.md); the framing and the console loop are
 * protocol.c, shared with the arm64 probe.
 *
 * The BSP reads and answers; "cpu=N" hands the parsed request to that CPU through a mailbox
 * and an IPI, and the BSP prints what it wrote. */
#include "probe.h"
#include "protocol.h"

#define MEM_CHUNK 96           /* bytes per mrd/mwr line: 192 hex digits stay under 240 */
#define DMA_AREA_SIZE 0x40000  /* 256 KiB for host-side drivers' rings and buffers */
#define MEM_FILL_MAX DMA_AREA_SIZE /* mwr fill=: at most the whole DMA area in one line */

static u8 dma_area[DMA_AREA_SIZE] __attribute__((aligned(4096)));

static u64 ms_to_tsc(u64 ms) { return ns_to_tsc(ms * 1000000ULL); }

/* ------------------------------------------------------------------ identity */
static void cpuid_vendor(char *dst, u32 leaf) {
    u32 r[4];
    cpuid(leaf, 0, r);
    u32 regs[3] = {r[1], r[2], r[3]};
    int n = 0;
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 4; b++) {
            char ch = (char)(regs[i] >> (8 * b));
            int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
            if (ok)
                dst[n++] = ch;
        }
    if (!n)
        dst[n++] = '-';
    dst[n] = 0;
}

static int h_hello(struct ctx *c) {
    char hv[16];
    u32 r[4];
    cpuid(1, 0, r);
    if (r[2] & (1u << 31))
        cpuid_vendor(hv, 0x40000000);
    else
        hv[0] = '-', hv[1] = 0;
    o_kv_str(c->o, "name", "probe");
    o_kv_str(c->o, "arch", "x86_64");
    o_kv_dec(c->o, "proto", 1);
    o_kv_dec(c->o, "cpus", (u64)cpus_online);
    o_kv_dec(c->o, "tsc_khz", tsc_khz);
    o_kv_dec(c->o, "lapic_khz", lapic_khz);
    o_kv_str(c->o, "boot", boot_protocol);
    o_kv_str(c->o, "hv", hv);
    o_kv_dec(c->o, "mptable", (u64)mp.found);
    o_kv_dec(c->o, "pit_pin", (u64)line_pin(0));
    o_kv_str(c->o, "caps", cpus_online > 1 ? "port,mmio,irq,timer,uart,exit,tickgaps,smp" : "port,mmio,irq,timer,uart,exit,tickgaps");
    return 0;
}

static int h_cpuid(struct ctx *c) {
    ARG(leaf, "leaf", 1, 0, 0xFFFFFFFFULL);
    ARG(sub, "sub", 0, 0, 0xFFFFFFFFULL);
    u32 r[4];
    cpuid((u32)leaf, (u32)sub, r);
    o_kv_hex(c->o, "eax", r[0]);
    o_kv_hex(c->o, "ebx", r[1]);
    o_kv_hex(c->o, "ecx", r[2]);
    o_kv_hex(c->o, "edx", r[3]);
    return 0;
}

static int h_ping(struct ctx *c) {
    o_kv_dec(c->o, "cpu", (u64)c->cpu);
    return 0;
}

/* ------------------------------------------------------------------ port I/O and MMIO */
static int h_in(struct ctx *c) {
    ARG(port, "port", 1, 0, 0xFFFF);
    ARG(width, "width", 0, 1, 8);
    u64 v;
    if (width == 1) v = inb((u16)port);
    else if (width == 2) v = inw((u16)port);
    else if (width == 4) v = inl((u16)port);
    else { c->err_text = "port width must be 1, 2 or 4"; return E_WIDTH; }
    o_kv_hex(c->o, "value", v);
    return 0;
}

static int h_out(struct ctx *c) {
    ARG(port, "port", 1, 0, 0xFFFF);
    ARG(width, "width", 0, 1, 8);
    ARG(value, "value", 1, 0, ~0ULL);
    if (width != 1 && width != 2 && width != 4) { c->err_text = "port width must be 1, 2 or 4"; return E_WIDTH; }
    if (value >> (8 * width)) { c->err_text = "value"; return E_ARG; }
    if (width == 1) outb((u16)port, (u8)value);
    else if (width == 2) outw((u16)port, (u16)value);
    else outl((u16)port, (u32)value);
    return 0;
}

static int guard_end(struct ctx *c, u64 addr) {
    u64 f = guard_fault[c->cpu];
    guard_armed[c->cpu] = 0;
    if (!f)
        return 0;
    c->err_text = f == 15 ? "page fault at" : "general protection fault at";
    c->err_val = addr;
    c->has_err_val = 1;
    return E_FAULT;
}

static int h_rd(struct ctx *c) {
    ARG(addr, "addr", 1, 0, ~0ULL);
    ARG(width, "width", 0, 4, 8);
    u64 (*fn)(u64) = width == 1 ? mmio_rd8 : width == 2 ? mmio_rd16 : width == 4 ? mmio_rd32 : width == 8 ? mmio_rd64 : 0;
    if (!fn) { c->err_text = "width must be 1, 2, 4 or 8"; return E_WIDTH; }
    guard_fault[c->cpu] = 0;
    guard_armed[c->cpu] = 1;
    u64 v = fn(addr);
    int e = guard_end(c, addr);
    if (e)
        return e;
    o_kv_hex(c->o, "value", v);
    return 0;
}

static int h_wr(struct ctx *c) {
    ARG(addr, "addr", 1, 0, ~0ULL);
    ARG(width, "width", 0, 4, 8);
    ARG(value, "value", 1, 0, ~0ULL);
    void (*fn)(u64, u64) = width == 1 ? mmio_wr8 : width == 2 ? mmio_wr16 : width == 4 ? mmio_wr32 : width == 8 ? mmio_wr64 : 0;
    if (!fn) { c->err_text = "width must be 1, 2, 4 or 8"; return E_WIDTH; }
    if (width < 8 && (value >> (8 * width))) { c->err_text = "value"; return E_ARG; }
    guard_fault[c->cpu] = 0;
    guard_armed[c->cpu] = 1;
    fn(addr, value);
    return guard_end(c, addr);
}

/* ------------------------------------------------------------------ interrupts */
static int h_irq_arm(struct ctx *c) {
    ARG(line, "line", 1, 0, NLINES - 1);
    ARG(pin, "pin", 0, (u64)line_pin((int)line), NLINES - 1);
    const char *trig = arg_str(c, "trig");
    const char *eoi = arg_str(c, "eoi");
    int level = 0, manual = 0;
    if (trig && !(level = streq(trig, "level")) && !streq(trig, "edge")) { c->err_text = "trig"; return E_ARG; }
    if (eoi && !(manual = streq(eoi, "manual")) && !streq(eoi, "auto")) { c->err_text = "eoi"; return E_ARG; }
    if (line == UART_LINE && manual) { c->err_text = "the console line cannot hold its EOI"; return E_ARG; }
    line_set_manual_eoi((int)line, manual);
    line_route((int)line, (int)pin, level, 0);
    o_kv_hex(c->o, "vector", (u64)line_vector((int)line));
    o_kv_dec(c->o, "pin", pin);
    return 0;
}

static int h_irq_mask(struct ctx *c) {
    ARG(line, "line", 1, 0, NLINES - 1);
    line_set_mask((int)line, 1);
    return 0;
}

static int h_irq_unmask(struct ctx *c) {
    ARG(line, "line", 1, 0, NLINES - 1);
    line_set_mask((int)line, 0);
    return 0;
}

static int h_irq_count(struct ctx *c) {
    ARG(line, "line", 1, 0, NLINES - 1);
    o_kv_dec(c->o, "count", line_count((int)line));
    o_kv_hex(c->o, "vector", (u64)line_vector((int)line));
    o_kv_dec(c->o, "masked", (u64)line_masked((int)line));
    return 0;
}

static int h_vec_count(struct ctx *c) {
    ARG(vector, "vector", 1, 0, 255);
    o_kv_dec(c->o, "count", vec_counts[c->cpu][vector]);
    return 0;
}

static int h_counts_reset(struct ctx *c) {
    (void)c;
    for (int cpu = 0; cpu < MAX_CPUS; cpu++)
        for (int v = 0; v < 256; v++)
            vec_counts[cpu][v] = 0;
    return 0;
}

static int h_eoi(struct ctx *c) {
    cli();
    u32 n = eoi_held;
    eoi_held = 0;
    for (u32 i = 0; i < n; i++)
        lapic_eoi();
    sti();
    o_kv_dec(c->o, "sent", n);
    return 0;
}

/* One IPI at a time, each waited for: back-to-back IPIs to one vector may legally merge. */
static int h_ipi(struct ctx *c) {
    ARG(to, "to", 1, 0, MAX_CPUS - 1);
    ARG(vector, "vector", 1, 0, 255);
    ARG(n, "n", 0, 1, 100000);
    if ((int)to >= cpus_online) { c->err_text = "target cpu is not online"; return E_NOCPU; }
    if (vector < VEC_TEST_MIN || vector > VEC_TEST_MAX) { c->err_text = "vector must be 0x50..0xdf"; return E_ARG; }
    u64 sent = 0, got = 0;
    u32 base = vec_counts[to][vector];
    for (u64 i = 0; i < n; i++) {
        if (ipi_send(apic_ids[to], 0x4000 | (u32)vector))
            break;
        sent++;
        u64 end = rdtsc() + ms_to_tsc(100);
        while (vec_counts[to][vector] - base < sent && rdtsc() < end)
            pause();
        got = vec_counts[to][vector] - base;
        if (got < sent)
            break;
    }
    o_kv_dec(c->o, "sent", sent);
    o_kv_dec(c->o, "received", got);
    return 0;
}

/* Mask a line, let the host raise it, wait, unmask, and see whether it arrives. */
static int h_irq_hold(struct ctx *c);

/* ------------------------------------------------------------------ time */
static int h_clock(struct ctx *c) {
    u64 t = rdtsc();
    o_kv_hex(c->o, "tsc", t);
    o_kv_dec(c->o, "ns", tsc_to_ns(t - tsc_boot));
    o_kv_dec(c->o, "cpu", (u64)c->cpu);
    return 0;
}

static int h_halt(struct ctx *c) {
    ARG(ms, "ms", 1, 0, 600000);
    u64 t0 = rdtsc(), end = t0 + ms_to_tsc(ms), wakeups = 0;
    for (;;) {
        cli();
        u64 now = rdtsc();
        if (now >= end) {
            sti();
            break;
        }
        lapic_timer_arm_tsc(end - now);
        sti_hlt();
        wakeups++;
    }
    o_kv_dec(c->o, "ns", tsc_to_ns(rdtsc() - t0));
    o_kv_dec(c->o, "wakeups", wakeups);
    return 0;
}

static int h_lapic_oneshot(struct ctx *c) {
    ARG(us, "us", 1, 1, 60000000);
    int cpu = c->cpu;
    u64 n = us * lapic_khz / 1000;
    if (n == 0 || n > 0xFFFFFFFFULL) { c->err_text = "us out of the timer's range"; return E_ARG; }
    u32 fired0 = timer_fired[cpu];
    lapic_write(0x320, VEC_TIMER);
    u64 t0 = rdtsc();
    lapic_write(0x380, (u32)n);
    /* poll, not HLT: if the timer never fires we must still answer */
    u64 end = t0 + ns_to_tsc(us * 2000 + 200000000ULL);
    /* the longest stretch between two polls: a vCPU the host did not run (or an interrupt
     * handler) shows up as a stall, so the host can tell the timer's lateness from its own */
    u64 prev = t0, stall = 0;
    while (timer_fired[cpu] == fired0) {
        u64 now = rdtsc();
        if (now - prev > stall)
            stall = now - prev;
        prev = now;
        if (now >= end)
            break;
        pause();
    }
    u32 fired = timer_fired[cpu] - fired0;
    o_kv_dec(c->o, "requested_ns", us * 1000);
    o_kv_dec(c->o, "elapsed_ns", fired ? tsc_to_ns(timer_tsc[cpu] - t0) : 0);
    o_kv_dec(c->o, "fired", fired);
    o_kv_dec(c->o, "count", n);
    o_kv_dec(c->o, "stall_ns", tsc_to_ns(stall));
    return 0;
}

/* Tick accounting (timer.c): gaps/missed/bunched from the ISR, pending = whole periods since
 * the last tick's boundary that delivered nothing yet (at the stop instant once stopped). */
static void pit_report_at(struct ctx *c, u64 now, int stopped) {
    o_kv_dec(c->o, "ticks", pit_ticks);
    o_kv_dec(c->o, "ns", tsc_to_ns(now - pit_start_tsc));
    o_kv_dec(c->o, "hz", pit_hz);
    o_kv_dec(c->o, "divisor", pit_divisor);
    o_kv_dec(c->o, "span_ns", pit_ticks > 1 ? tsc_to_ns(pit_last_tsc - pit_first_tsc) : 0);
    o_kv_dec(c->o, "pin", (u64)pit_line_pin);
    o_kv_dec(c->o, "missed", pit_missed);
    o_kv_dec(c->o, "bunched", pit_bunched);
    o_kv_dec(c->o, "gaps", pit_gaps);
    u32 pending = pit_pending_at_stop;
    if (!stopped) { /* the ISR latches channel 0 too */
        cli();
        pending = pit_pending();
        sti();
    }
    o_kv_dec(c->o, "pending", pending);
}

static void pit_report(struct ctx *c) { pit_report_at(c, rdtsc(), 0); }

static int h_pit_start(struct ctx *c) {
    ARG(hz, "hz", 0, 1000, 100000);
    ARG(pin, "pin", 0, (u64)line_pin(0), NLINES - 1);
    if (pit_start((u32)hz, (int)pin)) { c->err_text = "hz must be 19..100000"; return E_ARG; }
    pit_report(c);
    return 0;
}

static int h_pit_read(struct ctx *c) {
    pit_report(c);
    return 0;
}

static int h_pit_stop(struct ctx *c) {
    pit_stop();
    pit_report_at(c, pit_stop_tsc, 1);
    return 0;
}

static int h_pit_measure(struct ctx *c) {
    ARG(hz, "hz", 0, 1000, 100000);
    ARG(ms, "ms", 1, 1, 600000);
    ARG(pin, "pin", 0, (u64)line_pin(0), NLINES - 1);
    if (pit_start((u32)hz, (int)pin)) { c->err_text = "hz must be 19..100000"; return E_ARG; }
    ARG(poll, "poll", 0, 0, 1);
    u64 end = pit_start_tsc + ms_to_tsc(ms);
    if (poll) /* busy: rules out HLT wake-up latency when ticks go missing */
        while (rdtsc() < end)
            pause();
    else
        WAIT_UNTIL(0, end);
    pit_stop();
    pit_report_at(c, pit_stop_tsc, 1);
    return 0;
}

/* ------------------------------------------------------------------ UART */
static int h_uart_stats(struct ctx *c) {
    o_kv_dec(c->o, "rx_bytes", rx_bytes);
    o_kv_dec(c->o, "rx_irqs", rx_irqs);
    o_kv_dec(c->o, "overruns", rx_overruns);
    o_kv_dec(c->o, "dropped", rx_dropped);
    return 0;
}

/* 16550 loopback, done atomically (interrupts off, RX interrupt disabled) so the echoed
 * byte is read here and never reaches the agent's own input. */
static int h_uart_loopback(struct ctx *c) {
    ARG(value, "value", 0, 0x5A, 255);
    cli();
    u8 ier = inb(COM1 + 1), mcr = inb(COM1 + 4);
    outb(COM1 + 1, 0);
    outb(COM1 + 4, (u8)(mcr | 0x10));
    u8 msr = inb(COM1 + 6);
    outb(COM1, (u8)value);
    int got = -1;
    u8 lsr = 0;
    for (int i = 0; i < 100000 && got < 0; i++) {
        lsr = inb(COM1 + 5);
        if (lsr & 1)
            got = inb(COM1);
    }
    outb(COM1 + 4, mcr);
    outb(COM1 + 1, ier);
    sti();
    if (got < 0) {
        c->err_text = "no byte came back in loopback mode";
        return E_TIMEOUT;
    }
    o_kv_hex(c->o, "value", (u64)got);
    o_kv_hex(c->o, "msr", msr);
    o_kv_hex(c->o, "lsr", lsr);
    o_kv_hex(c->o, "mcr", mcr);
    return 0;
}

static int h_exit(struct ctx *c) {
    ARG(status, "status", 0, 0, 255);
    outb(EXIT_PORT, (u8)status);
    c->err_text = "exit port 0xf4 did not stop the machine";
    return E_UNSUPPORTED;
}

static int h_rx_burst(struct ctx *c);

/* ------------------------------------------------------------------ port sequences for register checks
 * ioseq runs a list of port operations with interrupts off, so a check can time a register
 * change in microseconds (pytest_vmm/agent/ioseq.py encodes them; all numbers hex):
 *   o<port>.<val>            outb
 *   w<port>.<val>.<n>        outb n times
 *   i<port>                  inb -> result
 *   d<us>                    busy-wait (TSC)
 *   p<port>.<mask>.<val>.<ms> poll until (inb & mask) == val -> result: last value; err 6 on timeout
 *   c<port>.<mask>.<ms>      read for ms, count reads with (inb & mask) != 0 -> result: count
 *   t                        ns since the sequence started -> result
 * uart_seq does the same on COM1 (the agent's console) and puts the UART back as it was. */
#define SEQ_MAX_RESULTS 48
#define SEQ_MAX_MS 3000

static int seq_num(const char **p, u64 *v) {
    u64 x = 0;
    int n = 0, d;
    while ((d = hexval(**p)) >= 0) {
        x = x << 4 | (u64)d;
        (*p)++;
        n++;
    }
    *v = x;
    return n ? 0 : -1;
}

static int seq_nums(const char **p, u64 *v, int count) {
    for (int i = 0; i < count; i++) {
        if (i && *(*p)++ != '.')
            return -1;
        if (seq_num(p, &v[i]))
            return -1;
    }
    return 0;
}

static int run_ioseq(struct ctx *c, const char *ops) {
    static const char hexd[] = "0123456789abcdef";
    u64 results[SEQ_MAX_RESULTS];
    int nres = 0, op = 0;
    u64 start = rdtsc();
    const char *p = ops;
    while (*p) {
        char kind = *p++;
        u64 v[4] = {0, 0, 0, 0};
        int need = kind == 'o' ? 2 : kind == 'w' ? 3 : kind == 'i' || kind == 'd' ? 1 : kind == 'p' ? 4 : kind == 'c' ? 3 : 0;
        if ((kind != 't' && need == 0) || seq_nums(&p, v, need) || (*p && *p != ',') ||
            (need && v[0] > 0xFFFF && kind != 'd') || ((kind == 'p' && v[3] > SEQ_MAX_MS) || (kind == 'c' && v[2] > SEQ_MAX_MS)) ||
            (kind == 'd' && v[0] > SEQ_MAX_MS * 1000ULL)) {
            c->err_text = "ops";
            c->err_val = (u64)op;
            c->has_err_val = 1;
            return E_ARG;
        }
        if (*p == ',')
            p++;
        if (kind == 'o') {
            outb((u16)v[0], (u8)v[1]);
        } else if (kind == 'w') {
            for (u64 i = 0; i < v[2] && i < 0x10000; i++)
                outb((u16)v[0], (u8)v[1]);
        } else if (kind == 'i') {
            if (nres < SEQ_MAX_RESULTS) results[nres++] = inb((u16)v[0]);
        } else if (kind == 'd') {
            delay_us(v[0]);
        } else if (kind == 't') {
            if (nres < SEQ_MAX_RESULTS) results[nres++] = tsc_to_ns(rdtsc() - start);
        } else if (kind == 'p') {
            u64 end = rdtsc() + ms_to_tsc(v[3]);
            u8 x;
            while (((x = inb((u16)v[0])) & v[1]) != v[2])
                if (rdtsc() > end) {
                    c->err_text = "poll timed out at op";
                    c->err_val = (u64)op;
                    c->has_err_val = 1;
                    return E_TIMEOUT;
                }
            if (nres < SEQ_MAX_RESULTS) results[nres++] = x;
        } else { /* 'c' */
            u64 end = rdtsc() + ms_to_tsc(v[2]), n = 0;
            while (rdtsc() < end)
                if (inb((u16)v[0]) & v[1])
                    n++;
            if (nres < SEQ_MAX_RESULTS) results[nres++] = n;
        }
        op++;
    }
    o_str(c->o, " v=");
    for (int i = 0; i < nres; i++) {
        if (i)
            o_chr(c->o, ',');
        u64 x = results[i];
        char tmp[17];
        int n = 0;
        do tmp[n++] = hexd[x & 15]; while (x >>= 4);
        while (n)
            o_chr(c->o, tmp[--n]);
    }
    return 0;
}

static int h_ioseq(struct ctx *c) {
    const char *ops = arg_str(c, "ops");
    if (!ops) { c->err_text = "ops"; return E_ARG; }
    cli();
    int e = run_ioseq(c, ops);
    sti();
    return e;
}

static int h_uart_seq(struct ctx *c) {
    const char *ops = arg_str(c, "ops");
    if (!ops) { c->err_text = "ops"; return E_ARG; }
    cli();
    while (!(inb(COM1 + 5) & 0x40)) /* TEMT: the last reply has left the shift register */
        pause();
    u8 ier = inb(COM1 + 1), lcr = inb(COM1 + 3), mcr = inb(COM1 + 4);
    outb(COM1 + 3, (u8)(lcr | 0x80));
    u8 dll = inb(COM1 + 0), dlm = inb(COM1 + 1);
    outb(COM1 + 3, lcr);
    int e = run_ioseq(c, ops);
    /* back to the console's state: loopback on while the FIFO drains, so nothing leaks out */
    outb(COM1 + 1, 0);
    outb(COM1 + 4, (u8)(inb(COM1 + 4) | 0x10));
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, dll);
    outb(COM1 + 1, dlm);
    outb(COM1 + 3, lcr);
    outb(COM1 + 2, 0x07);
    for (int i = 0; i < 64 && (inb(COM1 + 5) & 1); i++)
        (void)inb(COM1);
    (void)inb(COM1 + 5);
    (void)inb(COM1 + 2);
    outb(COM1 + 4, mcr);
    /* One RBR read with loopback off and the receiver empty: QEMU's 16550 (hw/char/serial.c)
     * re-arms its chardev input only on an RBR read outside loopback, so after a drain in
     * loopback the host's next request could sit unread until QEMU's main loop woke for
     * something else (a 30 s stall on god@qemu). On a real part the read has no effect. */
    if (!(inb(COM1 + 5) & 1))
        (void)inb(COM1);
    outb(COM1 + 1, ier);
    sti();
    return e;
}

/* First 16-byte-aligned address in [addr, addr+len) holding the 4-byte signature sig
 * (little-endian u32), e.g. "_MP_" or "RSD " -> addr; n=0 when there is none. */
static int h_mfind(struct ctx *c) {
    ARG(addr, "addr", 1, 0, 0xFFFFFFFFULL);
    ARG(len, "len", 1, 0, 0x100000);
    ARG(sig, "sig", 1, 0, 0xFFFFFFFFULL);
    for (u64 a = (addr + 15) & ~15ULL; a + 4 <= addr + len; a += 16)
        if (*(volatile u32 *)a == (u32)sig) {
            o_kv_dec(c->o, "n", 1);
            o_kv_hex(c->o, "addr", a);
            return 0;
        }
    o_kv_dec(c->o, "n", 0);
    return 0;
}

/* ------------------------------------------------------------------ guest RAM for host-side drivers
 * The host's virtio driver (pytest_vmm/virtio) lays its rings and buffers in dma_area and
 * moves bytes with mrd/mwr (hex, up to MEM_CHUNK bytes a line); vmmio names the
 * virtio-mmio slots the command line announces (virtio_mmio.device=<size>@<addr>:<gsi>). */
static int h_dma(struct ctx *c) {
    o_kv_hex(c->o, "base", (u64)dma_area);
    o_kv_hex(c->o, "size", DMA_AREA_SIZE);
    return 0;
}

static int h_mrd(struct ctx *c) {
    static const char hex[] = "0123456789abcdef";
    ARG(addr, "addr", 1, 0, ~0ULL);
    ARG(n, "n", 1, 0, MEM_CHUNK);
    u8 buf[MEM_CHUNK];
    guard_fault[c->cpu] = 0;
    guard_armed[c->cpu] = 1;
    for (u64 i = 0; i < n && !guard_fault[c->cpu]; i++)
        buf[i] = (u8)mmio_rd8(addr + i);
    int e = guard_end(c, addr);
    if (e)
        return e;
    o_str(c->o, " hex=");
    for (u64 i = 0; i < n; i++) {
        o_chr(c->o, hex[buf[i] >> 4]);
        o_chr(c->o, hex[buf[i] & 15]);
    }
    return 0;
}

static int h_mwr(struct ctx *c) {
    ARG(addr, "addr", 1, 0, ~0ULL);
    const char *h = arg_str(c, "hex");
    if (!h) { c->err_text = "hex"; return E_ARG; }
    u8 buf[MEM_CHUNK];
    u64 n = 0;
    for (; h[0] && h[1]; h += 2) {
        int hi = hexval(h[0]), lo = hexval(h[1]);
        if (hi < 0 || lo < 0 || n == MEM_CHUNK) { c->err_text = "hex"; return E_ARG; }
        buf[n++] = (u8)(hi << 4 | lo);
    }
    if (h[0]) { c->err_text = "hex"; return E_ARG; }
    /* fill=N: the bytes repeated to N in all (rings zeroed in one line, not one per 96 bytes:
     * every hex digit the host sends costs ring-0 instructions, which PVM emulates slowly) */
    ARG(fill, "fill", 0, n, MEM_FILL_MAX);
    if (fill && !n) { c->err_text = "hex"; return E_ARG; }
    guard_fault[c->cpu] = 0;
    guard_armed[c->cpu] = 1;
    for (u64 i = 0; i < fill && !guard_fault[c->cpu]; i++)
        mmio_wr8(addr + i, buf[i % n]);
    return guard_end(c, addr);
}

static const char *boot_cmdline(void) {
    if (streq(boot_protocol, "pvh")) /* hvm_start_info.cmdline_paddr at offset 24 */
        return (const char *)*(volatile u64 *)((u64)boot_ebx + 24);
    if (streq(boot_protocol, "multiboot") && (*(volatile u32 *)(u64)boot_ebx & 4))
        return (const char *)(u64)*(volatile u32 *)((u64)boot_ebx + 16);
    return 0;
}

/* Parses "<size>[K]@<addr>:<gsi>" at s; 0 if it is not one. */
static int parse_vmmio(const char *s, u64 *size, u64 *addr, u64 *gsi) {
    char num[24];
    int n = 0;
    u64 *dst[3] = {size, addr, gsi};
    const char stop[3] = {'@', ':', ' '};
    for (int f = 0; f < 3; f++) {
        n = 0;
        while (*s && *s != stop[f] && *s != ' ' && n < 23)
            num[n++] = *s++;
        num[n] = 0;
        int kilo = f == 0 && n > 0 && (num[n - 1] == 'K' || num[n - 1] == 'k');
        if (kilo)
            num[--n] = 0;
        if (!n || parse_u64(num, dst[f]))
            return 0;
        if (kilo)
            *dst[f] <<= 10;
        if (f < 2) {
            if (*s != stop[f])
                return 0;
            s++;
        }
    }
    return 1;
}

static int h_vmmio(struct ctx *c) {
    static const char key[] = "virtio_mmio.device=";
    ARG(want, "i", 0, 0, 63);
    const char *s = boot_cmdline();
    u64 count = 0, size = 0, addr = 0, gsi = 0, found = 0;
    for (; s && *s; s++) {
        int k = 0;
        while (key[k] && s[k] == key[k])
            k++;
        if (key[k] || (s != boot_cmdline() && s[-1] != ' '))
            continue;
        u64 sz, a, g;
        if (!parse_vmmio(s + k, &sz, &a, &g))
            continue;
        if (count == want)
            size = sz, addr = a, gsi = g, found = 1;
        count++;
    }
    o_kv_dec(c->o, "n", count);
    if (found) {
        o_kv_hex(c->o, "addr", addr);
        o_kv_hex(c->o, "size", size);
        o_kv_dec(c->o, "gsi", gsi);
    }
    return 0;
}

/* ------------------------------------------------------------------ dispatch */
static const struct command commands[] = {
    {"hello", h_hello, 0},         {"ping", h_ping, 0},           {"cpuid", h_cpuid, 0},           {"in", h_in, 0},
    {"out", h_out, 0},             {"rd", h_rd, 0},               {"wr", h_wr, 0},
    {"irq_arm", h_irq_arm, 0},     {"irq_mask", h_irq_mask, 0},   {"irq_unmask", h_irq_unmask, 0},
    {"irq_count", h_irq_count, 0}, {"vec_count", h_vec_count, 0}, {"counts_reset", h_counts_reset, 0},
    {"eoi", h_eoi, 1},             {"ipi", h_ipi, 0},             {"irq_hold", h_irq_hold, 1},
    {"clock", h_clock, 0},         {"halt", h_halt, 0},           {"lapic_oneshot", h_lapic_oneshot, 0},
    {"pit_start", h_pit_start, 1}, {"pit_read", h_pit_read, 1},   {"pit_stop", h_pit_stop, 1},
    {"pit_measure", h_pit_measure, 1}, {"uart_stats", h_uart_stats, 1}, {"rx_burst", h_rx_burst, 1},
    {"uart_loopback", h_uart_loopback, 1}, {"exit", h_exit, 0},
    {"dma", h_dma, 0},             {"mrd", h_mrd, 0},             {"mwr", h_mwr, 0},            {"vmmio", h_vmmio, 0},
    {"ioseq", h_ioseq, 1},         {"uart_seq", h_uart_seq, 1},   {"mfind", h_mfind, 0},
};

/* ------------------------------------------------------------------ cross-CPU mailbox */
static struct {
    volatile int pending;
    volatile int done;
    const struct command *cmd;
    struct ctx *c;
    volatile int rc;
} mailbox[MAX_CPUS];

int agent_run_on(int cpu, const struct command *cmd, struct ctx *c) {
    c->cpu = cpu;
    if (cpu == 0)
        return cmd->fn(c);
    mailbox[cpu].cmd = cmd;
    mailbox[cpu].c = c;
    mailbox[cpu].done = 0;
    mailbox[cpu].pending = 1;
    if (ipi_send(apic_ids[cpu], 0x4000 | VEC_CALL)) {
        mailbox[cpu].pending = 0;
        c->err_text = "IPI to the cpu was not accepted";
        return E_NOCPU;
    }
    /* 30 s plus the command's own duration: a wedged vCPU costs an error, not a hang */
    u64 ms = 0, us = 0;
    const char *v = arg_str(c, "ms");
    if (v)
        (void)parse_u64(v, &ms);
    v = arg_str(c, "us");
    if (v)
        (void)parse_u64(v, &us);
    u64 end = rdtsc() + ms_to_tsc(30000 + (ms > 600000 ? 600000 : ms) + 2 * (us > 60000000 ? 60000000 : us) / 1000);
    while (!mailbox[cpu].done && rdtsc() < end)
        pause();
    if (!mailbox[cpu].done) {
        c->err_text = "cpu did not answer";
        return E_TIMEOUT;
    }
    return mailbox[cpu].rc;
}

void agent_ap_loop(int cpu) {
    for (;;) {
        cli();
        if (mailbox[cpu].pending) {
            sti();
            mailbox[cpu].pending = 0;
            mailbox[cpu].rc = mailbox[cpu].cmd->fn(mailbox[cpu].c);
            mailbox[cpu].done = 1;
            continue;
        }
        sti_hlt();
    }
}

static int h_rx_burst(struct ctx *c) {
    ARG(n, "n", 1, 1, 1000000);
    ARG(ms, "ms", 0, 5000, 600000);
    struct out g;
    g.n = 0;
    u32 irq0 = rx_irqs, ovr0 = rx_overruns, drop0 = rx_dropped, empty0 = rx_empty_irqs;
    while (rx_available()) /* anything left from before belongs to no one */
        (void)rx_getc();
    send_go(&g);
    u64 end = rdtsc() + ms_to_tsc(ms), got = 0;
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

static int h_irq_hold(struct ctx *c) {
    ARG(line, "line", 1, 0, NLINES - 1);
    ARG(ms, "ms", 0, 200, 60000);
    const char *trig = arg_str(c, "trig");
    int level = trig ? streq(trig, "level") : 1;
    line_route((int)line, line_pin((int)line), level, 1);
    u32 before = line_count((int)line);
    struct out g;
    g.n = 0;
    o_kv_dec(&g, "before", before);
    send_go(&g);
    u64 end = rdtsc() + ms_to_tsc(ms);
    WAIT_UNTIL(0, end);
    u32 masked = line_count((int)line);
    line_set_mask((int)line, 0);
    end = rdtsc() + ms_to_tsc(500);
    WAIT_UNTIL(line_count((int)line) != masked, end);
    u32 after = line_count((int)line);
    line_route((int)line, line_pin((int)line), 0, 0); /* back to the edge default */
    o_kv_dec(c->o, "before", before);
    o_kv_dec(c->o, "masked", masked);
    o_kv_dec(c->o, "after", after);
    o_kv_hex(c->o, "vector", (u64)line_vector((int)line));
    return 0;
}

/* ------------------------------------------------------------------ the console loop */
int agent_cpu_state(u64 cpu) {
    if (cpu >= MAX_CPUS)
        return -1;
    return (int)cpu < cpus_online;
}

void agent_wait_for_rx(void) {
    cli();
    if (!rx_available())
        sti_hlt();
    else
        sti();
}

void agent_loop(void) { agent_serve(commands, sizeof(commands) / sizeof(commands[0])); }
