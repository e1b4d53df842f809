// A tiny arm64 kernel for god's aarch64 backend and QEMU virt alike: prints a message on
// the PL011 at 0x09000000, then ends as the variant's EXIT says:
//   EXIT_OFF    PSCI SYSTEM_OFF (0x84000008) by HVC: a clean stop, status 0
//   EXIT_RESET2 PSCI SYSTEM_RESET2 (0xC4000012) with god's vendor reset type 0x8000060D
//               and cookie STATUS: exit status (STATUS << 1) | 1, like the x86 exit port
//   EXIT_FAULT  a store to 0x0b000000, where virt has nothing: god stops with a message
// Linked at 0x40080000 (RAM base + 0x80000, where a raw -kernel is loaded and entered).
#ifndef STATUS
#define STATUS 21
#endif
    .text
    .global _start
_start:
    movz    x1, #0x0900, lsl #16    // PL011 DR
    adr     x2, msg
1:  ldrb    w0, [x2]
    add     x2, x2, #1
    cbz     w0, 2f
    strb    w0, [x1]
    b       1b
2:
#if defined(EXIT_FAULT)
    movz    x3, #0x0b00, lsl #16
    str     w0, [x3]
#elif defined(EXIT_RESET2)
    movz    x0, #0x0012
    movk    x0, #0xc400, lsl #16
    movz    x1, #0x060d
    movk    x1, #0x8000, lsl #16
    mov     x2, #STATUS
    hvc     #0
#else
    movz    x0, #0x0008
    movk    x0, #0x8400, lsl #16
    hvc     #0
#endif
3:  wfi
    b       3b
msg:
    .asciz  "hello from arm64\n"
