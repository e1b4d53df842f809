/* PVH entry for the virtio test guest: 32-bit protected mode, paging off, EBX = start info.
   The same ELF boots on god and on QEMU (-kernel, PVH note). */
.section .note.Xen, "a"
.align 4
.long 4, 4, 18              /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
.asciz "Xen"
.align 4
.long _start32

.code32
.section .text.start, "ax"
.globl _start32
_start32:
    cli
    cld
    mov $stack_top, %esp
    push %ebx
    call kmain
    mov $0xf4, %dx          /* exit port: status (al << 1) | 1 */
    out %al, %dx
1:  hlt
    jmp 1b

.section .bss
.align 16
.space 16384
stack_top:
