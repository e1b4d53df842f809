// Two vCPUs by PSCI (Arm DEN0022D 5.6 CPU_ON): CPU 0 starts CPU 1 (MPIDR 1) at `second`,
// CPU 1 prints "cpu1 up" on the PL011 and powers the system off (SYSTEM_OFF). If CPU_ON
// fails, CPU 0 prints "CPU_ON failed" and powers off with SYSTEM_RESET2 (god: status 7).
    .text
    .global _start
_start:
    movz    x0, #0x0003
    movk    x0, #0xc400, lsl #16    // CPU_ON (SMC64)
    mov     x1, #1                  // target MPIDR: Aff0 = 1
    adr     x2, second              // entry point (physical: the MMU is off)
    mov     x3, #0                  // context id
    hvc     #0
    cbnz    x0, failed
1:  wfi
    b       1b
failed:
    adr     x2, msg_fail
    bl      puts
    movz    x0, #0x0012
    movk    x0, #0xc400, lsl #16
    movz    x1, #0x060d
    movk    x1, #0x8000, lsl #16
    mov     x2, #3
    hvc     #0
    b       1b
second:
    adr     x2, msg_up
    bl      puts
    movz    x0, #0x0008
    movk    x0, #0x8400, lsl #16    // SYSTEM_OFF
    hvc     #0
2:  wfi
    b       2b
puts:                               // x2 = NUL-terminated string
    movz    x1, #0x0900, lsl #16
3:  ldrb    w0, [x2]
    add     x2, x2, #1
    cbz     w0, 4f
    strb    w0, [x1]
    b       3b
4:  ret
msg_up:
    .asciz  "cpu1 up\n"
msg_fail:
    .asciz  "CPU_ON failed\n"
