//! libzigu_abi.so: the kernel's abi.zig built for the host, so the ABI rules can be
//! checked and fuzzed through ctypes at native speed. Nothing here re-implements a rule:
//! every entry point goes through abi.Context.dispatch, exactly like the kernel's syscall
//! handler does.
//!
//! Host platform: CLOCK_MONOTONIC; waits use nanosleep; "workload memory" is any address
//! at or above 64 KiB in the canonical lower half (null page and kernel half are rejected),
//! or, after uk_host_set_user_range(lo, hi), exactly [lo, hi).
const std = @import("std");
const abi = @import("abi.zig");
const uk = abi.uk;
const linux = std.os.linux;

var ctx: abi.Context = .{};
var user_lo: u64 = 0x10000;
var user_hi: u64 = 0x0000_8000_0000_0000;
var log_buf: [65536]u8 = undefined;
var log_len: usize = 0;
var log_lost: u64 = 0;

fn hostNow() u64 {
    var ts: linux.timespec = undefined;
    _ = linux.clock_gettime(.MONOTONIC, &ts);
    return @as(u64, @intCast(ts.sec)) * 1_000_000_000 + @as(u64, @intCast(ts.nsec));
}

fn hostWait(deadline: u64) void {
    const now = hostNow();
    if (now >= deadline) return;
    const dt = deadline - now;
    const req = linux.timespec{ .sec = @intCast(dt / 1_000_000_000), .nsec = @intCast(dt % 1_000_000_000) };
    _ = linux.nanosleep(&req, null);
}

fn hostLog(b: []const u8) void {
    for (b) |c| {
        if (log_len < log_buf.len) {
            log_buf[log_len] = c;
            log_len += 1;
        } else log_lost += 1;
    }
}

fn hostValid(addr: u64, len: u64) bool {
    return addr >= user_lo and addr <= user_hi and len <= user_hi - addr;
}

const platform = abi.Platform{ .now_ns = hostNow, .wait_until = hostWait, .log_write = hostLog, .valid_user = hostValid };

fn d(nr: u64, a1: u64, a2: u64, a3: u64) i64 {
    return ctx.dispatch(&platform, nr, a1, a2, a3, 0, 0);
}

// ---- the workload ABI (same names as include/ukernel_abi.h) ----
export fn uk_syscall(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) i64 {
    return ctx.dispatch(&platform, nr, a1, a2, a3, a4, a5);
}
export fn uk_cap_acquire(kind: u32) i64 {
    return d(uk.SYS_CAP_ACQUIRE, kind, 0, 0);
}
export fn uk_cap_release(h: u32) i64 {
    return d(uk.SYS_CAP_RELEASE, h, 0, 0);
}
export fn uk_cap_enter(handles: ?[*]const u32, count: u32) i64 {
    return d(uk.SYS_CAP_ENTER, @intFromPtr(handles), count, 0);
}
export fn uk_cap_active() i64 {
    return d(uk.SYS_CAP_ACTIVE, 0, 0, 0);
}
export fn uk_cap_kind(h: u32) i64 {
    return d(uk.SYS_CAP_KIND, h, 0, 0);
}
export fn uk_cap_policy() i64 {
    return d(uk.SYS_CAP_POLICY, 0, 0, 0);
}
export fn uk_log_write(buf: ?[*]const u8, len: u64) i64 {
    return d(uk.SYS_LOG_WRITE, @intFromPtr(buf), len, 0);
}
export fn uk_time_now() i64 {
    return d(uk.SYS_TIME_NOW, 0, 0, 0);
}
export fn uk_time_sleep(ns: u64) i64 {
    return d(uk.SYS_TIME_SLEEP, ns, 0, 0);
}
export fn uk_task_yield() i64 {
    return d(uk.SYS_TASK_YIELD, 0, 0, 0);
}
export fn uk_task_id() i64 {
    return d(uk.SYS_TASK_ID, 0, 0, 0);
}
export fn uk_io_pipe(fds: ?[*]i32) i64 {
    return d(uk.SYS_IO_PIPE, @intFromPtr(fds), 0, 0);
}
export fn uk_io_read(fd: i32, buf: ?[*]u8, len: u64) i64 {
    return d(uk.SYS_IO_READ, @bitCast(@as(i64, fd)), @intFromPtr(buf), len);
}
export fn uk_io_write(fd: i32, buf: ?[*]const u8, len: u64) i64 {
    return d(uk.SYS_IO_WRITE, @bitCast(@as(i64, fd)), @intFromPtr(buf), len);
}
export fn uk_io_close(fd: i32) i64 {
    return d(uk.SYS_IO_CLOSE, @bitCast(@as(i64, fd)), 0, 0);
}
export fn uk_io_poll(fds: ?*anyopaque, count: u32, timeout_ns: i64) i64 {
    return d(uk.SYS_IO_POLL, @intFromPtr(fds), count, @bitCast(timeout_ns));
}
export fn uk_net_open(port: u32) i64 {
    return d(uk.SYS_NET_OPEN, port, 0, 0);
}
export fn uk_random_get(buf: ?[*]u8, len: u64) i64 {
    return d(uk.SYS_RANDOM_GET, @intFromPtr(buf), len, 0);
}

