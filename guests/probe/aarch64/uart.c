/* The PL011 console (ARM DDI 0183): polled transmit, interrupt-driven receive into a ring. */
#include "probe.h"

#define DR 0x00
#define FR 0x18
#define IBRD 0x24
#define FBRD 0x28
#define LCR_H 0x2C
#define CR 0x30
#define IMSC 0x38
#define MIS 0x40
#define ICR 0x44
#define FR_TXFF (1u << 5)
#define FR_RXFE (1u << 4)
#define RXIM (1u << 4)
#define RTIM (1u << 6)
#define RING 2048

volatile u32 rx_bytes, rx_irqs, rx_overruns, rx_dropped, rx_empty_irqs;
static volatile u8 ring[RING];
static volatile u32 head, tail; /* producer: the ISR on cpu 0; consumer: the agent on cpu 0 */

void uart_init(void) {
    w32(UART_BASE + CR, 0);
    w32(UART_BASE + ICR, 0x7ff);
    w32(UART_BASE + IBRD, 13); /* 115200 baud from QEMU virt's 24 MHz UARTCLK */
    w32(UART_BASE + FBRD, 1);
    w32(UART_BASE + LCR_H, 0x70); /* 8 bits, FIFOs on */
    w32(UART_BASE + IMSC, RXIM | RTIM);
    w32(UART_BASE + CR, 0x301); /* UARTEN, TXE, RXE */
}

void uart_putc(char c) {
    while (r32(UART_BASE + FR) & FR_TXFF)
        ;
    w32(UART_BASE + DR, (u8)c);
}

void uart_write(const char *s, int n) {
    for (int i = 0; i < n; i++)
        uart_putc(s[i]);
}

void uart_puts(const char *s) {
    while (*s)
        uart_putc(*s++);
}

void uart_isr(void) {
    u32 got = 0;
    /* clear first, then drain: a byte arriving after the last FR read raises RXRIS again
     * (cleared after the drain, it would sit in the FIFO with no interrupt to announce it) */
    w32(UART_BASE + ICR, RXIM | RTIM | (0xfu << 7));
    while (!(r32(UART_BASE + FR) & FR_RXFE)) {
        u32 d = r32(UART_BASE + DR);
        if (d & (1u << 11))
            rx_overruns++;
        u32 next = (head + 1) % RING;
        if (next == tail) {
            rx_dropped++;
        } else {
            ring[head] = (u8)d;
            head = next;
        }
        got++;
    }
    rx_bytes += got;
    rx_irqs++;
    if (!got)
        rx_empty_irqs++;
}

int rx_available(void) { return head != tail; }

int rx_getc(void) {
    if (head == tail)
        return -1;
    int c = ring[tail];
    tail = (tail + 1) % RING;
    return c;
}
