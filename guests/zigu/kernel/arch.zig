//! x86_64 low level: PVH entry (32-bit) -> long mode, GDT/TSS, IDT stubs, syscall entry,
//! ring-3 entry, port I/O. Everything here runs in ring 0 and is built without SSE.
const std = @import("std");

// ------------------------------------------------------------------------------------
// PVH entry. QEMU/god enter at the address of the Xen note (type 18, PHYS32_ENTRY) in
// 32-bit protected mode, paging off, ebx = start_info. We load identity page tables for
// the first 4 GiB (2 MiB pages, user-accessible: see docs/zigu-abi.md "memory"), enable
// long mode, and call kmain on the kernel stack with bss zeroed.
// ------------------------------------------------------------------------------------
comptime {
    asm (
        \\ .section .note.Xen, "a", @note
        \\ .balign 4
        \\ .long 4
        \\ .long 4
        \\ .long 18
        \\ .asciz "Xen"
        \\ .balign 4
        \\ .long _start32
        \\ .balign 4
        \\
        \\ .section .boot32, "ax"
        \\ .code32
        \\ .global _start32
        \\_start32:
        \\ cli
        \\ cld
        \\ movl %ebx, %esi
        \\ movl $pml4, %eax
        \\ movl %eax, %cr3
        \\ movl %cr4, %eax
        \\ orl $0x20, %eax
        \\ movl %eax, %cr4
        \\ movl $0xC0000080, %ecx
        \\ rdmsr
        \\ orl $0x100, %eax
        \\ wrmsr
        \\ movl %cr0, %eax
        \\ orl $0x80000001, %eax
        \\ andl $0x9FFFFFFF, %eax
        \\ movl %eax, %cr0
        \\ lgdt gdt_ptr
        \\ ljmp $0x08, $long_entry
        \\ .code64
        \\long_entry:
        \\ movw $0x10, %ax
        \\ movw %ax, %ds
        \\ movw %ax, %es
        \\ movw %ax, %ss
        \\ xorw %ax, %ax
        \\ movw %ax, %fs
        \\ movw %ax, %gs
        \\ movq $kstack_top, %rsp
        \\ movq $__bss_start, %rdi
        \\ movq $__bss_end, %rcx
        \\ subq %rdi, %rcx
        \\ shrq $3, %rcx
        \\ xorl %eax, %eax
        \\ rep stosq
        \\ movl %esi, %edi
        \\ call kmain
        \\1: cli
        \\ hlt
        \\ jmp 1b
        \\
        \\ .section .data.boot, "aw"
        \\ .balign 16
        \\ .global gdt
        \\gdt:
        \\ .quad 0
        \\ .quad 0x00AF9A000000FFFF
        \\ .quad 0x00CF92000000FFFF
        \\ .quad 0x00CFF2000000FFFF
        \\ .quad 0x00AFFA000000FFFF
        \\ .quad 0
        \\ .quad 0
        \\gdt_end:
        \\ .balign 16
        \\ .global gdt_ptr
        \\gdt_ptr:
        \\ .word gdt_end - gdt - 1
        \\ .quad gdt
        \\
        \\ .section .data.pt, "aw"
        \\ .balign 4096
        \\pml4:
        \\ .quad pdpt + 0x7
        \\ .fill 511, 8, 0
        \\pdpt:
        \\ .quad pd + 0x7
        \\ .quad pd + 0x1000 + 0x7
        \\ .quad pd + 0x2000 + 0x7
        \\ .quad pd + 0x3000 + 0x7
        \\ .fill 508, 8, 0
        \\pd:
        \\ .set pdi, 0
        \\ .rept 1536
        \\ .quad (pdi << 21) | 0x87
        \\ .set pdi, pdi + 1
        \\ .endr
        \\ .rept 512
        \\ .quad (pdi << 21) | 0x9F
        \\ .set pdi, pdi + 1
        \\ .endr
        \\
        \\ .section .kstack, "aw", @nobits
        \\ .balign 16
        \\kstack_bottom:
        \\ .skip 32768
        \\ .global kstack_top
        \\kstack_top:
        \\ .text
    );
}

// ------------------------------------------------------------------------------------
// Interrupt stubs: one per vector; push a dummy error code where the CPU does not,
// push the vector, save GPRs, call isr_dispatch(frame).
// ------------------------------------------------------------------------------------
fn hasErrorCode(v: usize) bool {
    return switch (v) {
        8, 10, 11, 12, 13, 14, 17, 21, 29, 30 => true,
        else => false,
    };
}

