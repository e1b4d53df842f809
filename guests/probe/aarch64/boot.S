/* Entry of the arm64 probe: the Linux arm64 Image header (Documentation/arch/arm64/booting.rst),
 * the drop from EL2 when entered there, stacks, and the exception vectors (VBAR_EL1). */
#include "regs.h"

    .section .text.head, "ax"
    .global _head
_head:
    b       entry                   /* code0 */
    .long   0                       /* code1 */
    .quad   TEXT_OFFSET             /* text_offset: loaded at RAM base + 0x80000 */
    .quad   _image_end - _head      /* image_size, .bss included */
    .quad   0                       /* flags: little-endian, page size unspecified, 2 MiB-aligned base */
    .quad   0, 0, 0                 /* res2-res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5 (no PE/COFF header) */

    .text
/* x0: the device tree's physical address (the Image protocol) */
entry:
    mov     x19, x0
    bl      to_el1
    ldr     x1, =cpu_stacks + STACK_SIZE
    mov     sp, x1
    msr     tpidr_el1, xzr          /* cpu index 0 */
    ldr     x1, =vectors
    msr     vbar_el1, x1
    isb
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  dsb     sy
    mov     x0, x19
    bl      probe_main
3:  wfi
    b       3b

/* PSCI CPU_ON entry of a secondary vCPU: x0 = context id = its cpu index */
    .global secondary_entry
secondary_entry:
    mov     x19, x0
    bl      to_el1
    ldr     x1, =cpu_stacks + STACK_SIZE
    mov     x2, #STACK_SIZE
    madd    x1, x2, x19, x1
    mov     sp, x1
    msr     tpidr_el1, x19
    ldr     x1, =vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      secondary_main
4:  wfi
    b       4b

/* Continue at EL1 (QEMU without virtualization=on and KVM enter at EL1; EL2 drops). */
to_el1:
    msr     daifset, #0xf
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #2
    b.ne    5f
    mov     x1, #(1 << 31)          /* HCR_EL2.RW: EL1 is AArch64 */
    msr     hcr_el2, x1
    mrs     x1, cnthctl_el2
    orr     x1, x1, #3              /* EL1 may use the physical counter and timer */
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    mrs     x1, S3_4_C12_C9_5       /* ICC_SRE_EL2: SRE and Enable (EL1's ICC_SRE_EL1) */
    mov     x2, #9
    orr     x1, x1, x2
    msr     S3_4_C12_C9_5, x1
    isb
    ldr     x1, =0x30d00800         /* SCTLR_EL1 RES1 bits, MMU and caches off */
    msr     sctlr_el1, x1
    mov     x1, #0x3c5              /* EL1h, DAIF masked */
    msr     spsr_el2, x1
    msr     elr_el2, x30
    eret
5:  ret

/* ---------------------------------------------------------------- exception vectors */
.macro VENTRY kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exc_common
.endm

    .balign 0x800
    .global vectors
vectors:
    VENTRY  EXC_SYNC_SP0            /* current EL, SP_EL0 */
    VENTRY  EXC_IRQ_SP0
    VENTRY  EXC_FIQ_SP0
    VENTRY  EXC_SERROR_SP0
    VENTRY  EXC_SYNC                /* current EL, SP_ELx: the probe's own */
    VENTRY  EXC_IRQ
    VENTRY  EXC_FIQ
    VENTRY  EXC_SERROR
    VENTRY  EXC_LOWER               /* lower EL, AArch64: the probe has none */
    VENTRY  EXC_LOWER
    VENTRY  EXC_LOWER
    VENTRY  EXC_LOWER
    VENTRY  EXC_LOWER               /* lower EL, AArch32 */
    VENTRY  EXC_LOWER
    VENTRY  EXC_LOWER
    VENTRY  EXC_LOWER

exc_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_el1
    str     x1, [sp, #256]
    mov     x1, x0
    mov     x0, sp
    bl      exc_handler
    ldr     x1, [sp, #256]
    msr     spsr_el1, x1
    ldp     x30, x1, [sp, #240]
    msr     elr_el1, x1
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret

/* ---------------------------------------------------------------- guarded accesses
 * One load or store each: a data abort while guard_armed is set resumes after it (intr.c). */
    .global mmio_rd8, mmio_rd16, mmio_rd32, mmio_rd64, mmio_wr8, mmio_wr16, mmio_wr32, mmio_wr64
mmio_rd8:  mov x1, x0; mov x0, #0; ldrb w0, [x1]; ret
mmio_rd16: mov x1, x0; mov x0, #0; ldrh w0, [x1]; ret
mmio_rd32: mov x1, x0; mov x0, #0; ldr w0, [x1]; ret
mmio_rd64: mov x1, x0; mov x0, #0; ldr x0, [x1]; ret
mmio_wr8:  strb w1, [x0]; ret
mmio_wr16: strh w1, [x0]; ret
mmio_wr32: str w1, [x0]; ret
mmio_wr64: str x1, [x0]; ret

/* x0 = function id, x1-x3 arguments: SMCCC over HVC (QEMU virt and KVM's PSCI conduit) */
    .global psci_call
psci_call:
    hvc     #0
    ret

/* Arm semihosting SYS_EXIT (0x18) with the AArch64 parameter block in x1: HLT #0xF000.
 * Where semihosting is off HLT is UNDEFINED; the handler skips it and sets semihost_failed. */
    .global semihost_exit
semihost_exit:
    mov     x1, x0
    mov     x0, #0x18
    hlt     #0xf000
    ret
