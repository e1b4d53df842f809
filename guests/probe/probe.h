/* Probe kernel: shared declarations. Freestanding, general registers only (PVM's ring-0
 * emulator stops on SSE), no libc. */
#ifndef PROBE_H
#define PROBE_H

#include "common.h"

#define MAX_CPUS 2
#define STACK_SIZE 16384 /* keep in step with boot.S */
#define TRAMP_BASE 0x8000

/* Interrupt vectors. The console UART sits in a higher priority class than every other
 * line so a test that holds back an EOI never silences the agent. */
#define VEC_PIC_BASE 0x20   /* 8259 remapped here, then fully masked: only spurious */
#define VEC_LINE_BASE 0x40  /* IOAPIC line L -> 0x40 + L (L < 24) */
#define VEC_UART 0xE4
#define VEC_TIMER 0xEF      /* LAPIC timer */
#define VEC_CALL 0xF0       /* "run the mailbox request" IPI to an AP */
#define VEC_SPURIOUS 0xFF
#define VEC_TEST_MIN 0x50   /* vectors the host may use for test IPIs */
#define VEC_TEST_MAX 0xDF
#define UART_LINE 4
#define NLINES 24

#define COM1 0x3F8
#define EXIT_PORT 0xF4
#define LAPIC_BASE 0xFEE00000ULL
#define IOAPIC_BASE 0xFEC00000ULL

/* ---------------------------------------------------------------- CPU primitives */
static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u16 inw(u16 p) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
/* sti;hlt is atomic with respect to interrupts: the check done under cli cannot miss one */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline u64 rdmsr(u32 msr) {
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}
static inline void cpuid(u32 leaf, u32 sub, u32 r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }

/* CPU index from the stack: each CPU runs (and takes interrupts) on its own aligned stack. */
extern u8 cpu_stacks[];
static inline int this_cpu(void) {
    u64 sp;
    __asm__("mov %%rsp, %0" : "=r"(sp));
    return (int)((sp - (u64)cpu_stacks) / STACK_SIZE);
}

/* boot.S */
extern u32 boot_eax, boot_ebx;
extern u64 ap_stack_top;
extern u8 tramp_start[], tramp_end[];
u64 mmio_rd8(u64 a), mmio_rd16(u64 a), mmio_rd32(u64 a), mmio_rd64(u64 a);
void mmio_wr8(u64 a, u64 v), mmio_wr16(u64 a, u64 v), mmio_wr32(u64 a, u64 v), mmio_wr64(u64 a, u64 v);
extern u8 guarded_fault_ret[];

/* ---------------------------------------------------------------- intr.c */
struct frame {
    u64 r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
    u64 vec, err, rip, cs, rflags, rsp, ss;
};
extern volatile u32 vec_counts[MAX_CPUS][256];
extern volatile u32 eoi_held;
extern volatile int guard_armed[MAX_CPUS];
extern volatile u64 guard_fault[MAX_CPUS]; /* vector + 1 of the fault, 0 if none */
extern volatile u8 apic_ids[MAX_CPUS];
void idt_init(void);
void pic_disable(void);
void lapic_init(void);
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
void lapic_eoi(void);
int ipi_send(u8 apic_id, u32 icr_low);
void ioapic_init(void);
u32 ioapic_read(u32 reg);
void ioapic_write(u32 reg, u32 v);
int line_vector(int line);
int line_pin(int line);
void line_route(int line, int pin, int level, int masked);
void line_set_mask(int line, int masked);
int line_masked(int line);
void line_set_manual_eoi(int line, int manual);
u32 line_count(int line);

/* ---------------------------------------------------------------- timer.c */
extern u64 tsc_khz, lapic_khz, tsc_boot;
extern volatile u32 timer_fired[MAX_CPUS];
extern volatile u64 timer_tsc[MAX_CPUS];
extern volatile u32 pit_ticks;
extern volatile u64 pit_first_tsc, pit_last_tsc;
void timer_calibrate(void);
u64 tsc_to_ns(u64 delta);
u64 ns_to_tsc(u64 ns);
void lapic_timer_arm_tsc(u64 delta_tsc); /* one-shot after about delta_tsc TSC ticks */
void delay_us(u64 us);
void timer_isr(int cpu);
void pit_isr(void);
int pit_start(u32 hz, int pin);
void pit_stop(void);
extern u32 pit_hz, pit_divisor;
extern int pit_line_pin;
extern u64 pit_start_tsc, pit_stop_tsc, pit_period_tsc;
extern volatile u32 pit_gaps, pit_missed, pit_bunched;
u32 pit_pending(void);
extern u32 pit_pending_at_stop;

/* wait (HLT, interrupts on) until cond or the TSC deadline; the LAPIC timer bounds each HLT */
#define WAIT_UNTIL(cond, deadline)                          \
    do {                                                    \
        for (;;) {                                          \
            cli();                                          \
            u64 now_ = rdtsc();                             \
            if ((cond) || now_ >= (deadline)) { sti(); break; } \
            lapic_timer_arm_tsc((deadline) - now_);         \
            sti_hlt();                                      \
        }                                                   \
    } while (0)

/* ---------------------------------------------------------------- uart.c */
extern volatile u32 rx_bytes, rx_irqs, rx_overruns, rx_dropped, rx_empty_irqs;
void uart_init(void);
void uart_enable_rx_irq(void);
void uart_putc(char c);
void uart_write(const char *s, int n);
void uart_puts(const char *s);
void uart_isr(void);
int rx_available(void);
int rx_getc(void); /* -1 when empty; call with care for interrupts (ring is SPSC) */

/* ---------------------------------------------------------------- agent.c */
void agent_loop(void);
void agent_ap_loop(int cpu);
void agent_banner(void);

/* ---------------------------------------------------------------- mp.c */
struct mp_info {
    int found;
    int cpus;
    u8 isa_pin[16]; /* IOAPIC pin of each ISA IRQ, 0xff if the table has none */
};
extern struct mp_info mp;
void mp_parse(void);

/* ---------------------------------------------------------------- main.c */
extern volatile int cpus_online;
extern const char *boot_protocol;
void panic_exit(const char *why, u64 a, u64 b);
void *memcpy(void *d, const void *s, unsigned long n);
void *memset(void *d, int c, unsigned long n);


#endif