// ---- host harness (what the kernel's supervisor does in the guest) ----
export fn uk_host_reset(workload: u32) i64 {
    return ctx.reset(workload);
}
export fn uk_host_set_user_range(lo: u64, hi: u64) void {
    user_lo = lo;
    user_hi = hi;
}
/// Copy (and consume) the LOG output; returns bytes copied.
export fn uk_host_log_take(buf: [*]u8, cap: u64) u64 {
    const n: usize = @intCast(@min(cap, log_len));
    @memcpy(buf[0..n], log_buf[0..n]);
    std.mem.copyForwards(u8, log_buf[0 .. log_len - n], log_buf[n..log_len]);
    log_len -= n;
    return n;
}
export fn uk_host_stats(which: u32) u64 {
    return switch (which) {
        0 => ctx.calls,
        1 => ctx.denied,
        2 => log_lost,
        3 => ctx.workload,
        else => 0,
    };
}
/// Run `count` calls of one call number with fixed arguments (native-speed benchmark).
export fn uk_host_bench(count: u64, nr: u64, a1: u64, a2: u64, a3: u64) i64 {
    var r: i64 = 0;
    var i: u64 = 0;
    while (i < count) : (i += 1) r = ctx.dispatch(&platform, nr, a1, a2, a3, 0, 0);
    return r;
}

// ---- the constant table: every `uk.X` of abi.zig, for the header sync test ----
const decls = @typeInfo(uk).@"struct".decl_names;
const Entry = extern struct { name: [*:0]const u8, value: i64 };
const table: [decls.len]Entry = blk: {
    var t: [decls.len]Entry = undefined;
    for (decls, 0..) |dcl, i| t[i] = .{ .name = "UK_" ++ dcl, .value = @field(uk, dcl) };
    break :blk t;
};
export fn uk_const_count() u32 {
    return decls.len;
}
export fn uk_const_at(i: u32, name: *[*:0]const u8, value: *i64) i32 {
    if (i >= decls.len) return -1;
    name.* = table[i].name;
    value.* = table[i].value;
    return 0;
}

test "host library sees the same rules" {
    var fds: [2]i32 = undefined;
    _ = uk_host_reset(uk.WL_DEFAULT);
    try std.testing.expectEqual(@as(i64, uk.ERR_PERMISSION), uk_io_pipe(&fds));
    const h = uk_cap_acquire(uk.CAP_IO);
    const hs = [_]u32{@intCast(h)};
    try std.testing.expectEqual(@as(i64, 1 << uk.CAP_IO), uk_cap_enter(&hs, 1));
    try std.testing.expectEqual(@as(i64, 0), uk_io_pipe(&fds));
    try std.testing.expectEqual(@as(i64, uk.ERR_BAD_POINTER), uk_io_pipe(null));
    try std.testing.expect(uk_const_count() > 50);
}
