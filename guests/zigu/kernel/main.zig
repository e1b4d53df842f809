//! zigu kernel: ring 0. Brings up serial, IDT, PIC + PIT, TSC clock and the syscall MSRs,
//! then drops to ring 3 where the workload (user.zig: the ABI channel runner) runs.
//! Ring-0 code is built for a CPU model without SSE/x87 (see build.zig): under PVM the
//! ring-0 emulator cannot run SSE.
const std = @import("std");
const arch = @import("arch.zig");
const abi = @import("abi.zig");
const user = @import("user.zig");
const uk = abi.uk;

pub const panic = std.debug.FullPanic(kpanic);

fn kpanic(msg: []const u8, _: ?usize) noreturn {
    kprint("zigu: PANIC ");
    kprint(msg);
    kprint("\n");
    exitVm(0x7f);
}

// ------------------------------------------------------------------------------------
// serial console: 16550 at 0x3f8, IRQ 4
// ------------------------------------------------------------------------------------
const COM1: u16 = 0x3f8;
var rx_buf: [4096]u8 = undefined;
var rx_head: usize = 0;
var rx_len: usize = 0;
var rx_dropped: u64 = 0;
var tx_room: u32 = 0;

fn serialInit() void {
    arch.outb(COM1 + 1, 0x00); // IER off
    arch.outb(COM1 + 3, 0x80); // DLAB
    arch.outb(COM1 + 0, 0x01); // 115200
    arch.outb(COM1 + 1, 0x00);
    arch.outb(COM1 + 3, 0x03); // 8N1
    arch.outb(COM1 + 2, 0x07); // FIFO on, clear
    arch.outb(COM1 + 4, 0x0B); // DTR RTS OUT2 (OUT2 gates the IRQ line)
    arch.outb(COM1 + 1, 0x01); // IER: RX data available
}

fn serialPut(c: u8) void {
    // THRE means the (16-byte) transmit FIFO is empty: then 16 bytes fit without re-checking.
    if (tx_room == 0) {
        while (arch.inb(COM1 + 5) & 0x20 == 0) {}
        tx_room = 16;
    }
    arch.outb(COM1, c);
    tx_room -= 1;
}

pub fn kprint(s: []const u8) void {
    for (s) |c| serialPut(c);
}

pub fn kprintDec(v: u64) void {
    var buf: [20]u8 = undefined;
    var i: usize = buf.len;
    var x = v;
    while (true) {
        i -= 1;
        buf[i] = '0' + @as(u8, @intCast(x % 10));
        x /= 10;
        if (x == 0) break;
    }
    kprint(buf[i..]);
}

pub fn kprintHex(v: u64) void {
    const digits = "0123456789abcdef";
    var buf: [18]u8 = undefined;
    buf[0] = '0';
    buf[1] = 'x';
    var k: usize = 0;
    while (k < 16) : (k += 1) buf[2 + k] = digits[@intCast((v >> @intCast(60 - 4 * k)) & 0xf)];
    kprint(&buf);
}

/// Drain the UART receive FIFO into rx_buf (called from the IRQ 4 and timer handlers).
fn serialDrain() void {
    while (arch.inb(COM1 + 5) & 0x01 != 0) {
        const c = arch.inb(COM1);
        if (rx_len < rx_buf.len) {
            rx_buf[(rx_head + rx_len) % rx_buf.len] = c;
            rx_len += 1;
        } else rx_dropped += 1;
    }
}

// ------------------------------------------------------------------------------------
// exit: isa-debug-exit at 0xf4 (QEMU status = (value << 1) | 1)
// ------------------------------------------------------------------------------------
pub fn exitVm(status: u8) noreturn {
    arch.outb(0xf4, status);
    kprint("zigu: exit port had no effect; halting\n");
    while (true) {
        arch.cli();
        asm volatile ("hlt");
    }
}

// ------------------------------------------------------------------------------------
// PIC (8259, remapped to 32..47) and PIT channel 0
// ------------------------------------------------------------------------------------
pub const IRQ_BASE: u8 = 32;
pub var pit_hz: u32 = 100;
pub var ticks: u64 = 0;
pub var irq_counts: [256]u32 = @splat(0);
var pic_mask: u16 = 0xffff;

