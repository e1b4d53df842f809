//! Agent protocol (docs/agent-protocol.md, pytest_vmm/agent/protocol.py), answered by the
//! ring-3 runner next to the `@abi` channel: both line protocols share the console.
//!
//!   request  @><id> <cmd> [key=value ...] *<cs>      cs = byte sum before " *", mod 256
//!   reply    @@<id> ok|err|go ... *<cs>\r\n
//!
//! Parsing, argument checks and reply formatting run here in ring 3 (native speed under PVM);
//! the privileged part of each command is one supervisor call (SYS_SV_AGENT, op codes AG_* in
//! main.zig), which writes its results into `res`. zigu runs on one vCPU: `cpu=N>0` answers
//! err 7.
const abi = @import("abi.zig");
const user = @import("user.zig");
const main = @import("main.zig");
const uk = abi.uk;

pub const VERSION = "1";
const NAME = "zigu";
const CAPS = "port,mmio,irq,timer,uart,exit";

var res: [8]u64 align(8) linksection(".user") = undefined;
var rxb: [512]u8 align(16) linksection(".user") = undefined;

fn ag(op: u64, a: u64, b: u64, c: u64) i64 {
    return user.sys(uk.SYS_SV_AGENT, op, a, b, c, @intFromPtr(&res));
}

// ---------------------------------------------------------------- errors
const E_FRAME = 1;
const E_UNKNOWN = 2;
const E_ARG = 3;
const E_WIDTH = 4;
const E_FAULT = 5;
const E_TIMEOUT = 6;
const E_NOCPU = 7;
const E_UNSUPPORTED = 8;

const Fail = error{Fail};
var err_code: u8 = 0;
var err_text: []const u8 = "";
var err_val: ?u64 = null;

fn fail(code: u8, text: []const u8) Fail {
    err_code = code;
    err_text = text;
    err_val = null;
    return error.Fail;
}

// ---------------------------------------------------------------- reply body
var body: [256]u8 = undefined;
var body_len: usize = 0;

fn put(s: []const u8) void {
    for (s) |c| {
        if (body_len < body.len) {
            body[body_len] = c;
            body_len += 1;
        }
    }
}

fn putDec(v: u64) void {
    var buf: [20]u8 = undefined;
    var i: usize = buf.len;
    var x = v;
    while (true) {
        i -= 1;
        buf[i] = '0' + @as(u8, @intCast(x % 10));
        x /= 10;
        if (x == 0) break;
    }
    put(buf[i..]);
}

fn putHex(v: u64) void {
    const d = "0123456789abcdef";
    put("0x");
    var started = false;
    var k: u6 = 0;
    while (true) : (k += 1) {
        const nib: usize = @intCast((v >> (60 - 4 * @as(u6, k))) & 0xf);
        if (nib != 0 or started or k == 15) {
            started = true;
            put(d[nib .. nib + 1]);
        }
        if (k == 15) break;
    }
}

fn kvDec(k: []const u8, v: u64) void {
    put(" ");
    put(k);
    put("=");
    putDec(v);
}

fn kvHex(k: []const u8, v: u64) void {
    put(" ");
    put(k);
    put("=");
    putHex(v);
}

fn kvStr(k: []const u8, v: []const u8) void {
    put(" ");
    put(k);
    put("=");
    put(v);
}

/// "@@<id> <status>" + body + " *cs\r\n" onto the console, as one write.
fn sendFrame(id: []const u8, status: []const u8) void {
    var line: [300]u8 = undefined;
    var n: usize = 0;
    for ([_][]const u8{ "@@", id, " ", status, body[0..body_len] }) |part| {
        for (part) |c| {
            line[n] = c;
            n += 1;
        }
    }
    var sum: u8 = 0;
    for (line[0..n]) |c| sum +%= c;
    const hex = "0123456789abcdef";
    for ([_]u8{ ' ', '*', hex[sum >> 4], hex[sum & 15], '\r', '\n' }) |c| {
        line[n] = c;
        n += 1;
    }
    user.flush();
    user.emit(line[0..n]);
    user.flush();
    body_len = 0;
}

