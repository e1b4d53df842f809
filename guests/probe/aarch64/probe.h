/* The arm64 probe: shared declarations. Freestanding, general registers only, no libc.
 * The MMU stays off (every access is Device-nGnRnE), so the code is built -mstrict-align and
 * uses no exclusive or atomic instructions: each counter has one writer. */
#ifndef PROBE_A64_H
#define PROBE_A64_H

#include "../common.h"
#include "regs.h"

#define NINTID 1024
#define read_sysreg(r) ({ u64 v_; __asm__ volatile("mrs %0, " #r : "=r"(v_)); v_; })
#define write_sysreg(r, v) __asm__ volatile("msr " #r ", %0" : : "r"((u64)(v)) : "memory")
#define isb() __asm__ volatile("isb" ::: "memory")
#define dsb() __asm__ volatile("dsb sy" ::: "memory")

/* GICv3 CPU interface (IHI 0069, 12.2), by encoding so any assembler takes them */
#define ICC_PMR_EL1 S3_0_C4_C6_0
#define ICC_IAR1_EL1 S3_0_C12_C12_0
#define ICC_EOIR1_EL1 S3_0_C12_C12_1
#define ICC_DIR_EL1 S3_0_C12_C11_1
#define ICC_SGI1R_EL1 S3_0_C12_C11_5
#define ICC_BPR1_EL1 S3_0_C12_C12_3
#define ICC_CTLR_EL1 S3_0_C12_C12_4
#define ICC_SRE_EL1 S3_0_C12_C12_5
#define ICC_IGRPEN1_EL1 S3_0_C12_C12_7
#define ICC_RPR_EL1 S3_0_C12_C11_3

static inline void irq_off(void) { __asm__ volatile("msr daifset, #2" ::: "memory"); }
static inline void irq_on(void) { __asm__ volatile("msr daifclr, #2" ::: "memory"); }
static inline int this_cpu(void) { return (int)read_sysreg(tpidr_el1); }
static inline u64 cntvct(void) { isb(); return read_sysreg(cntvct_el0); }
static inline u64 cntfrq(void) { return read_sysreg(cntfrq_el0) & 0xffffffffULL; }
/* MMIO accessors: one load/store of a single register, base register only, no writeback.
 * Only those carry a valid instruction syndrome (ESR_ELx.ISV = 1, Arm ARM D17.2.40), which
 * KVM needs to emulate the access (in-kernel vGIC or a KVM_EXIT_MMIO); a plain volatile
 * dereference lets the compiler pick post-index forms ("str w1, [x0], #4"), and KVM_RUN then
 * fails with ENOSYS. TCG executes either form, so only real KVM shows the difference. */
static inline u32 r32(u64 a) { u32 v; __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
static inline void w32(u64 a, u32 v) { __asm__ volatile("str %w0, [%1]" : : "rZ"(v), "r"(a) : "memory"); }
static inline u64 r64(u64 a) { u64 v; __asm__ volatile("ldr %x0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
static inline void w64(u64 a, u64 v) { __asm__ volatile("str %x0, [%1]" : : "rZ"(v), "r"(a) : "memory"); }
static inline u8 r8(u64 a) { u32 v; __asm__ volatile("ldrb %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return (u8)v; }
static inline void w8(u64 a, u8 v) { __asm__ volatile("strb %w0, [%1]" : : "rZ"((u32)v), "r"(a) : "memory"); }

/* boot.S */
extern u8 cpu_stacks[];
extern u8 secondary_entry[];
u64 mmio_rd8(u64 a), mmio_rd16(u64 a), mmio_rd32(u64 a), mmio_rd64(u64 a);
void mmio_wr8(u64 a, u64 v), mmio_wr16(u64 a, u64 v), mmio_wr32(u64 a, u64 v), mmio_wr64(u64 a, u64 v);
i64 psci_call(u64 fid, u64 a1, u64 a2, u64 a3);
void semihost_exit(const u64 *block);

/* PSCI (DEN0022) function ids, SMC64 where there is one */
#define PSCI_VERSION 0x84000000ULL
#define PSCI_CPU_ON 0xC4000003ULL
#define PSCI_AFFINITY_INFO 0xC4000004ULL
#define PSCI_SYSTEM_OFF 0x84000008ULL
#define PSCI_FEATURES 0x8400000AULL
#define PSCI_SYSTEM_RESET2 0xC4000012ULL
/* god's vendor-specific SYSTEM_RESET2 reset type (DEN0022D 5.20.1: bit 31 set = vendor); the
 * cookie (x2) is the exit-port value v, the host sees (v << 1) | 1. Defined in god as
 * god.arch.aarch64.runner.RESET2_GOD_EXIT; tests/agent/test_agent_sync.py keeps them equal. */
#define GOD_RESET2_EXIT 0x8000060DULL

/* main.c */
extern volatile int cpus_online;
extern volatile int cpu_up[MAX_CPUS];
extern volatile int semihost_failed;
extern i64 boot_cpu_on; /* PSCI CPU_ON's answer for vCPU 1 at boot */
extern volatile int guard_armed[MAX_CPUS];
extern volatile u64 guard_esr[MAX_CPUS]; /* ESR_EL1 | 1 << 63 of the fault, 0 if none */
void panic_exit(const char *why, u64 a, u64 b);
void system_exit(u64 status);
void *memcpy(void *d, const void *s, unsigned long n);
void *memset(void *d, int c, unsigned long n);

/* gic.c */
extern volatile u32 intid_counts[MAX_CPUS][NINTID];
extern volatile u32 held_intids[MAX_CPUS][8];
extern volatile int nheld[MAX_CPUS];
extern volatile u8 manual_eoi[NINTID];
extern volatile int eoimode[MAX_CPUS];
u64 gicr_base(int cpu);
void gic_dist_init(void);
void gic_cpu_init(int cpu);
void gic_config(int intid, int cpu, int level, u8 prio);
void gic_enable(int intid, int cpu, int on);
int gic_enabled(int intid, int cpu);
void gic_set_eoimode(int mode);
void gic_sgi(int target, int intid);
int gic_release_held(int cpu);
void irq_dispatch(int cpu);
u64 gic_spi_lines(void);

/* timer.c */
extern volatile u32 vtimer_fired[MAX_CPUS];
extern volatile u64 vtimer_at[MAX_CPUS];
u64 ns_to_cnt(u64 ns);
u64 cnt_to_ns(u64 c);
void ptimer_isr(void);
void vtimer_isr(int cpu);
void ptimer_arm(u64 deadline_cnt);
/* WFI (interrupts masked around the check, so none is missed) until cond or the counter
 * deadline; the physical timer bounds each WFI */
#define WAIT_UNTIL(cond, deadline)                              \
    do {                                                        \
        for (;;) {                                              \
            irq_off();                                          \
            if ((cond) || cntvct() >= (deadline)) {             \
                irq_on();                                       \
                break;                                          \
            }                                                   \
            ptimer_arm(deadline);                               \
            __asm__ volatile("wfi" ::: "memory");               \
            irq_on();                                           \
        }                                                       \
    } while (0)

/* uart.c */
extern volatile u32 rx_bytes, rx_irqs, rx_overruns, rx_dropped, rx_empty_irqs;
void uart_init(void);
void uart_putc(char c);
void uart_puts(const char *s);
void uart_isr(void);
int rx_available(void);
int rx_getc(void);

/* agent.c */
void agent_banner(void);
void agent_loop(void);
void agent_secondary_loop(int cpu);

#endif