comptime {
    @setEvalBranchQuota(50_000_000);
    var s: []const u8 = ".text\n";
    for (0..256) |v| {
        s = s ++ std.fmt.comptimePrint("isr_stub_{d}:\n", .{v});
        if (!hasErrorCode(v)) s = s ++ " pushq $0\n";
        s = s ++ std.fmt.comptimePrint(" pushq ${d}\n jmp isr_common\n", .{v});
    }
    s = s ++
        \\isr_common:
        \\ pushq %rax
        \\ pushq %rcx
        \\ pushq %rdx
        \\ pushq %rbx
        \\ pushq %rbp
        \\ pushq %rsi
        \\ pushq %rdi
        \\ pushq %r8
        \\ pushq %r9
        \\ pushq %r10
        \\ pushq %r11
        \\ pushq %r12
        \\ pushq %r13
        \\ pushq %r14
        \\ pushq %r15
        \\ movq %rsp, %rdi
        \\ call isr_dispatch
        \\ popq %r15
        \\ popq %r14
        \\ popq %r13
        \\ popq %r12
        \\ popq %r11
        \\ popq %r10
        \\ popq %r9
        \\ popq %r8
        \\ popq %rdi
        \\ popq %rsi
        \\ popq %rbp
        \\ popq %rbx
        \\ popq %rdx
        \\ popq %rcx
        \\ popq %rax
        \\ addq $16, %rsp
        \\ iretq
        \\
        \\ .section .rodata.isr, "a"
        \\ .balign 8
        \\ .global isr_table
        \\isr_table:
        \\
    ;
    for (0..256) |v| s = s ++ std.fmt.comptimePrint(" .quad isr_stub_{d}\n", .{v});
    s = s ++ " .text\n";
    asm (s);
}

pub const Frame = extern struct {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rbp: u64,
    rbx: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
};

// ------------------------------------------------------------------------------------
// syscall entry: single CPU, interrupts masked by FMASK. Switch to the kernel stack,
// preserve everything except rax (result), rcx and r11 (clobbered by syscall itself),
// call syscall_dispatch(nr, a1, a2, a3, a4, a5) and sysretq.
// ------------------------------------------------------------------------------------
comptime {
    asm (
        \\ .text
        \\ .global syscall_entry
        \\syscall_entry:
        \\ movq %rsp, user_rsp_save(%rip)
        \\ movq $kstack_top, %rsp
        \\ pushq user_rsp_save(%rip)
        \\ pushq %rcx
        \\ pushq %r11
        \\ pushq %rdi
        \\ pushq %rsi
        \\ pushq %rdx
        \\ pushq %r10
        \\ pushq %r8
        \\ pushq %r9
        \\ pushq $0
        \\ movq %r8, %r9
        \\ movq %r10, %r8
        \\ movq %rdx, %rcx
        \\ movq %rsi, %rdx
        \\ movq %rdi, %rsi
        \\ movq %rax, %rdi
        \\ call syscall_dispatch
        \\ addq $8, %rsp
        \\ popq %r9
        \\ popq %r8
        \\ popq %r10
        \\ popq %rdx
        \\ popq %rsi
        \\ popq %rdi
        \\ popq %r11
        \\ popq %rcx
        \\ popq %rsp
        \\ sysretq
        \\
        \\ .global enter_user
        \\enter_user:
        \\ pushq $0x1b
        \\ pushq %rsi
        \\ pushq $0x202
        \\ pushq $0x23
        \\ pushq %rdi
        \\ iretq
        \\
        \\ .bss
        \\ .balign 8
        \\user_rsp_save:
        \\ .quad 0
        \\ .text
    );
}

pub extern fn enter_user(entry: u64, stack: u64) callconv(.c) noreturn;
extern const isr_table: [256]u64;
extern var gdt: [7]u64;
extern const syscall_entry: u8;
extern const kstack_top: u8;

var idt: [256][2]u64 align(16) = undefined;
var tss: [26]u32 align(16) = undefined;

pub fn kstackTop() u64 {
    return @intFromPtr(&kstack_top);
}