fn sendError(id: []const u8, code: u8, text: []const u8, val: ?u64) void {
    body_len = 0;
    put(" ");
    putDec(code);
    put(" ");
    put(text);
    if (val) |v| {
        put(" ");
        putHex(v);
    }
    sendFrame(id, "err");
}

// ---------------------------------------------------------------- requests
const MAXARGS = 12;
const Req = struct {
    id: []const u8,
    cmd: []const u8,
    n: usize = 0,
    keys: [MAXARGS][]const u8 = undefined,
    vals: [MAXARGS][]const u8 = undefined,

    fn str(r: *const Req, k: []const u8) ?[]const u8 {
        var i: usize = 0;
        while (i < r.n) : (i += 1) if (eq(r.keys[i], k)) return r.vals[i];
        return null;
    }

    /// An unsigned argument: decimal or 0x hex, at most `max`; `dflt` when absent
    /// (null: required).
    fn num(r: *const Req, k: []const u8, dflt: ?u64, max: u64) Fail!u64 {
        const s = r.str(k) orelse return dflt orelse fail(E_ARG, k);
        const v = parseU64(s) orelse return fail(E_ARG, k);
        if (v > max) return fail(E_ARG, k);
        return v;
    }
};

fn eq(a: []const u8, b: []const u8) bool {
    if (a.len != b.len) return false;
    for (a, b) |x, y| if (x != y) return false;
    return true;
}

fn parseU64(s: []const u8) ?u64 {
    if (s.len == 0) return null;
    var v: u64 = 0;
    if (s.len > 2 and s[0] == '0' and (s[1] == 'x' or s[1] == 'X')) {
        if (s.len > 18) return null;
        for (s[2..]) |c| {
            const d: u64 = switch (c) {
                '0'...'9' => c - '0',
                'a'...'f' => c - 'a' + 10,
                'A'...'F' => c - 'A' + 10,
                else => return null,
            };
            v = (v << 4) | d;
        }
        return v;
    }
    if (s.len > 20) return null;
    for (s) |c| {
        if (c < '0' or c > '9') return null;
        const m = @mulWithOverflow(v, 10);
        if (m[1] != 0) return null;
        const a = @addWithOverflow(m[0], c - '0');
        if (a[1] != 0) return null;
        v = a[0];
    }
    return v;
}

/// Does this console line carry an agent request (`@>` anywhere)?
pub fn handles(l: []const u8) bool {
    var i: usize = 0;
    while (i + 1 < l.len) : (i += 1) if (l[i] == '@' and l[i + 1] == '>') return true;
    return false;
}

var id_buf: [12]u8 = undefined;
var current_id: []const u8 = "";

