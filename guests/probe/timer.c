/* Time: TSC and LAPIC-timer rates calibrated against the PIT, the LAPIC one-shot, the PIT
 * in periodic mode. */
#include "probe.h"

#define PIT_HZ 1193182ULL

u64 tsc_khz, lapic_khz, tsc_boot;
volatile u32 timer_fired[MAX_CPUS];
volatile u64 timer_tsc[MAX_CPUS];
volatile u32 pit_ticks;
volatile u64 pit_first_tsc, pit_last_tsc;
/* Tick accounting, so the host can tell a merged or late tick from a wrong rate
 * (docs/agent-protocol.md, "PIT tick accounting"). Each tick is placed on the PIT's own period
 * boundary: the ISR latches channel 0 and subtracts the time since the last reload, (N - count)
 * input clocks, from its TSC stamp, so the delivery latency drops out. Boundary to boundary is
 * then a whole number k of periods: k = 0 is a re-injected (bunched) tick, k >= 2 a gap that
 * swallowed k - 1 ticks. The TSC's calibration error (< 1%) cannot move k by the half period
 * rounding needs. */
volatile u32 pit_gaps, pit_missed, pit_bunched;
volatile u64 pit_boundary_tsc;
u64 pit_period_tsc;
u32 pit_hz, pit_divisor;
int pit_line_pin = 2;
u64 pit_start_tsc;

/* One calibration sample: PIT channel 0 latched, the LAPIC timer's current count right after,
 * bracketed by two TSC reads. A vCPU preempted inside the bracket shows up as a wide bracket,
 * and such samples are not trusted (a busy host did that to 1 boot in ~50). */
struct sample {
    u64 tsc;   /* bracket midpoint */
    u64 width; /* bracket width in TSC ticks */
    u32 pit;
    u32 lapic;
};

static void sample_take(struct sample *s) {
    u64 a = rdtsc();
    outb(0x43, 0x00); /* latch channel 0 */
    s->lapic = lapic_read(0x390);
    u32 lo = inb(0x40);
    u32 hi = inb(0x40);
    u64 b = rdtsc();
    s->pit = lo | hi << 8;
    s->tsc = a + (b - a) / 2;
    s->width = b - a;
}

/* TSC and LAPIC-timer rates over >= 25 ms of PIT channel 0 counting down in mode 0 (its IOAPIC
 * pin and the 8259 are masked). Channel 0 and not channel 2: microvm has no port 0x61 gate. */
void timer_calibrate(void) {
    const u32 want = 29830;  /* PIT ticks: 25 ms */
    const u32 limit = 60000; /* mode 0 from 0xffff: stop well before the counter wraps */
    outb(0x43, 0x30);        /* channel 0, lo/hi, mode 0 */
    outb(0x40, 0xFF);
    outb(0x40, 0xFF);
    lapic_write(0x380, 0xFFFFFFFF); /* LAPIC timer free-running (its LVT is masked) */
    struct sample s0, s1, t, best;
    sample_take(&s0);
    for (int i = 0; i < 4; i++) { /* the narrowest of a few start samples */
        sample_take(&t);
        if (t.width < s0.width)
            s0 = t;
    }
    best.width = ~0ULL;
    best.pit = s0.pit;
    u64 polls = 0;
    for (;;) {
        sample_take(&s1);
        polls++;
        if (s1.pit > s0.pit || polls > 2000000)
            break; /* wrapped or stuck: give up with the best so far */
        u32 ticks = s0.pit - s1.pit;
        if (ticks >= want && s1.width < best.width)
            best = s1;
        if (ticks >= want && s1.width <= 2 * s0.width + 64)
            break;
        if (ticks >= limit)
            break;
    }
    lapic_write(0x380, 0);
    u64 ticks = best.width != ~0ULL ? s0.pit - best.pit : 0;
    if (ticks >= want) {
        tsc_khz = (best.tsc - s0.tsc) * PIT_HZ / ticks / 1000;
        lapic_khz = (u64)(s0.lapic - best.lapic) * PIT_HZ / ticks / 1000;
    }
    if (tsc_khz < 100000 || tsc_khz > 20000000) {
        /* no PIT, or a stuck one: trust the hypervisor's timing leaf if it has one */
        u32 r[4];
        log_kv("probe: PIT calibration failed", "ticks", ticks, "polls", polls);
        tsc_khz = 0;
        cpuid(0x40000000, 0, r);
        if (r[0] >= 0x40000010) {
            cpuid(0x40000010, 0, r);
            tsc_khz = r[0];
            lapic_khz = r[1] / 16; /* the leaf gives the bus kHz; the timer divides by 16 */
        }
    }
    if (tsc_khz == 0)
        tsc_khz = 1000000;
    if (lapic_khz == 0)
        lapic_khz = 62500; /* 1 GHz bus / 16, what KVM and QEMU emulate */
}