/// Local APIC in virtual-wire mode: software-enabled, LINT0 = ExtINT (8259 output),
/// LINT1 = NMI. Without this (no BIOS ran before a PVH entry) KVM's LAPIC keeps LINT0
/// masked and no PIC interrupt is ever delivered.
const LAPIC: u64 = 0xFEE00000;
fn lapicWrite(reg: u64, v: u32) void {
    @as(*volatile u32, @ptrFromInt(LAPIC + reg)).* = v;
}
pub fn lapicRead(reg: u64) u32 {
    return @as(*volatile u32, @ptrFromInt(LAPIC + reg)).*;
}
fn lapicVirtualWire() void {
    lapicWrite(0xF0, 0x1FF); // SVR: enable, spurious vector 0xFF
    lapicWrite(0x350, 0x700); // LVT LINT0: ExtINT
    lapicWrite(0x360, 0x400); // LVT LINT1: NMI
}

fn picInit() void {
    lapicVirtualWire();
    arch.outb(0x20, 0x11);
    arch.outb(0xA0, 0x11);
    arch.outb(0x21, IRQ_BASE);
    arch.outb(0xA1, IRQ_BASE + 8);
    arch.outb(0x21, 4);
    arch.outb(0xA1, 2);
    arch.outb(0x21, 0x01);
    arch.outb(0xA1, 0x01);
    picSetMask(0xffff & ~@as(u16, (1 << 0) | (1 << 2) | (1 << 4)));
}

pub fn picSetMask(m: u16) void {
    pic_mask = m;
    arch.outb(0x21, @truncate(m));
    arch.outb(0xA1, @truncate(m >> 8));
}

pub fn picGetMask() u16 {
    return pic_mask;
}

pub fn pitSetHz(hz: u32) void {
    const h = if (hz < 19) 19 else if (hz > 10000) 10000 else hz;
    const div: u32 = 1193182 / h;
    pit_hz = h;
    arch.outb(0x43, 0x34); // channel 0, lo/hi, mode 2 (rate generator)
    arch.outb(0x40, @truncate(div));
    arch.outb(0x40, @truncate(div >> 8));
}

// ------------------------------------------------------------------------------------
// clock: TSC calibrated against the PIT
// ------------------------------------------------------------------------------------
pub var tsc_hz: u64 = 1_000_000_000;
var tsc0: u64 = 0;
var ns_mult: u64 = 1 << 32; // ns = delta * ns_mult >> 32

fn calibrateTsc() void {
    const n: u64 = 5;
    arch.sti();
    var t = ticks;
    while (ticks == t) asm volatile ("hlt");
    t = ticks;
    const a = arch.rdtsc();
    while (ticks < t + n) asm volatile ("hlt");
    const b = arch.rdtsc();
    arch.cli();
    tsc_hz = (b - a) * pit_hz / n;
    if (tsc_hz < 1_000_000) tsc_hz = 1_000_000;
    ns_mult = @intCast((@as(u128, 1_000_000_000) << 32) / tsc_hz);
    tsc0 = a;
}

pub fn nowNs() u64 {
    const d = arch.rdtsc() -% tsc0;
    return @truncate((@as(u128, d) * ns_mult) >> 32);
}

// ------------------------------------------------------------------------------------
// interrupts
// ------------------------------------------------------------------------------------
export fn isr_dispatch(f: *arch.Frame) callconv(.c) void {
    const v = f.vector;
    irq_counts[@intCast(v & 0xff)] +%= 1;
    if (v == 6 and f.cs & 3 == 3 and f.rip < (4 << 30) - 2 and
        @as(*const [2]u8, @ptrFromInt(f.rip)).*[0] == 0x0f and @as(*const [2]u8, @ptrFromInt(f.rip)).*[1] == 0x0b)
    {
        // ud2 from ring 3: the system call gate (see user.zig `gate`)
        f.rax = @bitCast(syscall_dispatch(f.rax, f.rdi, f.rsi, f.rdx, f.r10, f.r8));
        f.rip += 2;
        return;
    }
    if (v == 0x80 and f.cs & 3 == 3) {
        f.rax = @bitCast(syscall_dispatch(f.rax, f.rdi, f.rsi, f.rdx, f.r10, f.r8));
        return;
    }
    if (v < 32) {
        kprint("zigu: FAULT vector=");
        kprintDec(v);
        kprint(" err=");
        kprintHex(f.error_code);
        kprint(" rip=");
        kprintHex(f.rip);
        kprint(" cs=");
        kprintHex(f.cs);
        if (v == 14) {
            kprint(" cr2=");
            kprintHex(asm volatile ("mov %%cr2, %[r]"
                : [r] "=r" (-> u64),
            ));
        }
        kprint(if (f.cs & 3 == 3) " (ring 3)\n" else " (ring 0)\n");
        exitVm(0x7e);
    }
    if (v >= IRQ_BASE and v < IRQ_BASE + 16) {
        const irq = v - IRQ_BASE;
        if (irq == 7 or irq == 15) {
            // spurious check: ISR bit clear -> no EOI
            const port: u16 = if (irq == 7) 0x20 else 0xA0;
            arch.outb(port, 0x0B);
            if (arch.inb(port) & 0x80 == 0) {
                if (irq == 15) arch.outb(0x20, 0x20);
                return;
            }
        }
        switch (irq) {
            0 => {
                ticks += 1;
                serialDrain(); // also covers a UART whose IRQ line is not wired
            },
            4 => serialDrain(),
            else => {},
        }
        if (irq >= 8) arch.outb(0xA0, 0x20);
        arch.outb(0x20, 0x20);
    }
}