pub fn handle(full: []const u8) void {
    // the last "@>" starts the request: bytes before it are line noise
    var start: usize = 0;
    var found = false;
    var i: usize = 0;
    while (i + 1 < full.len) : (i += 1) if (full[i] == '@' and full[i + 1] == '>') {
        start = i;
        found = true;
    };
    if (!found) return;
    const s = full[start..];
    var p: usize = 2;
    while (p < s.len and s[p] >= '0' and s[p] <= '9') p += 1;
    if (p == 2 or p > 11 or p >= s.len or s[p] != ' ') return; // no usable id: nothing to answer
    @memcpy(id_buf[0 .. p - 2], s[2..p]);
    const id = id_buf[0 .. p - 2];
    // the last " *" separates the checksum
    var star: ?usize = null;
    if (s.len >= 2) {
        var j: usize = s.len - 2;
        while (true) : (j -= 1) {
            if (s[j] == ' ' and s[j + 1] == '*') {
                star = j;
                break;
            }
            if (j == 0) break;
        }
    }
    const st = star orelse return sendError(id, E_FRAME, "missing checksum", null);
    if (st < p) return sendError(id, E_FRAME, "missing checksum", null);
    var sum: u8 = 0;
    for (s[0..st]) |c| sum +%= c;
    const cs = s[st + 2 ..];
    const want: ?u64 = if (cs.len == 2) parseU64(&[_]u8{ '0', 'x', cs[0], cs[1] }) else null;
    if (want == null or want.? != sum) return sendError(id, E_FRAME, "bad checksum", null);

    var r = Req{ .id = id, .cmd = "" };
    var cpu: u64 = 0;
    var t = user.Tok{ .s = s[p..st] };
    while (t.next()) |w| {
        if (r.cmd.len == 0) {
            r.cmd = w;
            continue;
        }
        var e: usize = 0;
        while (e < w.len and w[e] != '=') e += 1;
        if (e == 0 or e == w.len or r.n == MAXARGS) return sendError(id, E_ARG, "arguments are key=value", null);
        if (eq(w[0..e], "cpu")) {
            cpu = parseU64(w[e + 1 ..]) orelse return sendError(id, E_NOCPU, "no such cpu", null);
            continue;
        }
        r.keys[r.n] = w[0..e];
        r.vals[r.n] = w[e + 1 ..];
        r.n += 1;
    }
    if (r.cmd.len == 0) return sendError(id, E_FRAME, "missing command", null);
    const h = lookup(r.cmd) orelse return sendError(id, E_UNKNOWN, "unknown command", null);
    if (cpu != 0) return sendError(id, E_NOCPU, "cpu is not online (zigu runs on one vCPU)", null);
    body_len = 0;
    current_id = id;
    h(&r) catch {
        current_id = "";
        return sendError(id, err_code, err_text, err_val);
    };
    current_id = "";
    sendFrame(id, "ok");
}

/// Interim "go": the guest is ready for the host's part of a two-phase command.
fn sendGo() void {
    sendFrame(current_id, "go");
}

const Handler = *const fn (r: *const Req) Fail!void;
const Command = struct { name: []const u8, h: Handler };
const commands = [_]Command{
    .{ .name = "hello", .h = hHello },
    .{ .name = "ping", .h = hPing },
    .{ .name = "in", .h = hIn },
    .{ .name = "out", .h = hOut },
    .{ .name = "rd", .h = hRd },
    .{ .name = "wr", .h = hWr },
    .{ .name = "irq_arm", .h = hIrqArm },
    .{ .name = "irq_mask", .h = hIrqMask },
    .{ .name = "irq_unmask", .h = hIrqUnmask },
    .{ .name = "irq_count", .h = hIrqCount },
    .{ .name = "vec_count", .h = hVecCount },
    .{ .name = "counts_reset", .h = hCountsReset },
    .{ .name = "eoi", .h = hEoi },
    .{ .name = "irq_hold", .h = hIrqHold },
    .{ .name = "ipi", .h = hIpi },
    .{ .name = "clock", .h = hClock },
    .{ .name = "halt", .h = hHalt },
    .{ .name = "lapic_oneshot", .h = hOneshot },
    .{ .name = "pit_start", .h = hPitStart },
    .{ .name = "pit_read", .h = hPitRead },
    .{ .name = "pit_stop", .h = hPitStop },
    .{ .name = "pit_measure", .h = hPitMeasure },
    .{ .name = "uart_loopback", .h = hLoopback },
    .{ .name = "uart_stats", .h = hUartStats },
    .{ .name = "rx_burst", .h = hRxBurst },
    .{ .name = "exit", .h = hExit },
};

fn lookup(name: []const u8) ?Handler {
    for (commands) |c| if (eq(c.name, name)) return c.h;
    return null;
}

fn check(rc: i64) Fail!void {
    if (rc < 0) return fail(E_ARG, "rejected by the kernel");
}

