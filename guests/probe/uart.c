/* COM1 16550: polled transmit, interrupt-driven receive into a single-producer ring. */
#include "probe.h"

#define RING 4096 /* power of two */

static volatile u8 ring[RING];
static volatile u32 ring_head, ring_tail; /* head: ISR writes; tail: agent reads */
volatile u32 rx_bytes, rx_irqs, rx_overruns, rx_dropped, rx_empty_irqs;

void uart_init(void) {
    outb(COM1 + 1, 0x00); /* IER: nothing while we configure */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0x07); /* FIFO on, both cleared, RX trigger at 1 byte */
    outb(COM1 + 4, 0x0B); /* DTR | RTS | OUT2 (OUT2 gates the IRQ line on a PC) */
    (void)inb(COM1 + 5);
    (void)inb(COM1 + 0);
}

void uart_enable_rx_irq(void) { outb(COM1 + 1, 0x01); /* received-data-available */ }

void uart_putc(char c) {
    while (!(inb(COM1 + 5) & 0x20))
        pause();
    outb(COM1, (u8)c);
}

void uart_write(const char *s, int n) {
    for (int i = 0; i < n; i++)
        uart_putc(s[i]);
}

void uart_puts(const char *s) {
    while (*s)
        uart_putc(*s++);
}

/* Drain everything the FIFO holds: one interrupt may cover many bytes. */
void uart_isr(void) {
    rx_irqs++;
    u32 before = rx_bytes;
    for (;;) {
        u8 lsr = inb(COM1 + 5);
        if (lsr & 0x02)
            rx_overruns++;
        if (!(lsr & 0x01))
            break;
        u8 c = inb(COM1);
        rx_bytes++;
        u32 h = ring_head;
        if (h - ring_tail >= RING) {
            rx_dropped++;
            continue;
        }
        ring[h & (RING - 1)] = c;
        ring_head = h + 1;
    }
    if (rx_bytes == before) /* an interrupt with nothing received (an edge latched meanwhile?) */
        rx_empty_irqs++;
}

int rx_available(void) { return ring_head != ring_tail; }

int rx_getc(void) {
    u32 t = ring_tail;
    if (t == ring_head)
        return -1;
    int c = ring[t & (RING - 1)];
    ring_tail = t + 1;
    return c;
}