// ------------------------------------------------------------------------------------
// the ABI context of the current workload + platform hooks
// ------------------------------------------------------------------------------------
extern const __user_start: u8;
extern const __user_end: u8;
extern const __kernel_start: u8;

var ctx: abi.Context = .{};

fn platWait(deadline: u64) void {
    if (nowNs() < deadline) arch.waitForInterrupt();
}

fn platLog(bytes: []const u8) void {
    kprint("zigu: log[");
    kprint(abi.workload_names[ctx.workload]);
    kprint("] ");
    for (bytes) |c| serialPut(if ((c < 0x20 and c != '\t') or c == 0x7f) '?' else c);
    serialPut('\n');
}

fn platValid(addr: u64, len: u64) bool {
    const lo: u64 = @intFromPtr(&__user_start);
    const hi: u64 = @intFromPtr(&__user_end);
    return addr >= lo and addr <= hi and len <= hi - addr;
}

const platform = abi.Platform{
    .now_ns = nowNs,
    .wait_until = platWait,
    .log_write = platLog,
    .valid_user = platValid,
};

pub fn userRange() [2]u64 {
    return .{ @intFromPtr(&__user_start), @intFromPtr(&__user_end) };
}

// ------------------------------------------------------------------------------------
// syscalls
// ------------------------------------------------------------------------------------
var sys_count: u64 = 0;

export fn syscall_dispatch(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) callconv(.c) i64 {
    sys_count +%= 1;
    if (nr < uk.SYS_SV_CONSOLE_WRITE) return ctx.dispatch(&platform, nr, a1, a2, a3, a4, a5);
    return supervisor(nr, a1, a2, a3, a4) catch |e| switch (e) {
        error.BadPointer => uk.ERR_BAD_POINTER,
        error.Invalid => uk.ERR_INVALID,
    };
}

fn userBytes(ptr: u64, len: u64) error{BadPointer}![]u8 {
    if (ptr == 0 or !platValid(ptr, len)) return error.BadPointer;
    return @as([*]u8, @ptrFromInt(ptr))[0..len];
}

fn supervisor(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64) error{ BadPointer, Invalid }!i64 {
    switch (nr) {
        uk.SYS_SV_CONSOLE_WRITE => {
            const b = try userBytes(a1, a2);
            kprint(b);
            return @intCast(b.len);
        },
        uk.SYS_SV_CONSOLE_READ => {
            const b = try userBytes(a1, a2);
            if (b.len == 0) return 0;
            while (rx_len == 0) {
                arch.waitForInterrupt();
            }
            var n: usize = 0;
            while (n < b.len and rx_len > 0) : (n += 1) {
                b[n] = rx_buf[rx_head];
                rx_head = (rx_head + 1) % rx_buf.len;
                rx_len -= 1;
            }
            return @intCast(n);
        },
        uk.SYS_SV_RESET => return ctx.reset(a1),
        uk.SYS_SV_EXIT => exitVm(@truncate(a1)),
        uk.SYS_SV_STATS => return switch (a1) {
            0 => @intCast(ctx.calls),
            1 => @intCast(ctx.denied),
            2 => @intCast(ticks),
            3 => @intCast(tsc_hz),
            4 => @intCast(nowNs()),
            5 => @intCast(sys_count),
            6 => @intCast(rx_dropped),
            7 => @intCast(ctx.workload),
            else => error.Invalid,
        },
        uk.SYS_SV_AGENT => return agentOp(a1, a2, a3, a4),
        else => return uk.ERR_NOSYS,
    }
}

