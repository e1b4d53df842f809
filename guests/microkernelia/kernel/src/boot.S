/* microkernelia ring 0: everything that must run at CPL0, in assembly, without SSE/x87
 * (KVM here is PVM: CPL0 code is emulated, ~4,000x slower, and faults on SSE). It builds the
 * page tables (identity map of 4 GiB, user-accessible, 2 MiB pages, one 4 KiB table for the
 * stack guard page), enters long mode, loads GDT/TSS/IDT and drops to ring 3 with IOPL=3.
 * The Rust kernel runs entirely at CPL3: MMIO through U=1 pages, port I/O by trap-and-emulate:
 * PVM does not honour IOPL (an `in`/`out` at CPL3 raises #GP; `int $0x80` is #UD and `syscall`
 * stays at CPL3), so the #GP handler below performs in/out/rep outsb for ring 3 and returns.
 * The same #GP handler emulates `cli`/`sti` (the saved IF of ring 3) and `hlt` (an
 * interrupt-enabled HLT here, skipped when an interrupt came since ring 3 looked, see
 * emu_hlt). A #PF/#GP at a guarded access (guarded_start..guarded_end, the agent's rd/wr)
 * resumes at guarded_fault with the vector in %rax (Linux exception-table style).
 * Interrupts (vectors 32..255) are taken from ring 3 (IF=1 there): irq_common counts them per
 * vector with the TSC of the first and last one, drains the console UART into a ring buffer
 * on vector 0xe4, and EOIs the LAPIC unless the vector is marked manual-EOI. Everything else
 * (routing, timers, the agent) is Rust at CPL3 through MMIO.
 * Other exceptions: the handler prints a PANIC line on COM1 and exits through the
 * isa-debug-exit port. */

    .section .note.Xen, "a"
    .p2align 2
    .long 4                     /* namesz "Xen\0" */
    .long 4                     /* descsz */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .long _start32

    .section .text.boot, "ax"
    .code32
    .globl _start32
_start32:
    cli
    cld
    movl %ebx, pvh_start_info   /* PVH: %ebx = physical address of hvm_start_info */

    /* Guard page: the 2 MiB region holding it gets a 4 KiB page table with that page absent. */
    movl $guard_page, %eax
    movl %eax, %ecx
    shrl $21, %ecx              /* index into the 4 contiguous page directories */
    movl %ecx, %edx
    shll $21, %edx
    orl $7, %edx                /* present | writable | user */
    movl $guard_pt, %edi
    movl $512, %esi
1:  movl %edx, (%edi)
    movl $0, 4(%edi)
    addl $4096, %edx
    addl $8, %edi
    decl %esi
    jnz 1b
    movl %eax, %ebx
    shrl $12, %ebx
    andl $511, %ebx
    movl $0, guard_pt(,%ebx,8)
    movl $guard_pt, %edx
    orl $7, %edx
    movl %edx, pd(,%ecx,8)
    movl $0, pd+4(,%ecx,8)

    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax   /* PAE, OSFXSR, OSXMMEXCPT (SSE in ring 3) */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx      /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    andl $~((1 << 2) | (1 << 3)), %eax             /* no EM, no TS */
    orl $((1 << 31) | (1 << 5) | (1 << 1) | 1), %eax  /* PG, NE, MP, PE */
    movl %eax, %cr0
    lgdt gdt_ptr
    ljmp $0x10, $start64

    .code64
start64:
    movw $0x18, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $kstack_top, %rsp

    /* TSS descriptor (slot 0x40): base split over the 16-byte descriptor. */
    movabsq $tss, %rax
    movabsq $kstack_top, %rdx
    movq %rdx, 4(%rax)          /* rsp0: where ring-3 exceptions land */
    movw $104, 102(%rax)        /* no I/O bitmap: IOPL=3 grants ports */
    movabsq $gdt, %rdi
    movw $103, 0x40(%rdi)
    movw %ax, 0x42(%rdi)
    movq %rax, %rdx
    shrq $16, %rdx
    movb %dl, 0x44(%rdi)
    movb $0x89, 0x45(%rdi)
    movb $0, 0x46(%rdi)
    shrq $8, %rdx
    movb %dl, 0x47(%rdi)
    shrq $8, %rdx
    movl %edx, 0x48(%rdi)
    movl $0, 0x4c(%rdi)
    movw $0x40, %ax
    ltr %ax

    /* IDT: 256 gates (32 exceptions, 224 interrupts) to stubs laid out every 16 bytes. */
    movabsq $idt, %rdi
    movabsq $exc_stubs, %rax
    movl $256, %ecx
