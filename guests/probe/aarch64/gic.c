/* GICv3 (Arm IHI 0069): distributor, one redistributor per vCPU, the system-register CPU
 * interface. Every line is Group 1; the console and the agent's timer sit at priority 0x80,
 * above the test lines (0xa0), so a test that holds an EOI back never silences the agent. */
#include "probe.h"

#define GICD_CTLR 0x0000
#define GICD_TYPER 0x0004
#define GICD_IGROUPR 0x0080
#define GICD_ISENABLER 0x0100
#define GICD_ICENABLER 0x0180
#define GICD_ICPENDR 0x0280
#define GICD_ICACTIVER 0x0380
#define GICD_IPRIORITYR 0x0400
#define GICD_ICFGR 0x0C00
#define GICD_IROUTER 0x6000
#define CTLR_RWP (1u << 31)
#define GICR_CTLR 0x0000
#define GICR_TYPER 0x0008
#define GICR_WAKER 0x0014
#define SGI_BASE 0x10000
#define WAKER_PS (1u << 1)
#define WAKER_CA (1u << 2)
#define TEST_PRIO 0xa0

volatile u32 intid_counts[MAX_CPUS][NINTID];
volatile u32 held_intids[MAX_CPUS][8];
volatile int nheld[MAX_CPUS];
volatile u8 manual_eoi[NINTID];
volatile int eoimode[MAX_CPUS];
static u64 rd_base[MAX_CPUS];
static u64 cpu_aff[MAX_CPUS]; /* MPIDR_EL1 affinity fields */
static u32 spi_lines;         /* INTIDs below this exist (GICD_TYPER.ITLinesNumber) */

static void wait_rwp(u64 reg, u32 bit) {
    for (int i = 0; i < 1000000 && (r32(reg) & bit); i++)
        ;
}

u64 gicr_base(int cpu) { return rd_base[cpu]; }
u64 gic_spi_lines(void) { return spi_lines; }

void gic_dist_init(void) {
    w32(GICD_BASE + GICD_CTLR, 0);
    wait_rwp(GICD_BASE + GICD_CTLR, CTLR_RWP);
    spi_lines = 32 * ((r32(GICD_BASE + GICD_TYPER) & 0x1f) + 1);
    if (spi_lines > NINTID)
        spi_lines = NINTID;
    for (u32 i = 32; i < spi_lines; i += 32) {
        w32(GICD_BASE + GICD_ICENABLER + i / 8, ~0u);
        w32(GICD_BASE + GICD_ICPENDR + i / 8, ~0u);
        w32(GICD_BASE + GICD_ICACTIVER + i / 8, ~0u);
        w32(GICD_BASE + GICD_IGROUPR + i / 8, ~0u);
    }
    for (u32 i = 32; i < spi_lines; i += 4)
        w32(GICD_BASE + GICD_IPRIORITYR + i, TEST_PRIO * 0x01010101u);
    wait_rwp(GICD_BASE + GICD_CTLR, CTLR_RWP);
    /* ARE (bit 4) and both group enables (bits 1, 0): the single-security-state layout QEMU
     * virt and KVM's vGICv3 present (DS=1) */
    w32(GICD_BASE + GICD_CTLR, 0x13);
    wait_rwp(GICD_BASE + GICD_CTLR, CTLR_RWP);
}

void gic_cpu_init(int cpu) {
    u64 mpidr = read_sysreg(mpidr_el1);
    u64 aff = (mpidr & 0xffffff) | ((mpidr >> 32 & 0xff) << 24);
    cpu_aff[cpu] = mpidr & 0xff00ffffffULL;
    u64 rd = GICR_BASE;
    for (int i = 0; i < 64; i++, rd += GICR_STRIDE) {
        u64 typer = r64(rd + GICR_TYPER);
        if ((typer >> 32) == aff)
            break;
        if (typer & (1u << 4)) { /* Last */
            panic_exit("probe: PANIC no redistributor for this cpu", mpidr, typer);
        }
    }
    rd_base[cpu] = rd;
    w32(rd + GICR_WAKER, r32(rd + GICR_WAKER) & ~WAKER_PS);
    for (int i = 0; i < 1000000 && (r32(rd + GICR_WAKER) & WAKER_CA); i++)
        ;
    u64 sgi = rd + SGI_BASE;
    w32(sgi + GICD_ICENABLER, ~0u);
    w32(sgi + GICD_ICPENDR, ~0u);
    w32(sgi + GICD_ICACTIVER, ~0u);
    w32(sgi + GICD_IGROUPR, ~0u);
    for (u32 i = 0; i < 32; i += 4)
        w32(sgi + GICD_IPRIORITYR + i, TEST_PRIO * 0x01010101u);
    wait_rwp(rd + GICR_CTLR, 1u << 3);
    write_sysreg(ICC_SRE_EL1, read_sysreg(ICC_SRE_EL1) | 1);
    isb();
    write_sysreg(ICC_PMR_EL1, 0xff);
    write_sysreg(ICC_BPR1_EL1, 0);
    write_sysreg(ICC_CTLR_EL1, read_sysreg(ICC_CTLR_EL1) & ~2ULL);
    write_sysreg(ICC_IGRPEN1_EL1, 1);
    isb();
}