// ---------------------------------------------------------------- identity
fn hHello(_: *const Req) Fail!void {
    try check(ag(main.AG_INFO, 0, 0, 0));
    kvStr("name", NAME);
    kvStr("arch", "x86_64");
    kvDec("proto", 1);
    kvDec("cpus", res[3]);
    kvDec("tsc_khz", res[0]);
    kvDec("lapic_khz", res[1]);
    kvStr("boot", "pvh");
    kvDec("mptable", res[4]);
    kvDec("pit_pin", res[5]);
    kvStr("caps", CAPS);
}

fn hPing(_: *const Req) Fail!void {
    kvDec("cpu", 0);
}

// ---------------------------------------------------------------- port I/O and MMIO
fn hIn(r: *const Req) Fail!void {
    const port = try r.num("port", null, 0xffff);
    const width = try r.num("width", 1, 8);
    if (width != 1 and width != 2 and width != 4) return fail(E_WIDTH, "port width must be 1, 2 or 4");
    try check(ag(main.AG_IN, port, width, 0));
    kvHex("value", res[0]);
}

fn hOut(r: *const Req) Fail!void {
    const port = try r.num("port", null, 0xffff);
    const width = try r.num("width", 1, 8);
    const value = try r.num("value", null, ~@as(u64, 0));
    if (width != 1 and width != 2 and width != 4) return fail(E_WIDTH, "port width must be 1, 2 or 4");
    if (value >> @intCast(8 * width) != 0) return fail(E_ARG, "value");
    try check(ag(main.AG_OUT, port, width, value));
}

fn faulted(rc: i64, addr: u64) Fail!void {
    if (rc == 0) return;
    if (rc < 0) return fail(E_ARG, "rejected by the kernel");
    err_code = E_FAULT;
    err_text = if (rc == 14) "page fault at" else "general protection fault at";
    err_val = addr;
    return error.Fail;
}

fn memWidth(r: *const Req) Fail!u64 {
    const width = try r.num("width", 4, 8);
    if (width != 1 and width != 2 and width != 4 and width != 8) return fail(E_WIDTH, "width must be 1, 2, 4 or 8");
    return width;
}

fn hRd(r: *const Req) Fail!void {
    const addr = try r.num("addr", null, ~@as(u64, 0));
    const width = try memWidth(r);
    try faulted(ag(main.AG_RD, addr, width, 0), addr);
    kvHex("value", res[0]);
}

fn hWr(r: *const Req) Fail!void {
    const addr = try r.num("addr", null, ~@as(u64, 0));
    const width = try memWidth(r);
    const value = try r.num("value", null, ~@as(u64, 0));
    if (width < 8 and value >> @intCast(8 * width) != 0) return fail(E_ARG, "value");
    try faulted(ag(main.AG_WR, addr, width, value), addr);
}

// ---------------------------------------------------------------- interrupts
const NLINES = main.NLINES;

fn word(r: *const Req, k: []const u8, a: []const u8, b: []const u8, dflt: bool) Fail!bool {
    const s = r.str(k) orelse return dflt;
    if (eq(s, a)) return true;
    if (eq(s, b)) return false;
    return fail(E_ARG, k);
}

fn hIrqArm(r: *const Req) Fail!void {
    const line = try r.num("line", null, NLINES - 1);
    const pin = try r.num("pin", 0xff, 0xff);
    if (pin != 0xff and pin >= NLINES) return fail(E_ARG, "pin");
    const level = try word(r, "trig", "level", "edge", false);
    const manual = try word(r, "eoi", "manual", "auto", false);
    if (line == 4 and manual) return fail(E_ARG, "the console line cannot hold its EOI");
    const vec = ag(main.AG_IRQ_ARM, line, pin, @as(u64, @intFromBool(level)) | (@as(u64, @intFromBool(manual)) << 1));
    try check(vec);
    kvHex("vector", @intCast(vec));
    kvDec("pin", res[0]);
}

fn hIrqMask(r: *const Req) Fail!void {
    try check(ag(main.AG_IRQ_MASK, try r.num("line", null, NLINES - 1), 1, 0));
}

