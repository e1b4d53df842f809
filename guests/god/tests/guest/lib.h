/* Tiny freestanding helpers for god's 64-bit test guests. Built with
   -mgeneral-regs-only: under PVM ring-0 code must not touch SSE. */
#pragma once
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32;
typedef unsigned long u64;

static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u16 inw(u16 p) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }
#define MMIO(t, a) (*(volatile t *)(u64)(a))
static inline void sti(void) { __asm__ volatile("sti"); }
static inline void cli(void) { __asm__ volatile("cli"); }
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }

static void putc(char c) { while (!(inb(0x3fd) & 0x20)) {} outb(0x3f8, c); }
static void puts(const char *s) { while (*s) putc(*s++); }
static void puthex(u64 v) {
    puts("0x");
    for (int i = 60; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]);
}
static void exit_guest(u8 code) { outb(0xf4, code); for (;;) __asm__ volatile("cli; hlt"); }

/* IDT: 256 gates pointing at the stubs in start64.S (16 bytes apart). */
extern char isr_table_start[];
static u64 idt[512] __attribute__((aligned(16)));
typedef void (*handler_t)(u64 vector);
static handler_t handlers[256];
void isr_dispatch(u64 vector) {
    if (handlers[vector]) { handlers[vector](vector); return; }
    puts("unexpected vector "); puthex(vector); putc('\n');
    exit_guest(0x7f);
}
static void idt_init(void) {
    for (int v = 0; v < 256; v++) {
        u64 a = (u64)isr_table_start + 16 * v;
        idt[2 * v] = (a & 0xffff) | (0x10UL << 16) | (0x8eUL << 40) | ((a >> 16 & 0xffff) << 48);
        idt[2 * v + 1] = a >> 32;
    }
    struct __attribute__((packed)) { u16 limit; u64 base; } d = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" :: "m"(d));
}

/* 8259 PIC: vectors 0x20-0x2f, everything masked. */
static void pic_init(void) {
    outb(0x20, 0x11); outb(0xa0, 0x11);
    outb(0x21, 0x20); outb(0xa1, 0x28);
    outb(0x21, 0x04); outb(0xa1, 0x02);
    outb(0x21, 0x01); outb(0xa1, 0x01);
    outb(0x21, 0xff); outb(0xa1, 0xff);
}
static void pic_unmask(int irq) {
    u16 port = irq < 8 ? 0x21 : 0xa1;
    outb(port, inb(port) & ~(1 << (irq & 7)));
    if (irq >= 8) outb(0x21, inb(0x21) & ~(1 << 2));
}
static void pic_eoi(int irq) { if (irq >= 8) outb(0xa0, 0x20); outb(0x20, 0x20); }

#define LAPIC 0xfee00000UL
static void lapic_enable(void) { MMIO(u32, LAPIC + 0xf0) = 0x1ff; }
static void lapic_eoi(void) { MMIO(u32, LAPIC + 0xb0) = 0; }
static u32 lapic_id(void) { return MMIO(u32, LAPIC + 0x20) >> 24; }
#define IOAPIC 0xfec00000UL
static void ioapic_route(int gsi, u8 vector, u8 dest) {
    MMIO(u32, IOAPIC) = 0x10 + 2 * gsi; MMIO(u32, IOAPIC + 0x10) = vector;   /* edge, high */
    MMIO(u32, IOAPIC) = 0x11 + 2 * gsi; MMIO(u32, IOAPIC + 0x10) = (u32)dest << 24;
}
