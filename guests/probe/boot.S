/* Probe kernel entry: boot headers, long-mode switch, interrupt stubs, AP trampoline.
 *
 * Both boot protocols enter entry32 in 32-bit flat protected mode with paging off:
 *   PVH (Xen ELF note 18):  ebx = hvm_start_info (magic 0x336ec578)
 *   multiboot v1:           eax = 0x2badb002, ebx = multiboot info
 * QEMU prefers the multiboot header when both exist and refuses ELF64 for multiboot unless
 * the "a.out kludge" (flag 16) gives load addresses, so the header carries them: the image
 * is one contiguous PT_LOAD segment, loadable as raw bytes. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00010000
#define TRAMP_BASE 0x8000
#define STACK_SIZE 16384  /* keep in step with probe.h */
#define MAX_CPUS 2

    .section .multiboot, "a"
    .align 4
#ifndef PROBE_NO_MULTIBOOT
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header         /* header_addr */
    .long _load_start       /* load_addr */
    .long _load_end         /* load_end_addr: end of initialised data */
    .long _bss_end          /* bss_end_addr */
    .long entry32           /* entry_addr */
#endif

    .section .note.Xen, "a", @note
    .align 4
    .long 4                 /* namesz: "Xen\0" */
    .long 4                 /* descsz: a 32-bit physical address */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .align 4
    .long entry32
    .align 4

/* ------------------------------------------------------------------ 32-bit entry */
    .section .text.entry, "ax"
    .code32
    .globl entry32
entry32:
    cli
    cld
    movl %eax, boot_eax
    movl %ebx, boot_ebx
    movl $(cpu_stacks + STACK_SIZE), %esp
    call enter_long_mode32
    ljmp $0x08, $entry64

/* shared by the BSP and the APs: page tables, PAE, EFER.LME, paging, our GDT */
enter_long_mode32:
    lgdt gdt_ptr
    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx          /* IA32_EFER */
    rdmsr
    orl $0x100, %eax                /* LME */
    wrmsr
    movl %cr0, %eax
    andl $0x9FFFFFFF, %eax          /* caches on (an AP starts with CD/NW set) */
    orl $0x80000001, %eax           /* PG | PE */
    movl %eax, %cr0
    ret

    .code64
entry64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq $(cpu_stacks + STACK_SIZE), %rsp
    call kmain
1:  cli
    hlt
    jmp 1b

    .globl ap_entry64
ap_entry64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq ap_stack_top(%rip), %rsp
    call ap_main
1:  cli
    hlt
    jmp 1b

/* ------------------------------------------------------------------ AP trampoline
 * Copied to TRAMP_BASE (4 KiB aligned, < 1 MiB: the SIPI vector is its page number). Real
 * mode -> 32-bit (our GDT, code32 selector 0x18) -> the shared long-mode switch above. */
    .section .rodata.tramp, "a"
    .code16
    .globl tramp_start, tramp_end
tramp_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (tramp_gdt_ptr - tramp_start + TRAMP_BASE)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(tramp32 - tramp_start + TRAMP_BASE)
    .code32
tramp32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $(TRAMP_BASE + 0xff0), %esp  /* scratch stack inside the trampoline page */
    movl $enter_long_mode32, %eax
    call *%eax
    ljmp $0x08, $ap_entry64
    .align 8
tramp_gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
tramp_end:

/* ------------------------------------------------------------------ GDT */
    .section .rodata
    .align 16
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
    .quad 0x00CF9A000000FFFF        /* 0x18: 32-bit code (AP trampoline) */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

/* ------------------------------------------------------------------ page tables
 * Static (no ring-0 loop to build them): identity map of 0-4 GiB in 2 MiB pages; the top
 * GiB (IOAPIC, LAPIC, virtio-mmio, PCI holes) uncached. */
    .section .data.pagetables, "aw"
    .align 4096
    .globl pml4
pml4:
    .quad pdpt + 0x3
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0003
    .quad pd + 0x1003
    .quad pd + 0x2003
    .quad pd + 0x3003
    .fill 508, 8, 0
pd:
    .set i, 0
    .rept 1536
    .quad (i << 21) | 0x83          /* P | RW | PS */
    .set i, i + 1
    .endr
    .rept 512
    .quad (i << 21) | 0x9B          /* P | RW | PWT | PCD | PS */
    .set i, i + 1
    .endr

/* ------------------------------------------------------------------ interrupt stubs
 * 256 stubs of 16 bytes each (isr_stubs + 16 * vector). Vectors without a CPU error code
 * push a 0 so the frame is uniform. */
    .section .text
    .code64
    .align 16
    .globl isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .align 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

/* Only caller-saved registers: the C handler preserves the rest (fewer ring-0 instructions). */
isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq %rsp, %rdi
    call isr_dispatch
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq

/* ------------------------------------------------------------------ guarded accesses
 * Leaf functions whose single access may fault (#PF/#GP): the exception handler, when a
 * guarded access is armed, records the fault and resumes at guarded_fault_ret, which returns
 * to the caller (nothing was pushed). rdi = address, rsi = value. */
    .globl mmio_rd8, mmio_rd16, mmio_rd32, mmio_rd64, mmio_wr8, mmio_wr16, mmio_wr32, mmio_wr64
    .globl guarded_fault_ret
mmio_rd8:
    movzbl (%rdi), %eax
    ret
mmio_rd16:
    movzwl (%rdi), %eax
    ret
mmio_rd32:
    movl (%rdi), %eax
    ret
mmio_rd64:
    movq (%rdi), %rax
    ret
mmio_wr8:
    movb %sil, (%rdi)
    ret
mmio_wr16:
    movw %si, (%rdi)
    ret
mmio_wr32:
    movl %esi, (%rdi)
    ret
mmio_wr64:
    movq %rsi, (%rdi)
    ret
guarded_fault_ret:
    xorl %eax, %eax
    ret

/* ------------------------------------------------------------------ stacks */
    .section .bss
    .align 16
    .globl boot_eax, boot_ebx, ap_stack_top
boot_eax: .long 0
boot_ebx: .long 0
ap_stack_top: .quad 0
    .align 64  /* this_cpu() divides the offset: no stack alignment needed */
    .globl cpu_stacks
cpu_stacks:
    .skip STACK_SIZE * MAX_CPUS
    .section .note.GNU-stack, "", @progbits