u64 tsc_to_ns(u64 d) { return d / tsc_khz * 1000000ULL + (d % tsc_khz) * 1000000ULL / tsc_khz; }
u64 ns_to_tsc(u64 ns) { return ns / 1000000ULL * tsc_khz + (ns % 1000000ULL) * tsc_khz / 1000000ULL; }

void lapic_timer_arm_tsc(u64 delta_tsc) {
    u64 ns = tsc_to_ns(delta_tsc);
    u64 n = ns / 1000000ULL * lapic_khz + (ns % 1000000ULL) * lapic_khz / 1000000ULL + 1;
    if (n > 0xFFFFFFFFULL)
        n = 0xFFFFFFFFULL;
    lapic_write(0x320, VEC_TIMER); /* one-shot, unmasked */
    lapic_write(0x380, (u32)n);
}

void delay_us(u64 us) {
    u64 end = rdtsc() + ns_to_tsc(us * 1000);
    while (rdtsc() < end)
        pause();
}

void timer_isr(int cpu) {
    if (cpu >= 0 && cpu < MAX_CPUS) {
        timer_tsc[cpu] = rdtsc();
        timer_fired[cpu]++;
    }
}

/* TSC of the latest reload of channel 0 before now (mode 2: the IRQ0 edge). */
static u64 pit_boundary(void) {
    outb(0x43, 0x00); /* latch channel 0 */
    u32 lo = inb(0x40);
    u32 hi = inb(0x40);
    u64 t = rdtsc();
    u32 count = lo | hi << 8;
    u32 since = count && count <= pit_divisor ? pit_divisor - count : 0; /* input clocks */
    return t - (u64)since * tsc_khz * 1000ULL / PIT_HZ;
}

static u32 periods_between(u64 from, u64 to) {
    return to <= from ? 0 : (u32)((to - from + pit_period_tsc / 2) / pit_period_tsc);
}

void pit_isr(void) {
    u64 t = rdtsc();
    if (pit_period_tsc) {
        u64 b = pit_boundary();
        u32 k = periods_between(pit_boundary_tsc, b);
        if (k == 0)
            pit_bunched++;
        else if (k > 1)
            pit_gaps++, pit_missed += k - 1;
        if (b > pit_boundary_tsc)
            pit_boundary_tsc = b;
    }
    if (pit_ticks == 0)
        pit_first_tsc = t;
    pit_last_tsc = t;
    pit_ticks++;
}

/* whole periods from the last tick's boundary to the latest one, that delivered nothing yet */
u32 pit_pending(void) { return pit_period_tsc ? periods_between(pit_boundary_tsc, pit_boundary()) : 0; }

int pit_start(u32 hz, int pin) {
    if (hz < 19 || hz > 100000)
        return -1;
    pit_divisor = (u32)((PIT_HZ + hz / 2) / hz);
    pit_hz = hz;
    pit_line_pin = pin;
    line_route(0, pin, 0, 1);
    pit_ticks = 0;
    pit_gaps = pit_missed = pit_bunched = 0;
    pit_period_tsc = (u64)pit_divisor * tsc_khz * 1000ULL / PIT_HZ;
    pit_first_tsc = pit_last_tsc = 0;
    outb(0x43, 0x34); /* channel 0, lo/hi, mode 2 (rate generator) */
    outb(0x40, (u8)pit_divisor);
    outb(0x40, (u8)(pit_divisor >> 8));
    pit_start_tsc = pit_boundary_tsc = rdtsc(); /* counting starts with the reload written */
    line_set_mask(0, 0);
    return 0;
}

u64 pit_stop_tsc;
u32 pit_pending_at_stop;

void pit_stop(void) {
    line_set_mask(0, 1);
    pit_stop_tsc = rdtsc();
    pit_pending_at_stop = pit_pending();
    outb(0x43, 0x30); /* channel 0 mode 0 with no count written: stops counting */
}
