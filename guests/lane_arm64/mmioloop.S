// The ARM64 lane benchmark's exit-rate kernel (benchmarks/arm64_lane.py), for god's arm64
// machine and QEMU virt alike: prints "S", reads the PL011's UARTFR (0x09000018) COUNT times
// (on god each read is a KVM_EXIT_MMIO handled in Python; under QEMU, TCG's device model),
// prints "E", then PSCI SYSTEM_OFF by HVC. Linked at 0x40080000 (RAM base + 0x80000, where a
// raw -kernel is entered on both). LDR with an immediate offset and no writeback: a valid
// ISV syndrome, so KVM can hand the access to the VMM (Arm ARM, ESR_ELx.ISS for data aborts).
#ifndef COUNT
#define COUNT 5000
#endif
    .text
    .global _start
_start:
    movz    x1, #0x0900, lsl #16        // PL011 base
    mov     w0, #'S'
    strb    w0, [x1]
    mov     w0, #'\n'
    strb    w0, [x1]
    ldr     x3, =COUNT
1:  ldr     w4, [x1, #0x18]             // UARTFR: one MMIO read
    subs    x3, x3, #1
    b.ne    1b
    mov     w0, #'E'
    strb    w0, [x1]
    mov     w0, #'\n'
    strb    w0, [x1]
    movz    x0, #0x0008
    movk    x0, #0x8400, lsl #16        // PSCI SYSTEM_OFF
    hvc     #0
2:  wfi
    b       2b
    .ltorg
