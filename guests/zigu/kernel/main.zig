//! zigu kernel: ring 0. Brings up serial, IDT, the TSC clock (calibrated on the PIT's
//! counter), LAPIC + IOAPIC interrupt routing (the 8259 is remapped and masked), the syscall
//! MSRs, then drops to ring 3 where the workload (user.zig: the ABI channel runner and the
//! agent-protocol responder, agent.zig) runs. Timed waits are tickless: the LAPIC timer is
//! armed one-shot for each deadline.
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
var rx_bytes: u64 = 0;
var rx_irqs: u64 = 0;
var rx_overruns: u64 = 0;
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

/// Drain the UART receive FIFO into rx_buf (called from the UART interrupt handler).
fn serialDrain() void {
    while (true) {
        const lsr = arch.inb(COM1 + 5);
        if (lsr & 0x02 != 0) rx_overruns += 1;
        if (lsr & 0x01 == 0) break;
        const c = arch.inb(COM1);
        rx_bytes += 1;
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
// PIC (8259, remapped to 32..47 and fully masked: the LAPIC + IOAPIC route interrupts)
// ------------------------------------------------------------------------------------
pub const IRQ_BASE: u8 = 32;
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
    picSetMask(0xffff); // remapped (a spurious IRQ7/15 is recognisable) and fully masked
}

pub fn picSetMask(m: u16) void {
    pic_mask = m;
    arch.outb(0x21, @truncate(m));
    arch.outb(0xA1, @truncate(m >> 8));
}

// ------------------------------------------------------------------------------------
// clock: TSC calibrated against the PIT
// ------------------------------------------------------------------------------------
pub var tsc_hz: u64 = 1_000_000_000;
var tsc0: u64 = 0;
var ns_mult: u64 = 1 << 32; // ns = delta * ns_mult >> 32

pub var lapic_khz: u64 = 62500;

/// One calibration sample: PIT channel 0 latched, bracketed by two TSC reads. A vCPU
/// preempted inside the bracket shows up as a wide bracket; such samples are not used.
const Sample = struct { tsc: u64, width: u64, pit: u64, lapic: u32 };

fn pitSample() Sample {
    const a = arch.rdtsc();
    arch.outb(0x43, 0x00); // latch channel 0
    const lo: u64 = arch.inb(0x40);
    const hi: u64 = arch.inb(0x40);
    const b = arch.rdtsc();
    return .{ .tsc = a + (b - a) / 2, .width = b - a, .pit = lo | (hi << 8), .lapic = lapicRead(0x390) };
}

const Rates = struct { tsc_khz: u64, lapic_khz: u64 };

/// One window of >= 25 ms of PIT counts (channel 0 as a rate generator over 65536 counts,
/// polled: each poll adds the counts since the previous one). The narrowest bracket among
/// the first 8 samples and among 8 samples after the window gives the TSC at both ends.
fn calibrationWindow() ?Rates {
    const target: u64 = 29830; // 25 ms of PIT counts
    var prev = pitSample();
    var elapsed: u64 = 0;
    var start = prev;
    var start_at: u64 = 0;
    var end = prev;
    var end_at: u64 = 0;
    var i: u64 = 0;
    var after: u64 = 0;
    while (i < 1_000_000) : (i += 1) {
        const cur = pitSample();
        elapsed += (prev.pit -% cur.pit) & 0xffff;
        prev = cur;
        if (i < 8) {
            if (i == 0 or cur.width < start.width) {
                start = cur;
                start_at = elapsed;
            }
        } else if (elapsed - start_at >= target) {
            if (after == 0 or cur.width < end.width) {
                end = cur;
                end_at = elapsed;
            }
            after += 1;
            if (after >= 8) break;
        }
    }
    const counts = end_at - start_at;
    if (counts < target or end.tsc <= start.tsc) return null;
    const khz = (end.tsc - start.tsc) * 1193182 / counts / 1000;
    return .{ .tsc_khz = khz, .lapic_khz = @as(u64, start.lapic -% end.lapic) * khz / (end.tsc - start.tsc) };
}

fn median(v: []u64) u64 {
    // insertion sort: 5 elements
    var i: usize = 1;
    while (i < v.len) : (i += 1) {
        var j = i;
        while (j > 0 and v[j - 1] > v[j]) : (j -= 1) {
            const t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    }
    return v[v.len / 2];
}

/// TSC and LAPIC-timer rates against the PIT's counter (not its interrupts: on a loaded host
/// their delivery is late by whole periods). The median of 5 windows: a window in which the
/// vCPU was descheduled long enough to miss a counter wrap is far off and drops out.
fn calibrateTsc() void {
    lapicWrite(0x3E0, 0x3); // LAPIC timer divide by 16
    lapicWrite(0x320, 0x10000 | @as(u32, VEC_TIMER)); // masked: free-running count only
    lapicWrite(0x380, 0xFFFFFFFF);
    arch.outb(0x43, 0x34); // channel 0, lo/hi, mode 2, reload 0 = 65536
    arch.outb(0x40, 0);
    arch.outb(0x40, 0);
    var tk: [5]u64 = undefined;
    var lk: [5]u64 = undefined;
    var n: usize = 0;
    var tries: usize = 0;
    while (n < tk.len and tries < 10) : (tries += 1) {
        const r = calibrationWindow() orelse continue;
        tk[n] = r.tsc_khz;
        lk[n] = r.lapic_khz;
        n += 1;
    }
    lapicWrite(0x380, 0);
    arch.outb(0x43, 0x30); // PIT channel 0 stopped until the agent starts it
    if (n >= 3) {
        tsc_hz = median(tk[0..n]) * 1000; // whole kHz: hello reports tsc_khz
        const l = median(lk[0..n]);
        // KVM and QEMU emulate a 1 GHz APIC bus (62500 kHz after /16): snap to it when close.
        lapic_khz = if (l > 61000 and l < 64000) 62500 else if (l > 1000) l else 62500;
    } else {
        kprint("zigu: PIT calibration failed; assuming 1 GHz\n");
        tsc_hz = 1_000_000_000;
    }
    if (tsc_hz < 1_000_000) tsc_hz = 1_000_000;
    ns_mult = @intCast((@as(u128, 1_000_000_000) << 32) / tsc_hz);
    tsc0 = arch.rdtsc();
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
    if ((v == 13 or v == 14) and f.cs & 3 == 0 and guard_armed) {
        // a guarded agent access (rd/wr) faulted: report it instead of dying
        guard_armed = false;
        guard_fault = v;
        f.rip = @intFromPtr(&g_fault_ret);
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
        // 8259: used only while the TSC is calibrated at boot, fully masked afterwards
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
        if (irq == 0) ticks += 1;
        if (irq >= 8) arch.outb(0xA0, 0x20);
        arch.outb(0x20, 0x20);
        return;
    }
    if (v == VEC_SPURIOUS) return; // spurious LAPIC interrupts take no EOI
    if (v == VEC_UART) {
        rx_irqs += 1;
        serialDrain();
    } else if (v == VEC_TIMER) {
        timer_tsc = arch.rdtsc();
        timer_fired +%= 1;
    } else if (v >= VEC_LINE_BASE and v < VEC_LINE_BASE + NLINES) {
        const line: usize = @intCast(v - VEC_LINE_BASE);
        if (line == 0) {
            const t = arch.rdtsc();
            if (pit_ticks == 0 and t -% pit_start_tsc < pit_period_tsc / 2) {
                // Before half a period of this programming has passed: a tick latched from an
                // earlier run (the rate generator's first tick comes one full period after
                // the count is written). Counted apart, reported as pit `stale`.
                pit_stale += 1;
                lapicWrite(0xB0, 0);
                return;
            }
            if (pit_ticks == 0) pit_first_tsc = t;
            pit_last_tsc = t;
            pit_ticks += 1;
            ticks += 1;
        }
        if (line_manual_eoi[line]) {
            eoi_held += 1; // the agent's "eoi" command releases it
            return;
        }
    }
    lapicWrite(0xB0, 0);
}

// ------------------------------------------------------------------------------------
// LAPIC + IOAPIC interrupt routing (after boot; docs/agent-protocol.md "Probe kernel notes":
// the same vectors). IOAPIC line L -> vector 0x40 + L, the console UART (line 4) -> 0xe4,
// LAPIC timer 0xef, spurious 0xff; the 8259 stays remapped to 0x20..0x2f and masked.
// ------------------------------------------------------------------------------------
pub const VEC_LINE_BASE: u64 = 0x40;
pub const VEC_UART: u64 = 0xE4;
pub const VEC_TIMER: u8 = 0xEF;
pub const VEC_SPURIOUS: u64 = 0xFF;
pub const NLINES = 24;
const UART_LINE = 4;
const IOAPIC: u64 = 0xFEC00000;

var line_pins: [NLINES]u8 = undefined;
var line_routed: [NLINES]bool = @splat(false);
var line_manual_eoi: [NLINES]bool = @splat(false);
var eoi_held: u32 = 0;
var apic_id: u32 = 0;
var timer_fired: u32 = 0;
var timer_tsc: u64 = 0;
var pit_ticks: u64 = 0;
var pit_first_tsc: u64 = 0;
var pit_last_tsc: u64 = 0;
var pit_start_tsc: u64 = 0;
var ag_pit_hz: u64 = 0;
var pit_divisor: u64 = 0;
var pit_pin: u64 = 2;
var pit_running = false;
var pit_period_tsc: u64 = 0;
var pit_stale: u64 = 0;
const VEC_BACKSTOP: u32 = 0xEE; // the idle PIT bounding a one-shot wait (agent lapic_oneshot)
const BACKSTOP_DIV: u32 = 59659; // 20 Hz

fn vol(comptime T: type, p: *T) *volatile T {
    return @ptrCast(p);
}

fn ioapicRead(reg: u32) u32 {
    @as(*volatile u32, @ptrFromInt(IOAPIC)).* = reg;
    return @as(*volatile u32, @ptrFromInt(IOAPIC + 0x10)).*;
}
fn ioapicWrite(reg: u32, v: u32) void {
    @as(*volatile u32, @ptrFromInt(IOAPIC)).* = reg;
    @as(*volatile u32, @ptrFromInt(IOAPIC + 0x10)).* = v;
}

fn lineVector(line: usize) u64 {
    return if (line == UART_LINE) VEC_UART else VEC_LINE_BASE + line;
}

fn lineRoute(line: usize, pin: u8, level: bool, masked: bool) void {
    if (line_routed[line] and line_pins[line] != pin) ioapicWrite(0x10 + 2 * @as(u32, line_pins[line]), 0x10000);
    line_pins[line] = pin;
    line_routed[line] = true;
    const lo: u32 = @as(u32, @intCast(lineVector(line))) | (if (level) @as(u32, 1 << 15) else 0) | (if (masked) @as(u32, 0x10000) else 0);
    ioapicWrite(0x11 + 2 * @as(u32, pin), apic_id << 24);
    ioapicWrite(0x10 + 2 * @as(u32, pin), lo);
}

fn lineSetMask(line: usize, masked: bool) void {
    const reg = 0x10 + 2 * @as(u32, line_pins[line]);
    const lo = ioapicRead(reg);
    ioapicWrite(reg, if (masked) lo | 0x10000 else lo & ~@as(u32, 0x10000));
}

fn lineMasked(line: usize) bool {
    return (ioapicRead(0x10 + 2 * @as(u32, line_pins[line])) >> 16) & 1 != 0;
}

fn lineCount(line: usize) u64 {
    return irq_counts[@intCast(lineVector(line))];
}

// Intel MP specification 1.4 tables: which IOAPIC pin each ISA IRQ reaches. Both VMMs
// describe their wiring there (QEMU's firmware: IRQ0 -> pin 2; god: IRQ n -> pin n), so the
// agent follows the table (as guests/probe/mp.c does) instead of assuming one convention.
pub var mp_found = false;
var isa_pin: [16]u8 = @splat(0xff);

fn mpByte(a: u64) u8 {
    return @as(*volatile u8, @ptrFromInt(a)).*;
}
fn mpRd16(a: u64) u32 {
    return @as(u32, mpByte(a)) | (@as(u32, mpByte(a + 1)) << 8);
}
fn mpRd32(a: u64) u32 {
    return mpRd16(a) | (mpRd16(a + 2) << 16);
}

fn mpScan(base: u64, len: u64) ?u64 {
    var a = base;
    while (a + 16 <= base + len) : (a += 16) {
        if (mpRd32(a) != 0x5F504D5F) continue; // "_MP_"
        var sum: u8 = 0;
        var i: u64 = 0;
        while (i < 16) : (i += 1) sum +%= mpByte(a + i);
        if (sum == 0) return a;
    }
    return null;
}

fn mpParse() void {
    const ebda: u64 = @as(u64, mpRd16(0x40E)) << 4;
    var f: ?u64 = null;
    if (ebda >= 0x80000 and ebda < 0xA0000) f = mpScan(ebda, 1024);
    if (f == null) f = mpScan(0x9FC00, 1024);
    if (f == null) f = mpScan(0xF0000, 0x10000);
    const fp = f orelse return;
    const cfg: u64 = mpRd32(fp + 4);
    if (cfg == 0 or mpByte(fp + 11) != 0 or cfg >= 0x100000) return; // default configuration: no table
    if (mpRd32(cfg) != 0x504D4350) return; // "PCMP"
    const end = cfg + mpRd16(cfg + 4);
    const count = mpRd16(cfg + 0x22);
    var isa_bus: ?u8 = null;
    var pins: [16]u8 = @splat(0xff);
    var pass: u32 = 0;
    while (pass < 2) : (pass += 1) {
        var e = cfg + 0x2C;
        var i: u32 = 0;
        // qboot (QEMU microvm) leaves the entry count 0: the table length bounds the walk
        while ((count == 0 or i < count) and e + 8 <= end) : (i += 1) {
            const typ = mpByte(e);
            if (typ == 0) {
                e += 20;
                continue;
            }
            if (typ > 4) return; // not a table we understand: trust none of it
            if (pass == 0 and typ == 1 and mpByte(e + 2) == 'I' and mpByte(e + 3) == 'S' and mpByte(e + 4) == 'A')
                isa_bus = mpByte(e + 1);
            if (pass == 1 and typ == 3 and mpByte(e + 1) == 0 and isa_bus != null and mpByte(e + 4) == isa_bus.? and
                mpByte(e + 5) < 16 and pins[mpByte(e + 5)] == 0xff)
                pins[mpByte(e + 5)] = mpByte(e + 7);
            e += 8;
        }
    }
    mp_found = true;
    isa_pin = pins;
}

/// Switch from the boot-time 8259 to the LAPIC + IOAPIC: 8259 and PIT off, every IOAPIC pin
/// masked but the console UART's.
fn apicInit() void {
    picSetMask(0xffff);
    arch.outb(0x43, 0x30); // PIT channel 0, mode 0, no count written: stopped
    apic_id = lapicRead(0x20) >> 24;
    lapicWrite(0x80, 0); // TPR: accept everything
    lapicWrite(0x350, 0x10000); // LINT0 masked: the 8259 is not used any more
    lapicWrite(0x370, 0x10000); // error LVT masked
    lapicWrite(0x320, 0x10000 | @as(u32, VEC_TIMER));
    var pins: u32 = ((ioapicRead(1) >> 16) & 0xff) + 1;
    if (pins > NLINES) pins = NLINES;
    var p: u32 = 0;
    while (p < pins) : (p += 1) {
        ioapicWrite(0x10 + 2 * p, 0x10000);
        ioapicWrite(0x11 + 2 * p, 0);
    }
    for (&line_pins, 0..) |*lp, i| lp.* = @intCast(i);
    line_pins[0] = 2; // without an MP table: ISA IRQ0 (the PIT) on pin 2, the usual override
    mpParse();
    for (isa_pin, 0..) |pin, irq| {
        if (pin < NLINES) line_pins[irq] = pin;
    }
    pit_pin = line_pins[0];
    lineRoute(UART_LINE, line_pins[UART_LINE], false, false);
    serialDrain(); // an edge-triggered line must start low
}

fn tscToNs(d: u64) u64 {
    return @truncate((@as(u128, d) * ns_mult) >> 32);
}

fn nsToTsc(ns: u64) u64 {
    return @truncate(@as(u128, ns) * tsc_hz / 1_000_000_000);
}

/// LAPIC timer one-shot after about `ns`.
fn lapicArmNs(ns: u64) void {
    var n: u64 = ns / 1000 * lapic_khz / 1000 + 2;
    if (n > 0xFFFFFFFF) n = 0xFFFFFFFF;
    lapicWrite(0x320, VEC_TIMER);
    lapicWrite(0x380, @intCast(n));
}

/// Idle in HLT until the TSC reaches `end` (the LAPIC timer bounds each HLT); returns wakeups.
fn idleUntilTsc(end: u64) u64 {
    var wakeups: u64 = 0;
    var armed = false;
    var fired_at_arm: u32 = 0;
    while (true) {
        const now = arch.rdtsc();
        if (now >= end) break;
        // re-arm only once the timer has fired: other wake-ups (PIT ticks, UART) leave it
        // running, which saves two emulated LAPIC writes per interrupt under PVM
        const fired = vol(u32, &timer_fired).*;
        if (!armed or fired != fired_at_arm) {
            lapicArmNs(tscToNs(end - now));
            armed = true;
            fired_at_arm = fired;
        }
        arch.waitForInterrupt();
        wakeups += 1;
    }
    return wakeups;
}

// ------------------------------------------------------------------------------------
// the ABI context of the current workload + platform hooks
// ------------------------------------------------------------------------------------
extern const __user_start: u8;
extern const __user_end: u8;
extern const __kernel_start: u8;

var ctx: abi.Context = .{};

fn platWait(deadline: u64) void {
    const now = nowNs();
    if (now >= deadline) return;
    lapicArmNs(deadline - now);
    arch.waitForInterrupt();
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
    return supervisor(nr, a1, a2, a3, a4, a5) catch |e| switch (e) {
        error.BadPointer => uk.ERR_BAD_POINTER,
        error.Invalid => uk.ERR_INVALID,
    };
}

fn userBytes(ptr: u64, len: u64) error{BadPointer}![]u8 {
    if (ptr == 0 or !platValid(ptr, len)) return error.BadPointer;
    return @as([*]u8, @ptrFromInt(ptr))[0..len];
}

fn supervisor(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) error{ BadPointer, Invalid }!i64 {
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
        uk.SYS_SV_AGENT => return agentOp(a1, a2, a3, a4, a5),
        else => return uk.ERR_NOSYS,
    }
}

// ------------------------------------------------------------------------------------
// agent primitives: the privileged half of the agent protocol (agent.zig, ring 3, parses
// the requests and formats the replies). Supervisor call 69: (op, a, b, c, out) where `out`
// points to 8 u64 result slots in workload memory. Negative results are UK_ERR_* codes.
// ------------------------------------------------------------------------------------
pub const AG_IN = 1; // (port, width) -> out[0] value
pub const AG_OUT = 2; // (port, width, value)
pub const AG_RD = 3; // (addr, width) -> out[0] value; result 0, or the fault vector (13/14)
pub const AG_WR = 4; // (addr, width, value) -> 0 or the fault vector
pub const AG_IRQ_ARM = 5; // (line, pin or 0xff, level | manual << 1) -> vector; out[0] pin
pub const AG_IRQ_MASK = 6; // (line, masked)
pub const AG_IRQ_INFO = 7; // (line) -> out: count, vector, masked
pub const AG_VEC_COUNT = 8; // (vector) -> count
pub const AG_COUNTS_RESET = 9;
pub const AG_EOI = 10; // -> EOIs sent
pub const AG_HOLD_BEGIN = 11; // (line, level) -> count before (line masked)
pub const AG_HOLD_END = 12; // (line, ms) -> out: masked, after, vector
pub const AG_IPI_SELF = 13; // (vector, n) -> out: sent, received
pub const AG_CLOCK = 14; // -> out: tsc, ns
pub const AG_HALT = 15; // (ms) -> out: ns, wakeups
pub const AG_ONESHOT = 16; // (us) -> out: requested_ns, elapsed_ns, fired, count
pub const AG_PIT_START = 17; // (hz, pin or 0xff) -> out: pit report
pub const AG_PIT_READ = 18;
pub const AG_PIT_STOP = 19;
pub const AG_PIT_MEASURE = 20; // (hz, ms, pin | poll << 8) -> out: pit report
pub const AG_LOOPBACK = 21; // (value) -> out: value, msr, lsr, mcr; result 1: nothing came back
pub const AG_UART_STATS = 22; // -> out: rx_bytes, rx_irqs, overruns, dropped
pub const AG_RX_READ = 23; // (buf, len, deadline_ns) -> bytes (0: deadline passed)
pub const AG_RX_FLUSH = 24;
pub const AG_EXIT = 25; // (status): returns only if the exit port did not stop the machine
pub const AG_INFO = 26; // -> out: tsc_khz, lapic_khz, apic_id, cpus, mptable, pit_pin

var guard_armed: bool = false;
var guard_fault: u64 = 0;

// Guarded accesses: the access is the first instruction, so a fault resumes at g_fault_ret
// with the return address on top of the stack.
comptime {
    asm (
        \\ .text
        \\g_rd8: movzbl (%rdi), %eax
        \\ ret
        \\g_rd16: movzwl (%rdi), %eax
        \\ ret
        \\g_rd32: movl (%rdi), %eax
        \\ ret
        \\g_rd64: movq (%rdi), %rax
        \\ ret
        \\g_wr8: movb %sil, (%rdi)
        \\ ret
        \\g_wr16: movw %si, (%rdi)
        \\ ret
        \\g_wr32: movl %esi, (%rdi)
        \\ ret
        \\g_wr64: movq %rsi, (%rdi)
        \\ ret
        \\ .global g_fault_ret
        \\g_fault_ret: xorl %eax, %eax
        \\ ret
        \\ .global g_rd8, g_rd16, g_rd32, g_rd64, g_wr8, g_wr16, g_wr32, g_wr64
    );
}
extern fn g_rd8(a: u64) callconv(.c) u64;
extern fn g_rd16(a: u64) callconv(.c) u64;
extern fn g_rd32(a: u64) callconv(.c) u64;
extern fn g_rd64(a: u64) callconv(.c) u64;
extern fn g_wr8(a: u64, v: u64) callconv(.c) void;
extern fn g_wr16(a: u64, v: u64) callconv(.c) void;
extern fn g_wr32(a: u64, v: u64) callconv(.c) void;
extern fn g_wr64(a: u64, v: u64) callconv(.c) void;
extern const g_fault_ret: u8;

const Out = struct {
    p: u64,
    fn set(o: Out, i: usize, v: u64) void {
        @as(*align(1) u64, @ptrFromInt(o.p + 8 * i)).* = v;
    }
};

fn pitReport(o: Out) void {
    o.set(0, pit_ticks);
    o.set(1, tscToNs(arch.rdtsc() -% pit_start_tsc));
    o.set(2, ag_pit_hz);
    o.set(3, pit_divisor);
    o.set(4, if (pit_ticks > 1) tscToNs(pit_last_tsc - pit_first_tsc) else 0);
    o.set(5, pit_pin);
    o.set(6, pit_stale);
}

fn pitStart(hz: u64, pin: u64) error{Invalid}!void {
    if (hz < 19 or hz > 100000 or pin >= NLINES) return error.Invalid;
    pit_divisor = (1193182 + hz / 2) / hz;
    ag_pit_hz = hz;
    pit_pin = pin;
    lineRoute(0, @intCast(pin), false, true);
    pit_ticks = 0;
    pit_stale = 0;
    pit_first_tsc = 0;
    pit_last_tsc = 0;
    pit_period_tsc = pit_divisor * tsc_hz / 1193182;
    arch.outb(0x43, 0x34); // channel 0, lo/hi, mode 2 (rate generator)
    arch.outb(0x40, @truncate(pit_divisor));
    pit_start_tsc = arch.rdtsc(); // before the count's last byte: counting starts with it
    arch.outb(0x40, @truncate(pit_divisor >> 8));
    pit_running = true;
    lineSetMask(0, false);
}

fn pitStop() void {
    pit_running = false;
    lineSetMask(0, true);
    arch.outb(0x43, 0x30); // channel 0 mode 0 with no count written: stops counting
    // Agent primitives run with interrupts off: a tick the LAPIC accepted before the mask
    // must be counted now, not after the report. Under PVM the emulated ring 0 may not take a
    // pending interrupt within a few instructions of sti, so idle 2 ms with interrupts on.
    _ = idleUntilTsc(arch.rdtsc() + nsToTsc(2_000_000));
}

/// Spin with interrupts on until `vol_counter` changes from `start` or the TSC passes `end`.
fn spinUntilChange(counter: *u64, start: u64, end: u64) void {
    arch.sti();
    while (vol(u64, counter).* == start and arch.rdtsc() < end) asm volatile ("pause" ::: .{ .memory = true });
    arch.cli();
}

fn agentOp(op: u64, a: u64, b: u64, c: u64, outp: u64) error{ BadPointer, Invalid }!i64 {
    _ = try userBytes(outp, 64);
    const o = Out{ .p = outp };
    switch (op) {
        AG_IN => {
            if (a > 0xffff) return error.Invalid;
            const port: u16 = @truncate(a);
            o.set(0, switch (b) {
                1 => arch.inb(port),
                2 => arch.inw(port),
                4 => arch.inl(port),
                else => return error.Invalid,
            });
            return 0;
        },
        AG_OUT => {
            if (a > 0xffff) return error.Invalid;
            const port: u16 = @truncate(a);
            switch (b) {
                1 => arch.outb(port, @truncate(c)),
                2 => arch.outw(port, @truncate(c)),
                4 => arch.outl(port, @truncate(c)),
                else => return error.Invalid,
            }
            return 0;
        },
        AG_RD => {
            guard_fault = 0;
            guard_armed = true;
            const v = switch (b) {
                1 => g_rd8(a),
                2 => g_rd16(a),
                4 => g_rd32(a),
                8 => g_rd64(a),
                else => {
                    guard_armed = false;
                    return error.Invalid;
                },
            };
            guard_armed = false;
            o.set(0, v);
            return @intCast(guard_fault);
        },
        AG_WR => {
            guard_fault = 0;
            guard_armed = true;
            switch (b) {
                1 => g_wr8(a, c),
                2 => g_wr16(a, c),
                4 => g_wr32(a, c),
                8 => g_wr64(a, c),
                else => {
                    guard_armed = false;
                    return error.Invalid;
                },
            }
            guard_armed = false;
            return @intCast(guard_fault);
        },
        AG_IRQ_ARM => {
            if (a >= NLINES) return error.Invalid;
            const line: usize = @intCast(a);
            const pin: u8 = if (b == 0xff) line_pins[line] else if (b < NLINES) @intCast(b) else return error.Invalid;
            line_manual_eoi[line] = c & 2 != 0;
            lineRoute(line, pin, c & 1 != 0, false);
            o.set(0, pin);
            return @intCast(lineVector(line));
        },
        AG_IRQ_MASK => {
            if (a >= NLINES) return error.Invalid;
            lineSetMask(@intCast(a), b != 0);
            return 0;
        },
        AG_IRQ_INFO => {
            if (a >= NLINES) return error.Invalid;
            const line: usize = @intCast(a);
            o.set(0, lineCount(line));
            o.set(1, lineVector(line));
            o.set(2, @intFromBool(lineMasked(line)));
            return 0;
        },
        AG_VEC_COUNT => return if (a < 256) irq_counts[@intCast(a)] else error.Invalid,
        AG_COUNTS_RESET => {
            for (&irq_counts) |*x| x.* = 0;
            return 0;
        },
        AG_EOI => {
            const n = eoi_held;
            eoi_held = 0;
            var i: u32 = 0;
            while (i < n) : (i += 1) lapicWrite(0xB0, 0);
            return n;
        },
        AG_HOLD_BEGIN => {
            if (a >= NLINES) return error.Invalid;
            const line: usize = @intCast(a);
            lineRoute(line, line_pins[line], b != 0, true);
            return @intCast(lineCount(line));
        },
        AG_HOLD_END => {
            if (a >= NLINES) return error.Invalid;
            const line: usize = @intCast(a);
            _ = idleUntilTsc(arch.rdtsc() + nsToTsc(@as(u64, @min(b, 60000)) * 1_000_000));
            const masked = lineCount(line);
            lineSetMask(line, false);
            const end = arch.rdtsc() + nsToTsc(500_000_000);
            while (lineCount(line) == masked) {
                const now = arch.rdtsc();
                if (now >= end) break;
                lapicArmNs(tscToNs(end - now));
                arch.waitForInterrupt();
            }
            const after = lineCount(line);
            lineRoute(line, line_pins[line], false, false); // back to the edge default
            o.set(0, masked);
            o.set(1, after);
            o.set(2, lineVector(line));
            return 0;
        },
        AG_IPI_SELF => {
            if (a < 0x50 or a > 0xdf) return error.Invalid;
            const v: usize = @intCast(a);
            var sent: u64 = 0;
            var got: u64 = 0;
            const base = irq_counts[v];
            while (sent < b) {
                lapicWrite(0x310, apic_id << 24);
                lapicWrite(0x300, 0x4000 | @as(u32, @intCast(a)));
                var k: u32 = 0;
                while (k < 100000 and lapicRead(0x300) & (1 << 12) != 0) : (k += 1) {}
                if (lapicRead(0x300) & (1 << 12) != 0) break;
                sent += 1;
                const end = arch.rdtsc() + nsToTsc(100_000_000);
                arch.sti();
                while (vol(u32, &irq_counts[v]).* -% base < sent and arch.rdtsc() < end) asm volatile ("pause" ::: .{ .memory = true });
                arch.cli();
                got = irq_counts[v] -% base;
                if (got < sent) break;
            }
            o.set(0, sent);
            o.set(1, got);
            return 0;
        },
        AG_CLOCK => {
            const t = arch.rdtsc();
            o.set(0, t);
            o.set(1, tscToNs(t -% tsc0));
            return 0;
        },
        AG_HALT => {
            const t0 = arch.rdtsc();
            const w = idleUntilTsc(t0 + nsToTsc(@as(u64, @min(a, 600000)) * 1_000_000));
            o.set(0, tscToNs(arch.rdtsc() - t0));
            o.set(1, w);
            return 0;
        },
        AG_ONESHOT => {
            const n = a * lapic_khz / 1000;
            if (a == 0 or a > 60_000_000 or n == 0 or n > 0xFFFFFFFF) return error.Invalid;
            const fired0 = timer_fired;
            const backstop = !pit_running;
            var saved_lo: u32 = 0;
            var saved_hi: u32 = 0;
            const pin: u32 = line_pins[0];
            if (backstop) {
                // Wait in HLT, not in a busy loop: a busy vCPU of an emulated ring 0 competes for
                // a loaded host's cores and wakes late. So that the agent answers even if the
                // LAPIC timer never fires, the idle PIT ticks at 20 Hz on a vector of its own.
                saved_lo = ioapicRead(0x10 + 2 * pin);
                saved_hi = ioapicRead(0x11 + 2 * pin);
                ioapicWrite(0x11 + 2 * pin, apic_id << 24);
                ioapicWrite(0x10 + 2 * pin, VEC_BACKSTOP);
                arch.outb(0x43, 0x34);
                arch.outb(0x40, @truncate(BACKSTOP_DIV));
                arch.outb(0x40, @truncate(BACKSTOP_DIV >> 8));
            }
            lapicWrite(0x320, VEC_TIMER);
            const t0 = arch.rdtsc();
            lapicWrite(0x380, @intCast(n));
            const end = t0 + nsToTsc(a * 2000 + 200_000_000);
            if (backstop) {
                while (vol(u32, &timer_fired).* == fired0 and arch.rdtsc() < end) arch.waitForInterrupt();
                ioapicWrite(0x10 + 2 * pin, saved_lo | 0x10000);
                arch.outb(0x43, 0x30);
                asm volatile ("sti; nop; nop; cli" ::: .{ .memory = true });
                ioapicWrite(0x11 + 2 * pin, saved_hi);
                ioapicWrite(0x10 + 2 * pin, saved_lo);
            } else {
                arch.sti();
                while (vol(u32, &timer_fired).* == fired0 and arch.rdtsc() < end) asm volatile ("pause" ::: .{ .memory = true });
                arch.cli();
            }
            const fired = timer_fired -% fired0;
            o.set(0, a * 1000);
            o.set(1, if (fired != 0) tscToNs(timer_tsc - t0) else 0);
            o.set(2, fired);
            o.set(3, n);
            return 0;
        },
        AG_PIT_START => {
            try pitStart(a, if (b == 0xff) line_pins[0] else b);
            pitReport(o);
            return 0;
        },
        AG_PIT_READ => {
            pitReport(o);
            return 0;
        },
        AG_PIT_STOP => {
            pitStop();
            pitReport(o);
            return 0;
        },
        AG_PIT_MEASURE => {
            const pin = c & 0xff;
            try pitStart(a, if (pin == 0xff) line_pins[0] else pin);
            const end = pit_start_tsc + nsToTsc(@as(u64, @min(b, 600000)) * 1_000_000);
            if (c & 0x100 != 0) {
                arch.sti();
                while (arch.rdtsc() < end) asm volatile ("pause");
                arch.cli();
            } else _ = idleUntilTsc(end);
            const stop = arch.rdtsc();
            pitStop();
            pitReport(o);
            o.set(1, tscToNs(stop - pit_start_tsc));
            return 0;
        },
        AG_LOOPBACK => {
            const ier = arch.inb(COM1 + 1);
            const mcr = arch.inb(COM1 + 4);
            arch.outb(COM1 + 1, 0);
            arch.outb(COM1 + 4, mcr | 0x10);
            const msr = arch.inb(COM1 + 6);
            arch.outb(COM1, @truncate(a));
            var got: ?u8 = null;
            var lsr: u8 = 0;
            var i: u32 = 0;
            while (i < 100000 and got == null) : (i += 1) {
                lsr = arch.inb(COM1 + 5);
                if (lsr & 1 != 0) got = arch.inb(COM1);
            }
            arch.outb(COM1 + 4, mcr);
            arch.outb(COM1 + 1, ier);
            tx_room = 0;
            o.set(0, got orelse 0);
            o.set(1, msr);
            o.set(2, lsr);
            o.set(3, mcr);
            return if (got == null) 1 else 0;
        },
        AG_UART_STATS => {
            o.set(0, rx_bytes);
            o.set(1, rx_irqs);
            o.set(2, rx_overruns);
            o.set(3, rx_dropped);
            return 0;
        },
        AG_RX_READ => {
            const buf = try userBytes(a, b);
            while (rx_len == 0) {
                const now = nowNs();
                if (now >= c) return 0;
                lapicArmNs(c - now);
                arch.waitForInterrupt();
            }
            var n: usize = 0;
            while (n < buf.len and rx_len > 0) : (n += 1) {
                buf[n] = rx_buf[rx_head];
                rx_head = (rx_head + 1) % rx_buf.len;
                rx_len -= 1;
            }
            return @intCast(n);
        },
        AG_RX_FLUSH => {
            rx_head = 0;
            rx_len = 0;
            return 0;
        },
        AG_EXIT => {
            arch.outb(0xf4, @truncate(a));
            return 0;
        },
        AG_INFO => {
            o.set(0, tsc_hz / 1000);
            o.set(1, lapic_khz);
            o.set(2, apic_id);
            o.set(3, 1);
            o.set(4, @intFromBool(mp_found));
            o.set(5, line_pins[0]);
            return 0;
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
    kprint("zigu: pic masked\n");
    calibrateTsc();
    apicInit();
    kprint("zigu: tsc_khz=");
    kprintDec(tsc_hz / 1000);
    kprint(" lapic_khz=");
    kprintDec(lapic_khz);
    kprint(" apic=ioapic mptable=");
    kprintDec(@intFromBool(mp_found));
    kprint(" pit_pin=");
    kprintDec(line_pins[0]);
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
