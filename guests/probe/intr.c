/* IDT, exception handling, 8259 PIC (masked), LAPIC and IOAPIC. */
#include "probe.h"

struct idt_gate {
    u16 off_lo, sel;
    u8 ist, type;
    u16 off_mid;
    u32 off_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct {
    u16 limit;
    u64 base;
} __attribute__((packed)) idt_ptr;
extern u8 isr_stubs[];

volatile u32 vec_counts[MAX_CPUS][256];
volatile u32 eoi_held;
volatile int guard_armed[MAX_CPUS];
volatile u64 guard_fault[MAX_CPUS];
volatile u8 apic_ids[MAX_CPUS];
static u8 line_manual_eoi[NLINES];
static u8 line_pins[NLINES];
static u8 line_routed[NLINES];

void idt_init(void) {
    if (idt[0].type == 0) { /* the first CPU fills it; the AP only loads it */
        for (int v = 0; v < 256; v++) {
            u64 a = (u64)isr_stubs + 16 * (u64)v;
            idt[v].off_lo = (u16)a;
            idt[v].sel = 0x08;
            idt[v].ist = 0;
            idt[v].type = 0x8E; /* present, DPL0, 64-bit interrupt gate (IF cleared) */
            idt[v].off_mid = (u16)(a >> 16);
            idt[v].off_hi = (u32)(a >> 32);
            idt[v].zero = 0;
        }
        idt_ptr.limit = sizeof(idt) - 1;
        idt_ptr.base = (u64)idt;
    }
    __asm__ volatile("lidt %0" : : "m"(idt_ptr));
}

static void exception(struct frame *f, int cpu) {
    /* A guarded MMIO access faulted: report it to the caller instead of dying. */
    if (cpu >= 0 && cpu < MAX_CPUS && guard_armed[cpu] && (f->vec == 13 || f->vec == 14)) {
        guard_fault[cpu] = f->vec + 1;
        guard_armed[cpu] = 0;
        f->rip = (u64)guarded_fault_ret;
        return;
    }
    u64 cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    log_kv("probe: exception", "vec", f->vec, "err", f->err);
    log_kv("probe: exception", "rip", f->rip, "cr2", cr2);
    panic_exit("exception", f->vec, (u64)cpu);
}

void isr_dispatch(struct frame *f) {
    int cpu = this_cpu();
    u32 v = (u32)f->vec;
    if (cpu >= 0 && cpu < MAX_CPUS)
        vec_counts[cpu][v]++;
    if (v < 32) {
        exception(f, cpu);
        return;
    }
    if (v == VEC_SPURIOUS)
        return; /* spurious LAPIC interrupts take no EOI */
    if (v >= VEC_PIC_BASE && v < VEC_PIC_BASE + 16) {
        if (v == VEC_PIC_BASE + 15)
            outb(0x20, 0x20); /* a spurious IRQ15 still needs the master's EOI */
        return;               /* the PIC is fully masked: anything here is spurious */
    }
    if (v == VEC_UART) {
        uart_isr();
    } else if (v == VEC_TIMER) {
        timer_isr(cpu);
    } else if (v >= VEC_LINE_BASE && v < VEC_LINE_BASE + NLINES) {
        int line = (int)v - VEC_LINE_BASE;
        if (line == 0)
            pit_isr();
        if (line_manual_eoi[line]) {
            eoi_held++; /* the host's "eoi" command releases it */
            return;
        }
    }
    lapic_eoi();
}

/* ---------------------------------------------------------------- 8259 */
void pic_disable(void) {
    /* Remap away from the exception vectors first, so a spurious IRQ7/15 is recognisable. */
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, VEC_PIC_BASE);
    outb(0xA1, VEC_PIC_BASE + 8);
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}

/* ---------------------------------------------------------------- LAPIC (xAPIC MMIO) */
u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_BASE + reg); }
void lapic_write(u32 reg, u32 v) { mmio_write32(LAPIC_BASE + reg, v); }
void lapic_eoi(void) { lapic_write(0xB0, 0); }