// ------------------------------------------------------------------------------------
// agent primitives (privileged operations the ring-3 agent asks for)
// ------------------------------------------------------------------------------------
pub const AG_IN = 1; // (port, width) -> value
pub const AG_OUT = 2; // (port, width, value)
pub const AG_MMIO_READ = 3; // (addr, width) -> value
pub const AG_MMIO_WRITE = 4; // (addr, width, value)
pub const AG_IRQ_COUNT = 5; // (vector) -> count
pub const AG_TICKS = 6; // () -> ticks
pub const AG_TSC = 7; // () -> tsc
pub const AG_IDLE = 8; // (ns) -> slept ns, in hlt
pub const AG_PIT_HZ = 9; // (hz or 0) -> hz
pub const AG_PIC_MASK = 10; // (mask, set?) -> old mask
pub const AG_TIMER_MEASURE = 11; // (periods) -> ns for that many PIT periods

fn agentOp(op: u64, a: u64, b: u64, c: u64) error{ BadPointer, Invalid }!i64 {
    switch (op) {
        AG_IN => {
            const port: u16 = @truncate(a);
            if (a > 0xffff) return error.Invalid;
            return switch (b) {
                1 => arch.inb(port),
                2 => arch.inw(port),
                4 => arch.inl(port),
                else => error.Invalid,
            };
        },
        AG_OUT => {
            const port: u16 = @truncate(a);
            if (a > 0xffff) return error.Invalid;
            switch (b) {
                1 => arch.outb(port, @truncate(c)),
                2 => arch.outw(port, @truncate(c)),
                4 => arch.outl(port, @truncate(c)),
                else => return error.Invalid,
            }
            return 0;
        },
        AG_MMIO_READ => {
            if (a >= (4 << 30) or a % b != 0) return error.Invalid;
            return switch (b) {
                1 => @as(*volatile u8, @ptrFromInt(a)).*,
                2 => @as(*volatile u16, @ptrFromInt(a)).*,
                4 => @as(*volatile u32, @ptrFromInt(a)).*,
                8 => @bitCast(@as(*volatile u64, @ptrFromInt(a)).*),
                else => error.Invalid,
            };
        },
        AG_MMIO_WRITE => {
            if (a >= (4 << 30) or b == 0 or a % b != 0) return error.Invalid;
            switch (b) {
                1 => @as(*volatile u8, @ptrFromInt(a)).* = @truncate(c),
                2 => @as(*volatile u16, @ptrFromInt(a)).* = @truncate(c),
                4 => @as(*volatile u32, @ptrFromInt(a)).* = @truncate(c),
                8 => @as(*volatile u64, @ptrFromInt(a)).* = c,
                else => return error.Invalid,
            }
            return 0;
        },
        AG_IRQ_COUNT => return if (a < 256) irq_counts[@intCast(a)] else error.Invalid,
        AG_TICKS => return @intCast(ticks),
        AG_TSC => return @intCast(arch.rdtsc() & 0x7fffffffffffffff),
        AG_IDLE => {
            const t0 = nowNs();
            const deadline = t0 + @min(a, 10_000_000_000);
            while (nowNs() < deadline) arch.waitForInterrupt();
            return @intCast(nowNs() - t0);
        },
        AG_PIT_HZ => {
            if (a != 0) pitSetHz(@intCast(@min(a, 10000)));
            return pit_hz;
        },
        AG_PIC_MASK => {
            const old = picGetMask();
            if (b != 0) picSetMask(@truncate(a));
            return old;
        },
        AG_TIMER_MEASURE => {
            const n = @min(@max(a, 1), 10000);
            var t = ticks;
            while (ticks == t) arch.waitForInterrupt();
            t = ticks;
            const s = nowNs();
            while (ticks < t + n) arch.waitForInterrupt();
            return @intCast(nowNs() - s);
        },
        else => return error.Invalid,
    }
}

// ------------------------------------------------------------------------------------
// entry
// ------------------------------------------------------------------------------------
export fn kmain(start_info: u32) callconv(.c) noreturn {
    serialInit();
    kprint("\nzigu: boot pvh start_info=");
    kprintHex(start_info);
    kprint("\n");
    arch.initCpuTables();
    kprint("zigu: idt+tss\n");
    picInit();
    pitSetHz(100);
    kprint("zigu: pic+pit\n");
    calibrateTsc();
    kprint("zigu: tsc_khz=");
    kprintDec(tsc_hz / 1000);
    kprint(" pit_hz=");
    kprintDec(pit_hz);
    kprint("\n");
    arch.initSyscall();
    _ = ctx.reset(uk.WL_DEFAULT);
    const ur = userRange();
    kprint("zigu: entering ring 3 user=");
    kprintHex(ur[0]);
    kprint("..");
    kprintHex(ur[1]);
    kprint("\n");
    arch.enter_user(@intFromPtr(&user.user_main), user.stackTop());
}