/* the register block holding INTID's banked (SGI/PPI: the cpu's SGI frame) or shared state */
static u64 frame_of(int intid, int cpu) { return intid < 32 ? rd_base[cpu] + SGI_BASE : GICD_BASE; }

void gic_enable(int intid, int cpu, int on) {
    u64 f = frame_of(intid, cpu);
    w32(f + (on ? GICD_ISENABLER : GICD_ICENABLER) + (u32)(intid / 32) * 4, 1u << (intid % 32));
    if (intid < 32)
        wait_rwp(rd_base[cpu] + GICR_CTLR, 1u << 3);
    else
        wait_rwp(GICD_BASE + GICD_CTLR, CTLR_RWP);
}

int gic_enabled(int intid, int cpu) {
    return (r32(frame_of(intid, cpu) + GICD_ISENABLER + (u32)(intid / 32) * 4) >> (intid % 32)) & 1;
}

void gic_config(int intid, int cpu, int level, u8 prio) {
    u64 f = frame_of(intid, cpu);
    gic_enable(intid, cpu, 0); /* ICFGR of an enabled interrupt is UNPREDICTABLE to change */
    u64 p = f + GICD_IPRIORITYR + (u32)(intid & ~3);
    int sh = (intid & 3) * 8;
    w32(p, (r32(p) & ~(0xffu << sh)) | (u32)prio << sh);
    if (intid >= 16) { /* SGIs are always edge-triggered (ICFGR0 is read-only) */
        u64 c = f + GICD_ICFGR + (u32)(intid / 16) * 4;
        int bit = (intid % 16) * 2 + 1;
        w32(c, level ? r32(c) & ~(1u << bit) : r32(c) | 1u << bit);
    }
    if (intid >= 32)
        w64(GICD_BASE + GICD_IROUTER + (u64)intid * 8, cpu_aff[cpu]);
}

void gic_set_eoimode(int mode) {
    u64 ctlr = read_sysreg(ICC_CTLR_EL1);
    write_sysreg(ICC_CTLR_EL1, mode ? ctlr | 2 : ctlr & ~2ULL);
    isb();
    eoimode[this_cpu()] = mode;
}

void gic_sgi(int target, int intid) {
    u64 aff = cpu_aff[target];
    u64 v = (u64)(intid & 15) << 24 | (aff >> 8 & 0xff) << 16 | (aff >> 16 & 0xff) << 32 | (aff >> 32 & 0xff) << 48 |
            1ULL << (aff & 15);
    dsb();
    write_sysreg(ICC_SGI1R_EL1, v);
    isb();
}

/* the EOIs (EOImode 0) or deactivations (EOImode 1) held back by manual-EOI lines, newest
 * first: priority drops must come in the reverse order of the acknowledges */
int gic_release_held(int cpu) {
    int n = 0;
    irq_off();
    while (nheld[cpu] > 0) {
        u32 intid = held_intids[cpu][--nheld[cpu]];
        if (eoimode[cpu])
            write_sysreg(ICC_DIR_EL1, intid);
        else
            write_sysreg(ICC_EOIR1_EL1, intid);
        n++;
    }
    isb();
    irq_on();
    return n;
}

void irq_dispatch(int cpu) {
    for (;;) {
        u32 intid = (u32)read_sysreg(ICC_IAR1_EL1) & 0xffffff;
        if (intid >= 1020)
            return; /* spurious: nothing (more) pending for us */
        if (intid < NINTID)
            intid_counts[cpu][intid]++;
        if (intid == UART_INTID)
            uart_isr();
        else if (intid == PTIMER_INTID)
            ptimer_isr();
        else if (intid == VTIMER_INTID)
            vtimer_isr(cpu);
        if (intid < NINTID && manual_eoi[intid] && nheld[cpu] < 8) {
            held_intids[cpu][nheld[cpu]++] = intid;
            if (eoimode[cpu])
                write_sysreg(ICC_EOIR1_EL1, intid); /* priority drop now, deactivation held */
            isb();
            continue;
        }
        write_sysreg(ICC_EOIR1_EL1, intid);
        if (eoimode[cpu])
            write_sysreg(ICC_DIR_EL1, intid);
        isb();
    }
}