fn hIrqUnmask(r: *const Req) Fail!void {
    try check(ag(main.AG_IRQ_MASK, try r.num("line", null, NLINES - 1), 0, 0));
}

fn hIrqCount(r: *const Req) Fail!void {
    try check(ag(main.AG_IRQ_INFO, try r.num("line", null, NLINES - 1), 0, 0));
    kvDec("count", res[0]);
    kvHex("vector", res[1]);
    kvDec("masked", res[2]);
}

fn hVecCount(r: *const Req) Fail!void {
    const n = ag(main.AG_VEC_COUNT, try r.num("vector", null, 255), 0, 0);
    try check(n);
    kvDec("count", @intCast(n));
}

fn hCountsReset(_: *const Req) Fail!void {
    try check(ag(main.AG_COUNTS_RESET, 0, 0, 0));
}

fn hEoi(_: *const Req) Fail!void {
    const n = ag(main.AG_EOI, 0, 0, 0);
    try check(n);
    kvDec("sent", @intCast(n));
}

/// Mask a line, let the host raise it (`go`), wait, unmask, and see whether it arrives.
fn hIrqHold(r: *const Req) Fail!void {
    const line = try r.num("line", null, NLINES - 1);
    const ms = try r.num("ms", 200, 60000);
    const level = try word(r, "trig", "level", "edge", true);
    const before = ag(main.AG_HOLD_BEGIN, line, @intFromBool(level), 0);
    try check(before);
    kvDec("before", @intCast(before));
    sendGo();
    try check(ag(main.AG_HOLD_END, line, ms, 0));
    kvDec("before", @intCast(before));
    kvDec("masked", res[0]);
    kvDec("after", res[1]);
    kvHex("vector", res[2]);
}

fn hIpi(r: *const Req) Fail!void {
    const to = try r.num("to", null, 255);
    const vector = try r.num("vector", null, 255);
    const n = try r.num("n", 1, 100000);
    if (to != 0) return fail(E_NOCPU, "target cpu is not online (zigu runs on one vCPU)");
    if (vector < 0x50 or vector > 0xdf) return fail(E_ARG, "vector must be 0x50..0xdf");
    try check(ag(main.AG_IPI_SELF, vector, n, 0));
    kvDec("sent", res[0]);
    kvDec("received", res[1]);
}

// ---------------------------------------------------------------- time
fn hClock(_: *const Req) Fail!void {
    try check(ag(main.AG_CLOCK, 0, 0, 0));
    kvHex("tsc", res[0]);
    kvDec("ns", res[1]);
    kvDec("cpu", 0);
}

fn hHalt(r: *const Req) Fail!void {
    try check(ag(main.AG_HALT, try r.num("ms", null, 600000), 0, 0));
    kvDec("ns", res[0]);
    kvDec("wakeups", res[1]);
}

fn hOneshot(r: *const Req) Fail!void {
    const us = try r.num("us", null, 60000000);
    if (us == 0) return fail(E_ARG, "us");
    if (ag(main.AG_ONESHOT, us, 0, 0) < 0) return fail(E_ARG, "us out of the timer's range");
    kvDec("requested_ns", res[0]);
    kvDec("elapsed_ns", res[1]);
    kvDec("fired", res[2]);
    kvDec("count", res[3]);
}

fn pitReport() void {
    kvDec("ticks", res[0]);
    kvDec("ns", res[1]);
    kvDec("hz", res[2]);
    kvDec("divisor", res[3]);
    kvDec("span_ns", res[4]);
    kvDec("pin", res[5]);
    kvDec("stale", res[6]);
}

fn pitArgs(r: *const Req) Fail![2]u64 {
    const hz = try r.num("hz", 1000, 100000);
    if (hz < 19) return fail(E_ARG, "hz must be 19..100000");
    const pin = try r.num("pin", 0xff, 0xff);
    if (pin != 0xff and pin >= NLINES) return fail(E_ARG, "pin");
    return .{ hz, pin };
}

