/* The generic timer (Arm ARM D11): the virtual counter for measurements, the EL1 virtual timer
 * for the host's one-shot checks, the EL1 physical timer for the agent's own bounded waits. */
#include "probe.h"

volatile u32 vtimer_fired[MAX_CPUS];
volatile u64 vtimer_at[MAX_CPUS];

u64 cnt_to_ns(u64 c) {
    u64 f = cntfrq();
    return c / f * 1000000000ULL + c % f * 1000000000ULL / f;
}

u64 ns_to_cnt(u64 ns) {
    u64 f = cntfrq();
    return ns / 1000000000ULL * f + ns % 1000000000ULL * f / 1000000000ULL;
}

void ptimer_isr(void) { write_sysreg(cntp_ctl_el0, 0); }

/* deadline on the virtual counter; CNTP compares the physical one (they differ by CNTVOFF) */
void ptimer_arm(u64 deadline) {
    u64 v = cntvct(), p = read_sysreg(cntpct_el0);
    write_sysreg(cntp_cval_el0, deadline - v + p);
    write_sysreg(cntp_ctl_el0, 1);
    isb();
}

void vtimer_isr(int cpu) {
    vtimer_at[cpu] = cntvct();
    vtimer_fired[cpu]++;
    write_sysreg(cntv_ctl_el0, 0); /* the level-triggered PPI drops with ENABLE=0 */
    isb();
}