void lapic_init(void) {
    u64 base = rdmsr(0x1B);
    if (!(base & (1ULL << 11)))
        wrmsr(0x1B, base | (1ULL << 11)); /* global enable */
    lapic_write(0xF0, 0x100 | VEC_SPURIOUS); /* software enable + spurious vector */
    lapic_write(0x80, 0);                    /* TPR: accept everything */
    lapic_write(0x3E0, 0x3);                 /* timer divide by 16 */
    lapic_write(0x320, 0x10000 | VEC_TIMER); /* timer masked until armed */
    lapic_write(0x350, 0x10000);             /* LINT0 masked: the 8259 is not used */
    lapic_write(0x360, 0x400);               /* LINT1: NMI */
    lapic_write(0x370, 0x10000);             /* error LVT masked */
    apic_ids[this_cpu()] = (u8)(lapic_read(0x20) >> 24);
}

/* Returns 0 once the ICR reports the IPI as sent, -1 if it stays pending. */
int ipi_send(u8 apic_id, u32 icr_low) {
    lapic_write(0x310, (u32)apic_id << 24);
    lapic_write(0x300, icr_low);
    for (int i = 0; i < 100000; i++) {
        if (!(lapic_read(0x300) & (1u << 12)))
            return 0;
        pause();
    }
    return -1;
}

/* ---------------------------------------------------------------- IOAPIC */
u32 ioapic_read(u32 reg) {
    mmio_write32(IOAPIC_BASE, reg);
    return mmio_read32(IOAPIC_BASE + 0x10);
}
void ioapic_write(u32 reg, u32 v) {
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, v);
}

void ioapic_init(void) {
    int pins = (int)((ioapic_read(1) >> 16) & 0xFF) + 1;
    if (pins > NLINES)
        pins = NLINES;
    for (int p = 0; p < pins; p++) {
        ioapic_write(0x10 + 2 * p, 0x10000); /* masked */
        ioapic_write(0x11 + 2 * p, 0);
    }
    for (int l = 0; l < NLINES; l++)
        line_pins[l] = (u8)l;
    line_pins[0] = 2; /* without an MP table: ISA IRQ0 (the PIT) on pin 2, the PC convention */
    if (mp.found)
        for (int l = 0; l < 16; l++)
            if (mp.isa_pin[l] < NLINES)
                line_pins[l] = mp.isa_pin[l];
}

int line_vector(int line) { return line == UART_LINE ? VEC_UART : VEC_LINE_BASE + line; }
int line_pin(int line) { return line_pins[line]; }

void line_route(int line, int pin, int level, int masked) {
    if (line_routed[line] && line_pins[line] != pin)
        ioapic_write(0x10 + 2 * line_pins[line], 0x10000); /* retire the old pin */
    line_pins[line] = (u8)pin;
    line_routed[line] = 1;
    u32 lo = (u32)line_vector(line) | (level ? (1u << 15) : 0) | (masked ? 0x10000u : 0);
    ioapic_write(0x11 + 2 * pin, (u32)apic_ids[0] << 24);
    ioapic_write(0x10 + 2 * pin, lo);
}

void line_set_mask(int line, int masked) {
    u32 reg = 0x10 + 2 * (u32)line_pins[line];
    u32 lo = ioapic_read(reg);
    ioapic_write(reg, masked ? (lo | 0x10000) : (lo & ~0x10000u));
}

int line_masked(int line) { return (ioapic_read(0x10 + 2 * (u32)line_pins[line]) >> 16) & 1; }
void line_set_manual_eoi(int line, int manual) { line_manual_eoi[line] = (u8)manual; }

u32 line_count(int line) {
    u32 n = 0;
    for (int c = 0; c < MAX_CPUS; c++)
        n += vec_counts[c][line_vector(line)];
    return n;
}