fn hPitStart(r: *const Req) Fail!void {
    const a = try pitArgs(r);
    try check(ag(main.AG_PIT_START, a[0], a[1], 0));
    pitReport();
}

fn hPitRead(_: *const Req) Fail!void {
    try check(ag(main.AG_PIT_READ, 0, 0, 0));
    pitReport();
}

fn hPitStop(_: *const Req) Fail!void {
    try check(ag(main.AG_PIT_STOP, 0, 0, 0));
    pitReport();
}

fn hPitMeasure(r: *const Req) Fail!void {
    const a = try pitArgs(r);
    const ms = try r.num("ms", null, 600000);
    if (ms == 0) return fail(E_ARG, "ms");
    const poll = try r.num("poll", 0, 1);
    try check(ag(main.AG_PIT_MEASURE, a[0], ms, a[1] | (poll << 8)));
    pitReport();
}

// ---------------------------------------------------------------- UART
fn hLoopback(r: *const Req) Fail!void {
    const value = try r.num("value", 0x5a, 255);
    const rc = ag(main.AG_LOOPBACK, value, 0, 0);
    try check(rc);
    if (rc == 1) return fail(E_TIMEOUT, "no byte came back in loopback mode");
    kvHex("value", res[0]);
    kvHex("msr", res[1]);
    kvHex("lsr", res[2]);
    kvHex("mcr", res[3]);
}

fn hUartStats(_: *const Req) Fail!void {
    try check(ag(main.AG_UART_STATS, 0, 0, 0));
    kvDec("rx_bytes", res[0]);
    kvDec("rx_irqs", res[1]);
    kvDec("overruns", res[2]);
    kvDec("dropped", res[3]);
}

fn nowNs() u64 {
    _ = ag(main.AG_CLOCK, 0, 0, 0);
    return res[1];
}

/// `go`, then the host sends `n` raw bytes: count them and digest them (FNV-1a 32).
fn hRxBurst(r: *const Req) Fail!void {
    const n = try r.num("n", null, 1000000);
    if (n == 0) return fail(E_ARG, "n");
    const ms = try r.num("ms", 5000, 600000);
    try check(ag(main.AG_RX_FLUSH, 0, 0, 0)); // anything left from before belongs to no one
    try check(ag(main.AG_UART_STATS, 0, 0, 0));
    const irq0 = res[1];
    const ovr0 = res[2];
    const drop0 = res[3];
    sendGo();
    const deadline = nowNs() + ms * 1_000_000;
    var got: u64 = 0;
    var h: u32 = 0x811C9DC5;
    while (got < n) {
        const want: u64 = @min(n - got, rxb.len);
        const k = user.sys(uk.SYS_SV_AGENT, main.AG_RX_READ, @intFromPtr(&rxb), want, deadline, @intFromPtr(&res));
        if (k <= 0) break;
        for (rxb[0..@intCast(k)]) |c| h = (h ^ c) *% 0x01000193;
        got += @intCast(k);
    }
    try check(ag(main.AG_UART_STATS, 0, 0, 0));
    kvDec("bytes", got);
    kvDec("irqs", res[1] - irq0);
    kvHex("fnv", h);
    kvDec("overruns", res[2] - ovr0);
    kvDec("dropped", res[3] - drop0);
    kvDec("timed_out", @intFromBool(got < n));
}

fn hExit(r: *const Req) Fail!void {
    const status = try r.num("status", 0, 255);
    user.flush();
    _ = ag(main.AG_EXIT, status, 0, 0);
    return fail(E_UNSUPPORTED, "exit port 0xf4 did not stop the machine");
}

/// The ready banner: printed once the runner reads requests.
pub fn banner() void {
    const text = "@@ready proto=1 name=" ++ NAME;
    var sum: u8 = 0;
    for (text) |c| sum +%= c;
    const hex = "0123456789abcdef";
    user.emit(text);
    user.emit(" *");
    user.emit(&[_]u8{ hex[sum >> 4], hex[sum & 15], '\r', '\n' });
    user.flush();
}