/// TSS (rsp0 for interrupts taken from ring 3) + IDT.
pub fn initCpuTables() void {
    for (&tss) |*w| w.* = 0;
    const top = kstackTop();
    tss[1] = @truncate(top);
    tss[2] = @truncate(top >> 32);
    tss[25] = 104 << 16; // iomap base beyond limit: no I/O bitmap
    const base: u64 = @intFromPtr(&tss);
    const limit: u64 = 103;
    gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (@as(u64, 0x89) << 40) | (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[6] = base >> 32;
    asm volatile ("ltr %[sel]"
        :
        : [sel] "r" (@as(u16, 0x28)),
    );

    for (0..256) |v| {
        const h = isr_table[v];
        const dpl: u64 = if (v == 0x80) 3 else 0;
        const typ: u64 = 0x8E | (dpl << 5); // present, 64-bit interrupt gate
        idt[v][0] = (h & 0xffff) | (@as(u64, 0x08) << 16) | (typ << 40) | (((h >> 16) & 0xffff) << 48);
        idt[v][1] = h >> 32;
    }
    const Ptr = extern struct { limit: u16 align(1), base: u64 align(1) };
    const p = Ptr{ .limit = @sizeOf(@TypeOf(idt)) - 1, .base = @intFromPtr(&idt) };
    asm volatile ("lidt (%[p])"
        :
        : [p] "r" (&p),
        : .{ .memory = true });
}

pub fn initSyscall() void {
    wrmsr(0xC0000080, rdmsr(0xC0000080) | 1); // EFER.SCE
    wrmsr(0xC0000081, (@as(u64, 0x10) << 48) | (@as(u64, 0x08) << 32)); // STAR
    wrmsr(0xC0000082, @intFromPtr(&syscall_entry)); // LSTAR
    wrmsr(0xC0000084, 0x47700); // FMASK: TF IF DF IOPL NT AC
}

pub fn rdmsr(msr: u32) u64 {
    var lo: u32 = undefined;
    var hi: u32 = undefined;
    asm volatile ("rdmsr"
        : [lo] "={eax}" (lo),
          [hi] "={edx}" (hi),
        : [msr] "{ecx}" (msr),
    );
    return (@as(u64, hi) << 32) | lo;
}

pub fn wrmsr(msr: u32, v: u64) void {
    asm volatile ("wrmsr"
        :
        : [msr] "{ecx}" (msr),
          [lo] "{eax}" (@as(u32, @truncate(v))),
          [hi] "{edx}" (@as(u32, @truncate(v >> 32))),
    );
}

pub inline fn outb(port: u16, v: u8) void {
    asm volatile ("outb %[v], %[p]"
        :
        : [v] "{al}" (v),
          [p] "{dx}" (port),
    );
}
pub inline fn outw(port: u16, v: u16) void {
    asm volatile ("outw %[v], %[p]"
        :
        : [v] "{ax}" (v),
          [p] "{dx}" (port),
    );
}
pub inline fn outl(port: u16, v: u32) void {
    asm volatile ("outl %[v], %[p]"
        :
        : [v] "{eax}" (v),
          [p] "{dx}" (port),
    );
}
pub inline fn inb(port: u16) u8 {
    return asm volatile ("inb %[p], %[v]"
        : [v] "={al}" (-> u8),
        : [p] "{dx}" (port),
    );
}
pub inline fn inw(port: u16) u16 {
    return asm volatile ("inw %[p], %[v]"
        : [v] "={ax}" (-> u16),
        : [p] "{dx}" (port),
    );
}
pub inline fn inl(port: u16) u32 {
    return asm volatile ("inl %[p], %[v]"
        : [v] "={eax}" (-> u32),
        : [p] "{dx}" (port),
    );
}

pub inline fn rdtsc() u64 {
    var lo: u32 = undefined;
    var hi: u32 = undefined;
    asm volatile ("rdtsc"
        : [lo] "={eax}" (lo),
          [hi] "={edx}" (hi),
    );
    return (@as(u64, hi) << 32) | lo;
}

pub inline fn sti() void {
    asm volatile ("sti");
}
pub inline fn cli() void {
    asm volatile ("cli");
}
/// Enable interrupts and halt atomically (sti's one-instruction shadow), then mask again.
pub inline fn waitForInterrupt() void {
    asm volatile ("sti; hlt; cli" ::: .{ .memory = true });
}
