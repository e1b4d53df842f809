/* Constants shared by boot.S and the C files of the arm64 probe: QEMU virt's memory map
 * (hw/arm/virt.c), which god's arm64 machine follows, and the exception frame. */
#ifndef PROBE_A64_REGS_H
#define PROBE_A64_REGS_H

#define TEXT_OFFSET 0x80000
#define STACK_SIZE 16384
#define MAX_CPUS 2
#define FRAME_SIZE 272 /* x0-x30, elr, spsr (16-byte aligned) */

#define EXC_SYNC_SP0 0
#define EXC_IRQ_SP0 1
#define EXC_FIQ_SP0 2
#define EXC_SERROR_SP0 3
#define EXC_SYNC 4
#define EXC_IRQ 5
#define EXC_FIQ 6
#define EXC_SERROR 7
#define EXC_LOWER 8

#define RAM_BASE 0x40000000ULL
#define GICD_BASE 0x08000000ULL
#define GICR_BASE 0x080A0000ULL
#define GICR_STRIDE 0x20000ULL /* RD_base + SGI_base frames */
#define UART_BASE 0x09000000ULL
#define UART_INTID 33 /* SPI 1 */
#define VTIMER_INTID 27 /* PPI 11: the EL1 virtual timer */
#define CALL_SGI 15 /* "run the mailbox request" to a secondary vCPU */
#define PTIMER_INTID 30 /* PPI 14: the EL1 physical timer, the agent's own waits */

#endif