2:  movw %ax, (%rdi)
    movw $0x10, 2(%rdi)
    movw $0x8E00, 4(%rdi)
    movq %rax, %rdx
    shrq $16, %rdx
    movw %dx, 6(%rdi)
    shrq $16, %rdx
    movl %edx, 8(%rdi)
    movl $0, 12(%rdi)
    addq $16, %rax
    addq $16, %rdi
    decl %ecx
    jnz 2b
    lidt idt_ptr

    /* Drop to ring 3: IF=0, IOPL=3. */
    movl pvh_start_info, %edi
    pushq $0x2b                 /* user data | 3 */
    movabsq $user_stack_top, %rax
    pushq %rax
    pushq $0x3002               /* IOPL=3, reserved bit 1 */
    pushq $0x33                 /* user code | 3 */
    movabsq $ring3_entry, %rax
    pushq %rax
    iretq

/* ---------------------------------------------------------------- exceptions (ring 0) */
    .p2align 4
exc_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .p2align 4
    .if (\v == 8) || (\v == 10) || (\v == 11) || (\v == 12) || (\v == 13) || (\v == 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
    pushq $\v
    .else
    pushq $0
    pushq $\v
    .endif
    jmp exc_common
    .endr

    /* vectors 32..255: interrupts */
    .set irqvec, 32
    .rept 224
    .p2align 4
    pushq $irqvec
    jmp irq_common
    .set irqvec, irqvec + 1
    .endr

exc_common:
    /* stack: vector, error code, rip, cs, rflags, rsp, ss */
    testb $3, 24(%rsp)
    jz panic_report
    cmpq $14, (%rsp)
    je guarded
    cmpq $13, (%rsp)
    jne panic_report
guarded:
    /* #PF/#GP from ring 3 at a guarded access: resume at guarded_fault, %rax = vector. */
    pushq %rax
    pushq %rdx
    /* now: 16 vector, 24 error, 32 rip */
    movq 32(%rsp), %rax
    leaq guarded_start(%rip), %rdx
    cmpq %rdx, %rax
    jb 1f
    leaq guarded_end(%rip), %rdx
    cmpq %rdx, %rax
    jae 1f
    leaq guarded_fault(%rip), %rdx
    movq %rdx, 32(%rsp)
    movq 16(%rsp), %rax
    movq %rax, 8(%rsp)
    popq %rdx
    popq %rax
    addq $16, %rsp
    iretq
1:  popq %rdx
    popq %rax
    cmpq $13, (%rsp)
    jne panic_report
    /* #GP from ring 3: emulate the instruction at rip (port I/O, cli, sti, hlt). */
    pushq %rsi
    pushq %rbx
    pushq %rcx
    /* now: 24 vector, 32 error, 40 rip, 48 cs, 56 rflags */
    movq 40(%rsp), %rsi
    movzbl (%rsi), %ebx
    cmpb $0xEE, %bl
    je io_outb
    cmpb $0xEC, %bl
    je io_inb
    cmpb $0xEF, %bl
    je io_outl
    cmpb $0xED, %bl
    je io_inl
    cmpb $0xF3, %bl
    je io_rep
    cmpb $0xFA, %bl
    je emu_cli
    cmpb $0xFB, %bl
    je emu_sti
    cmpb $0xF4, %bl
    je emu_hlt
    cmpb $0x66, %bl
    jne io_fail
    movzbl 1(%rsi), %ebx
    cmpb $0xEF, %bl
    je io_outw
    cmpb $0xED, %bl
    je io_inw
    jmp io_fail
emu_cli:
    andq $~0x200, 56(%rsp)
    movl $1, %ebx
    jmp io_done
emu_sti:
    orq $0x200, 56(%rsp)
    movl $1, %ebx
    jmp io_done
emu_hlt:
    /* ring 3 passes in %rax the irq_total it saw before deciding to sleep: if an interrupt
     * came since, return at once; else sti;hlt (atomic) until the next one. */
    movl $1, %ebx
    cmpq irq_total(%rip), %rax
    jne io_done
    sti
    hlt
    cli
    jmp io_done
io_rep:
    cmpb $0x6E, 1(%rsi)         /* rep outsb: %rsi buffer, %rcx count, %dx port */
    jne io_fail
    pushq %rax
    movq 24(%rsp), %rsi
    movq 8(%rsp), %rcx
20: testq %rcx, %rcx
    jz 21f
    movb (%rsi), %al
    outb %al, %dx
    incq %rsi
    decq %rcx
    jmp 20b
21: movq %rsi, 24(%rsp)
    movq $0, 8(%rsp)
    popq %rax
    movl $2, %ebx
    jmp io_done
io_outb:
    outb %al, %dx
    movl $1, %ebx
    jmp io_done
io_inb:
    inb %dx, %al
    movl $1, %ebx
    jmp io_done
io_outl:
    outl %eax, %dx
    movl $1, %ebx
    jmp io_done
io_inl:
    inl %dx, %eax
    movl $1, %ebx
    jmp io_done
io_outw:
    outw %ax, %dx
    movl $2, %ebx
    jmp io_done
io_inw:
    inw %dx, %ax
    movl $2, %ebx
io_done:
    addq %rbx, 40(%rsp)
    popq %rcx
    popq %rbx
    popq %rsi
    addq $16, %rsp
    iretq
io_fail:
    popq %rcx
    popq %rbx
    popq %rsi
panic_report:
    movabsq $msg_panic, %rsi
    call puts
    movq (%rsp), %rax
    call puthex
    movabsq $msg_err, %rsi
    call puts
    movq 8(%rsp), %rax
    call puthex
    movabsq $msg_rip, %rsi
    call puts
    movq 16(%rsp), %rax
    call puthex
    movabsq $msg_rsp, %rsi
    call puts
    movq 40(%rsp), %rax
    call puthex
    movabsq $msg_cs, %rsi
    call puts
    movq 24(%rsp), %rax
    call puthex
    movabsq $msg_cr2, %rsi
    call puts
    movq %cr2, %rax
    call puthex
    movabsq $guard_page, %rdx
    movq %cr2, %rax
    subq %rdx, %rax
    cmpq $4096, %rax
    jae 3f
    movabsq $msg_guard, %rsi
    call puts
3:  movabsq $msg_nl, %rsi
    call puts
    movw $0xf4, %dx
    movl $0x7e, %eax            /* exit status (0x7e << 1) | 1 = 253 */
    outl %eax, %dx
4:  cli
    hlt
    jmp 4b

/* ---------------------------------------------------------------- interrupts (ring 0) */
irq_common:
    /* stack: vector, rip, cs, rflags, rsp, ss */
    pushq %rax
    pushq %rcx
    pushq %rdx
    movzbl 24(%rsp), %ecx
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    leaq irq_last_tsc(%rip), %rdx
    movq %rax, (%rdx,%rcx,8)
    leaq irq_first_tsc(%rip), %rdx
    cmpq $0, (%rdx,%rcx,8)
    jne 1f
    movq %rax, (%rdx,%rcx,8)
1:  leaq irq_counts(%rip), %rdx
    incl (%rdx,%rcx,4)
    incq irq_total(%rip)
    cmpl $0xE4, %ecx
    jne 2f
    call uart_drain
2:  cmpl $0xFF, %ecx            /* LAPIC spurious: no EOI */
    je 9f
    cmpl $0x30, %ecx
    jae 3f
    cmpl $0x2F, %ecx            /* 8259 (remapped to 0x20..0x2f, masked): spurious only; */
    jne 9f                      /* a spurious IRQ15 still needs the master's EOI */
    movb $0x20, %al
    outb %al, $0x20
    jmp 9f
3:  leaq irq_manual(%rip), %rdx
    cmpb $0, (%rdx,%rcx)
    je 4f
    incl irq_held(%rip)         /* manual EOI: ring 3 sends it (agent command eoi) */
    jmp 9f
4:  movabsq $0xFEE000B0, %rdx
    movl $0, (%rdx)
9:  popq %rdx
    popq %rcx
    popq %rax
    addq $8, %rsp
    iretq

/* Console UART (COM1) receive: drain the FIFO into uart_ring (single producer: this
 * handler; single consumer: ring 3). Clobbers rax, rdx. */
uart_drain:
    pushq %rbx
    pushq %rcx
    pushq %rsi
    incl uart_rx_irqs(%rip)
    movl $4096, %esi            /* bound: a stuck LSR cannot hold ring 0 forever */
10: movw $0x3FD, %dx
    inb %dx, %al
    testb $2, %al
    jz 11f
    incl uart_overruns(%rip)
11: testb $1, %al
    jz 14f
    movw $0x3F8, %dx
    inb %dx, %al
    incl uart_rx_bytes(%rip)
    movl uart_head(%rip), %ebx
    movl %ebx, %edx
    subl uart_tail(%rip), %edx
    cmpl $4096, %edx
    jae 12f
    movl %ebx, %edx
    andl $4095, %edx
    leaq uart_ring(%rip), %rcx
    movb %al, (%rcx,%rdx)
    incl %ebx
    movl %ebx, uart_head(%rip)
    jmp 13f
12: incl uart_dropped(%rip)
13: decl %esi
    jnz 10b
14: popq %rsi
    popq %rcx
    popq %rbx
    ret

/* putc %al on COM1 (waits for THR empty) */
putc:
    pushq %rdx
    pushq %rax
    movw $0x3fd, %dx
5:  inb %dx, %al
    testb $0x20, %al
    jz 5b
    popq %rax
    movw $0x3f8, %dx
    outb %al, %dx
    popq %rdx
    ret

/* puts: NUL-terminated string at %rsi */
puts:
    movb (%rsi), %al
    testb %al, %al
    jz 6f
    call putc
    incq %rsi
    jmp puts
6:  ret

/* puthex: %rax as 0x + 16 hex digits */
puthex:
    pushq %rcx
    pushq %rbx
    movq %rax, %rbx
    movb $'0', %al
    call putc
    movb $'x', %al
    call putc
    movl $16, %ecx
7:  rolq $4, %rbx
    movq %rbx, %rax
    andq $15, %rax
    movabsq $hexdigits, %rdx
    movb (%rdx,%rax), %al
    call putc
    decl %ecx
    jnz 7b
    popq %rbx
    popq %rcx
    ret

/* ---------------------------------------------------------------- ring 3 entry */
    .globl ring3_entry
ring3_entry:
    movq %rdi, %r12
    movabsq $__bss_start, %rdi
    movabsq $__bss_end, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb
    movq %r12, %rdi
    andq $-16, %rsp
    call kmain
8:  jmp 8b

/* ---------------------------------------------------------------- guarded accesses (ring 3)
 * g_rdN(addr, out) -> 0 and *out = value; g_wrN(addr, value) -> 0. A fault in
 * guarded_start..guarded_end resumes at guarded_fault with %rax = the vector (13 or 14);
 * nothing is pushed before the access, so `ret` there returns to the caller. */
    .text
    .globl g_rd8, g_rd16, g_rd32, g_rd64, g_wr8, g_wr16, g_wr32, g_wr64, guarded_fault
guarded_start:
g_rd8:
    movzbl (%rdi), %eax
    movq %rax, (%rsi)
    xorl %eax, %eax
    ret
g_rd16:
    movzwl (%rdi), %eax
    movq %rax, (%rsi)
    xorl %eax, %eax
    ret
g_rd32:
    movl (%rdi), %eax
    movq %rax, (%rsi)
    xorl %eax, %eax
    ret
g_rd64:
    movq (%rdi), %rax
    movq %rax, (%rsi)
    xorl %eax, %eax
    ret
g_wr8:
    movb %sil, (%rdi)
    xorl %eax, %eax
    ret
g_wr16:
    movw %si, (%rdi)
    xorl %eax, %eax
    ret
g_wr32:
    movl %esi, (%rdi)
    xorl %eax, %eax
    ret
g_wr64:
    movq %rsi, (%rdi)
    xorl %eax, %eax
    ret
guarded_end:
guarded_fault:
    ret

    .section .rodata
msg_panic: .asciz "\r\nPANIC: microkernelia: cpu exception "
msg_err:   .asciz " error "
msg_rip:   .asciz " rip "
msg_rsp:   .asciz " rsp "
msg_cr2:   .asciz " cr2 "
msg_cs:    .asciz " cs "
msg_guard: .asciz " (stack guard page hit: stack overflow)"
msg_nl:    .asciz "\r\n"
hexdigits: .ascii "0123456789abcdef"

    .section .data
    .p2align 12
    .globl pml4
pml4:
    .quad pdpt + 7
    .fill 511, 8, 0
pdpt:
    .quad pd + 7
    .quad pd + 0x1000 + 7
    .quad pd + 0x2000 + 7
    .quad pd + 0x3000 + 7
    .fill 508, 8, 0
pd:                             /* 2048 x 2 MiB, present | writable | user | PS */
    .set addr, 0
    .rept 2048
    .quad addr + 0x87
    .set addr, addr + 0x200000
    .endr
guard_pt:
    .fill 512, 8, 0
    .p2align 4
gdt:                            /* Linux's selector layout (what PVM expects) */
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08 kernel code, 32-bit */
    .quad 0x00af9a000000ffff    /* 0x10 kernel code, 64-bit */
    .quad 0x00cf92000000ffff    /* 0x18 kernel data */
    .quad 0x00cffa000000ffff    /* 0x20 user code, 32-bit, DPL 3 */
    .quad 0x00cff2000000ffff    /* 0x28 user data, DPL 3 */
    .quad 0x00affa000000ffff    /* 0x30 user code, 64-bit, DPL 3 */
    .quad 0
    .quad 0, 0                  /* 0x40 TSS (filled in at boot) */
gdt_end:
    .p2align 4
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt
    .p2align 4
idt_ptr:
    .word 256 * 16 - 1
    .quad idt
    .p2align 4
idt:
    .fill 256 * 16, 1, 0
tss:
    .fill 104, 1, 0
    .globl pvh_start_info
pvh_start_info:
    .quad 0

    /* Interrupt state shared with ring 3 (zeroed with .bss before interrupts are enabled). */
    .section .bss
    .p2align 12
    .globl irq_counts, irq_first_tsc, irq_last_tsc, irq_manual, irq_held, irq_total
    .globl uart_ring, uart_head, uart_tail, uart_rx_bytes, uart_rx_irqs, uart_overruns, uart_dropped
irq_first_tsc: .skip 256 * 8
irq_last_tsc:  .skip 256 * 8
irq_counts:    .skip 256 * 4
irq_manual:    .skip 256
irq_total:     .skip 8
irq_held:      .skip 4
uart_head:     .skip 4
uart_tail:     .skip 4
uart_rx_bytes: .skip 4
uart_rx_irqs:  .skip 4
uart_overruns: .skip 4
uart_dropped:  .skip 4
    .p2align 6
uart_ring:     .skip 4096

    .section .stack, "aw", @nobits
    .p2align 12
    .globl guard_page
guard_page:
    .skip 4096
    .globl user_stack_bottom
user_stack_bottom:
    .skip 1024 * 1024
    .globl user_stack_top
user_stack_top:
    .skip 16384
kstack_top:
