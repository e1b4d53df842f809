/* Entry and interrupt stubs for 64-bit flat test guests (god --flat-mode 64).
   god enters in long mode with an identity map of 4 GiB and RSP = 0x9f000. */
.code64
.section .text.start, "ax"
.globl _start
_start:
    cld
    call main
    mov %eax, %edx          /* exit port: value = main's return */
    mov %edx, %eax
    mov $0xf4, %dx
    out %al, %dx
1:  cli
    hlt
    jmp 1b

/* One stub per vector: push a dummy error code where the CPU does not push one, then
   the vector number, and go to the common path that calls isr_dispatch(vector). */
.macro stub n
.align 16
isr\n:
.if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
.else
    push $0
.endif
    push $\n
    jmp isr_common
.endm

.align 16
.globl isr_table_start
isr_table_start:
.altmacro
.set i, 0
.rept 256
    stub %i
    .set i, i+1
.endr

isr_common:
    push %rax; push %rcx; push %rdx; push %rsi; push %rdi
    push %r8; push %r9; push %r10; push %r11
    mov 72(%rsp), %rdi      /* vector */
    call isr_dispatch
    pop %r11; pop %r10; pop %r9; pop %r8
    pop %rdi; pop %rsi; pop %rdx; pop %rcx; pop %rax
    add $16, %rsp           /* vector + error code */
    iretq
