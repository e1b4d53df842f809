//! Ring-3 workload: the in-guest ABI channel runner.
//!
//! It reads request lines from the console (a supervisor call), performs the requested ABI
//! calls *as a ring-3 workload through the real syscall path*, and prints one reply line.
//!
//!   host -> guest:  @abi <id> <op> [args] [; <op> [args]]...
//!   guest -> host:  =abi <id> <result> [<result>]...        (one result per op)
//!
//! A result is a decimal integer (>= 0 success, < 0 an UK_ERR_* code) optionally followed by
//! ':' and a payload (comma-separated integers, or hex bytes). docs/zigu-abi.md lists the ops.
//! Pointer arguments accept `u+N` (workload scratch memory + N), `k` (a kernel address) or a
//! raw number, so every pointer rule can be exercised from the host.
//!
//! Lines carrying `@>` are agent-protocol requests (docs/agent-protocol.md), answered by
//! agent.zig; the ready banner `@@ready proto=1 name=zigu *cs` follows the `zigu: ready` line.
//!
//! Nothing here may touch ports or kernel data: it only uses its own `.user` buffers and
//! syscalls (the agent's privileged work is supervisor call 69). (The ABI rejects pointers
//! outside `.user`.)
const abi = @import("abi.zig");
const agent = @import("agent.zig");
const uk = abi.uk;

var ustack: [65536]u8 align(16) linksection(".user") = undefined;
var inbuf: [512]u8 align(16) linksection(".user") = undefined;
var out: [16384]u8 align(16) linksection(".user") = undefined;
pub var scratch: [8192]u8 align(16) linksection(".user") = undefined;

var line: [4096]u8 = undefined;
var line_len: usize = 0;
var out_len: usize = 0;
var line_overflow = false;
/// How ring 3 enters the kernel. Default: `ud2` trap (the #UD handler treats a ud2 from
/// ring 3 as a system call). PVM does not deliver `syscall` or `int 0x80` from guest ring 3
/// to the emulated ring 0 (measured: `syscall` runs the handler unprivileged, `int 0x80`
/// raises #UD), but it does deliver exceptions; on hardware KVM all three work.
pub const Gate = enum(u8) { ud2, syscall, int80 };
pub var gate: Gate = .ud2;

pub fn stackTop() u64 {
    // iretq entry: RSP = 8 (mod 16), as after a call
    return @intFromPtr(&ustack) + ustack.len - 8;
}

pub inline fn sys(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) i64 {
    switch (gate) {
        .ud2 => return asm volatile ("ud2"
            : [ret] "={rax}" (-> i64),
            : [nr] "{rax}" (nr),
              [a1] "{rdi}" (a1),
              [a2] "{rsi}" (a2),
              [a3] "{rdx}" (a3),
              [a4] "{r10}" (a4),
              [a5] "{r8}" (a5),
            : .{ .memory = true }),
        .int80 => return asm volatile ("int $0x80"
            : [ret] "={rax}" (-> i64),
            : [nr] "{rax}" (nr),
              [a1] "{rdi}" (a1),
              [a2] "{rsi}" (a2),
              [a3] "{rdx}" (a3),
              [a4] "{r10}" (a4),
              [a5] "{r8}" (a5),
            : .{ .memory = true }),
        .syscall => return asm volatile ("syscall"
            : [ret] "={rax}" (-> i64),
            : [nr] "{rax}" (nr),
              [a1] "{rdi}" (a1),
              [a2] "{rsi}" (a2),
              [a3] "{rdx}" (a3),
              [a4] "{r10}" (a4),
              [a5] "{r8}" (a5),
            : .{ .rcx = true, .r11 = true, .memory = true }),
    }
}

// ---------------- output ----------------

pub fn emit(s: []const u8) void {
    for (s) |c| {
        if (out_len >= out.len - 1) flush();
        out[out_len] = c;
        out_len += 1;
    }
}

pub fn emitInt(v: i64) void {
    var buf: [24]u8 = undefined;
    var i: usize = buf.len;
    var x: u64 = if (v < 0) @as(u64, @intCast(-(v + 1))) + 1 else @intCast(v);
    while (true) {
        i -= 1;
        buf[i] = '0' + @as(u8, @intCast(x % 10));
        x /= 10;
        if (x == 0) break;
    }
    if (v < 0) emit("-");
    emit(buf[i..]);
}

pub fn emitHexU(v: u64) void {
    const d = "0123456789abcdef";
    emit("0x");
    var started = false;
    var k: usize = 0;
    while (k < 16) : (k += 1) {
        const nib: u8 = @intCast((v >> @intCast(60 - 4 * k)) & 0xf);
        if (nib != 0 or started or k == 15) {
            started = true;
            emit(d[nib .. nib + 1]);
        }
    }
}

fn emitHexBytes(b: []const u8) void {
    const d = "0123456789abcdef";
    for (b) |c| {
        emit(d[c >> 4 .. (c >> 4) + 1]);
        emit(d[c & 15 .. (c & 15) + 1]);
    }
}

pub fn flush() void {
    var off: usize = 0;
    while (off < out_len) {
        const n = sys(uk.SYS_SV_CONSOLE_WRITE, @intFromPtr(&out) + off, out_len - off, 0, 0, 0);
        if (n <= 0) break;
        off += @intCast(n);
    }
    out_len = 0;
}

// ---------------- parsing ----------------

pub const Tok = struct {
    s: []const u8,
    i: usize = 0,
    pub fn next(t: *Tok) ?[]const u8 {
        while (t.i < t.s.len and t.s[t.i] == ' ') t.i += 1;
        if (t.i >= t.s.len) return null;
        const st = t.i;
        while (t.i < t.s.len and t.s[t.i] != ' ') t.i += 1;
        return t.s[st..t.i];
    }
};

pub fn parseNum(s: []const u8) ?u64 {
    if (s.len == 0) return null;
    var neg = false;
    var x = s;
    if (x[0] == '-') {
        neg = true;
        x = x[1..];
    }
    var v: u64 = 0;
    if (x.len > 2 and x[0] == '0' and (x[1] == 'x' or x[1] == 'X')) {
        for (x[2..]) |c| {
            const d: u64 = switch (c) {
                '0'...'9' => c - '0',
                'a'...'f' => c - 'a' + 10,
                'A'...'F' => c - 'A' + 10,
                else => return null,
            };
            v = (v << 4) | d;
        }
    } else {
        if (x.len == 0) return null;
        for (x) |c| {
            if (c < '0' or c > '9') return null;
            v = v *% 10 +% (c - '0');
        }
    }
    return if (neg) 0 -% v else v;
}

/// Argument value: integers, plus pointer notations `u+N` (scratch + N), `k` (kernel).
fn parseArg(s: []const u8) ?u64 {
    if (s.len >= 1 and s[0] == 'u') {
        const base: u64 = @intFromPtr(&scratch);
        if (s.len == 1) return base;
        if (s.len > 2 and s[1] == '+') return base + (parseNum(s[2..]) orelse return null);
        return null;
    }
    if (s.len == 1 and s[0] == 'k') return 0x100000;
    return parseNum(s);
}

fn hexVal(c: u8) ?u8 {
    return switch (c) {
        '0'...'9' => c - '0',
        'a'...'f' => c - 'a' + 10,
        'A'...'F' => c - 'A' + 10,
        else => null,
    };
}

/// Decode hex (or `-` for empty) into scratch[off..]; returns the length.
fn hexToScratch(s: []const u8, off: usize) ?usize {
    if (s.len == 1 and s[0] == '-') return 0;
    if (s.len % 2 != 0 or off + s.len / 2 > scratch.len) return null;
    var i: usize = 0;
    while (i < s.len / 2) : (i += 1) {
        scratch[off + i] = ((hexVal(s[2 * i]) orelse return null) << 4) | (hexVal(s[2 * i + 1]) orelse return null);
    }
    return s.len / 2;
}

fn eq(a: []const u8, b: []const u8) bool {
    if (a.len != b.len) return false;
    for (a, b) |x, y| if (x != y) return false;
    return true;
}

// ---------------- ops ----------------

inline fn sbase() u64 {
    return @intFromPtr(&scratch);
}
const DATA = 4096; // scratch offset used by the convenience ops for their buffers

fn bad() void {
    emit("err");
}

/// Run one op; emits exactly one result token.
fn runOp(t: *Tok) void {
    const op = t.next() orelse return bad();
    if (eq(op, "ping")) return emit("pong");
    if (eq(op, "scratch")) {
        emit("0:");
        return emitHexU(sbase());
    }
    if (eq(op, "reset")) {
        const w = parseArg(t.next() orelse "0") orelse return bad();
        return emitInt(sys(uk.SYS_SV_RESET, w, 0, 0, 0, 0));
    }
    if (eq(op, "sys")) {
        var a: [6]u64 = @splat(0);
        var n: usize = 0;
        while (t.next()) |s| {
            if (n >= 6) return bad();
            a[n] = parseArg(s) orelse return bad();
            n += 1;
        }
        if (n == 0) return bad();
        return emitInt(sys(a[0], a[1], a[2], a[3], a[4], a[5]));
    }
    if (eq(op, "bench")) {
        // bench N NR A1..A5: the same raw call N times; -> last:elapsed_ns
        const n = parseArg(t.next() orelse return bad()) orelse return bad();
        var a: [6]u64 = @splat(0);
        var k: usize = 0;
        while (t.next()) |s| {
            if (k >= 6) return bad();
            a[k] = parseArg(s) orelse return bad();
            k += 1;
        }
        const t0 = sys(uk.SYS_SV_STATS, 4, 0, 0, 0, 0);
        var r: i64 = 0;
        var i: u64 = 0;
        while (i < n) : (i += 1) r = sys(a[0], a[1], a[2], a[3], a[4], a[5]);
        const t1 = sys(uk.SYS_SV_STATS, 4, 0, 0, 0, 0);
        emitInt(r);
        emit(":");
        return emitInt(t1 - t0);
    }
    if (eq(op, "poke")) {
        // poke OFF HEX: write bytes into scratch
        const off = parseNum(t.next() orelse return bad()) orelse return bad();
        if (off > scratch.len) return bad();
        const n = hexToScratch(t.next() orelse return bad(), @intCast(off)) orelse return bad();
        return emitInt(@intCast(n));
    }
    if (eq(op, "peek")) {
        const off = parseNum(t.next() orelse return bad()) orelse return bad();
        const n = parseNum(t.next() orelse return bad()) orelse return bad();
        if (off > scratch.len or n > scratch.len - off or n > 2048) return bad();
        emit("0:");
        return emitHexBytes(scratch[@intCast(off)..][0..@intCast(n)]);
    }
    if (eq(op, "acquire")) return emitInt(sys(uk.SYS_CAP_ACQUIRE, parseArg(t.next() orelse return bad()) orelse return bad(), 0, 0, 0, 0));
    if (eq(op, "release")) return emitInt(sys(uk.SYS_CAP_RELEASE, parseArg(t.next() orelse return bad()) orelse return bad(), 0, 0, 0, 0));
    if (eq(op, "kind")) return emitInt(sys(uk.SYS_CAP_KIND, parseArg(t.next() orelse return bad()) orelse return bad(), 0, 0, 0, 0));
    if (eq(op, "active")) return emitInt(sys(uk.SYS_CAP_ACTIVE, 0, 0, 0, 0, 0));
    if (eq(op, "policy")) return emitInt(sys(uk.SYS_CAP_POLICY, 0, 0, 0, 0, 0));
    if (eq(op, "enter")) {
        // enter H1,H2,... | enter -   (empty set)
        const list = t.next() orelse "-";
        var n: usize = 0;
        if (!eq(list, "-")) {
            var st: usize = 0;
            var i: usize = 0;
            while (i <= list.len) : (i += 1) {
                if (i == list.len or list[i] == ',') {
                    const h = parseArg(list[st..i]) orelse return bad();
                    if (n >= 64) return bad();
                    const p = scratch[DATA + 4 * n ..][0..4];
                    p[0] = @truncate(h);
                    p[1] = @truncate(h >> 8);
                    p[2] = @truncate(h >> 16);
                    p[3] = @truncate(h >> 24);
                    n += 1;
                    st = i + 1;
                }
            }
        }
        return emitInt(sys(uk.SYS_CAP_ENTER, sbase() + DATA, n, 0, 0, 0));
    }
    if (eq(op, "log")) {
        const n = hexToScratch(t.next() orelse "-", DATA) orelse return bad();
        return emitInt(sys(uk.SYS_LOG_WRITE, sbase() + DATA, n, 0, 0, 0));
    }
    if (eq(op, "now")) return emitInt(sys(uk.SYS_TIME_NOW, 0, 0, 0, 0, 0));
    if (eq(op, "sleep")) return emitInt(sys(uk.SYS_TIME_SLEEP, parseArg(t.next() orelse return bad()) orelse return bad(), 0, 0, 0, 0));
    if (eq(op, "yield")) return emitInt(sys(uk.SYS_TASK_YIELD, 0, 0, 0, 0, 0));
    if (eq(op, "taskid")) return emitInt(sys(uk.SYS_TASK_ID, 0, 0, 0, 0, 0));
    if (eq(op, "pipe")) {
        const r = sys(uk.SYS_IO_PIPE, sbase() + DATA, 0, 0, 0, 0);
        emitInt(r);
        if (r == 0) {
            emit(":");
            emitInt(@as(i32, @bitCast(@as(u32, scratch[DATA]) | (@as(u32, scratch[DATA + 1]) << 8) | (@as(u32, scratch[DATA + 2]) << 16) | (@as(u32, scratch[DATA + 3]) << 24))));
            emit(",");
            emitInt(@as(i32, @bitCast(@as(u32, scratch[DATA + 4]) | (@as(u32, scratch[DATA + 5]) << 8) | (@as(u32, scratch[DATA + 6]) << 16) | (@as(u32, scratch[DATA + 7]) << 24))));
        }
        return;
    }
    if (eq(op, "read")) {
        const fd = parseArg(t.next() orelse return bad()) orelse return bad();
        const n = parseArg(t.next() orelse return bad()) orelse return bad();
        const len = if (n > 2048) n else n; // over-long lengths go to the kernel as-is
        const r = sys(uk.SYS_IO_READ, fd, sbase() + DATA, len, 0, 0);
        emitInt(r);
        if (r > 0) {
            emit(":");
            emitHexBytes(scratch[DATA..][0..@intCast(r)]);
        }
        return;
    }
    if (eq(op, "write")) {
        const fd = parseArg(t.next() orelse return bad()) orelse return bad();
        const n = hexToScratch(t.next() orelse "-", DATA) orelse return bad();
        return emitInt(sys(uk.SYS_IO_WRITE, fd, sbase() + DATA, n, 0, 0));
    }
    if (eq(op, "close")) return emitInt(sys(uk.SYS_IO_CLOSE, parseArg(t.next() orelse return bad()) orelse return bad(), 0, 0, 0, 0));
    if (eq(op, "poll")) {
        // poll TIMEOUT_NS FD:EV,FD:EV | poll TIMEOUT -
        const timeout = parseArg(t.next() orelse return bad()) orelse return bad();
        const list = t.next() orelse "-";
        var n: usize = 0;
        if (!eq(list, "-")) {
            var st: usize = 0;
            var i: usize = 0;
            while (i <= list.len) : (i += 1) {
                if (i == list.len or list[i] == ',') {
                    const item = list[st..i];
                    var c: usize = 0;
                    while (c < item.len and item[c] != ':') c += 1;
                    if (c >= item.len or n >= 64) return bad();
                    const fd = parseNum(item[0..c]) orelse return bad();
                    const ev = parseNum(item[c + 1 ..]) orelse return bad();
                    const e = scratch[DATA + 8 * n ..][0..8];
                    e[0] = @truncate(fd);
                    e[1] = @truncate(fd >> 8);
                    e[2] = @truncate(fd >> 16);
                    e[3] = @truncate(fd >> 24);
                    e[4] = @truncate(ev);
                    e[5] = @truncate(ev >> 8);
                    e[6] = 0;
                    e[7] = 0;
                    n += 1;
                    st = i + 1;
                }
            }
        }
        const r = sys(uk.SYS_IO_POLL, sbase() + DATA, n, timeout, 0, 0);
        emitInt(r);
        if (r >= 0 and n > 0) {
            emit(":");
            var k: usize = 0;
            while (k < n) : (k += 1) {
                if (k > 0) emit(",");
                emitInt(@as(i64, scratch[DATA + 8 * k + 6]) | (@as(i64, scratch[DATA + 8 * k + 7]) << 8));
            }
        }
        return;
    }
    if (eq(op, "net")) return emitInt(sys(uk.SYS_NET_OPEN, parseArg(t.next() orelse return bad()) orelse return bad(), 0, 0, 0, 0));
    if (eq(op, "random")) {
        const n = parseArg(t.next() orelse return bad()) orelse return bad();
        const r = sys(uk.SYS_RANDOM_GET, sbase() + DATA, n, 0, 0, 0);
        emitInt(r);
        if (r > 0) {
            emit(":");
            emitHexBytes(scratch[DATA..][0..@intCast(r)]);
        }
        return;
    }
    if (eq(op, "stats")) {
        emit("0:");
        var k: u64 = 0;
        while (k < 8) : (k += 1) {
            if (k > 0) emit(",");
            emitInt(sys(uk.SYS_SV_STATS, k, 0, 0, 0, 0));
        }
        return;
    }
    if (eq(op, "mode")) {
        // mode ud2|syscall|int80 (syscall/int80 need hardware KVM or TCG: see `gate`)
        const m = t.next() orelse return bad();
        if (eq(m, "ud2")) gate = .ud2 else if (eq(m, "int80")) gate = .int80 else if (eq(m, "syscall")) gate = .syscall else return bad();
        return emitInt(0);
    }
    if (eq(op, "exit")) {
        const st = parseArg(t.next() orelse "0") orelse return bad();
        flush();
        _ = sys(uk.SYS_SV_EXIT, st, 0, 0, 0, 0);
        return bad();
    }
    return bad();
}

fn handleAbi(rest: []const u8) void {
    var t = Tok{ .s = rest };
    const id = t.next() orelse return;
    emit("=abi ");
    emit(id);
    // split the remainder on ';'
    const body = rest[t.i..];
    var st: usize = 0;
    var i: usize = 0;
    while (i <= body.len) : (i += 1) {
        if (i == body.len or body[i] == ';') {
            var ot = Tok{ .s = body[st..i] };
            var probe = ot;
            if (probe.next() != null) {
                emit(" ");
                runOp(&ot);
            }
            st = i + 1;
        }
    }
    emit("\n");
    flush();
}

fn handleLine(l: []const u8) void {
    if (l.len >= 5 and eq(l[0..5], "@abi ")) return handleAbi(l[5..]);
    if (agent.handles(l)) return agent.handle(l);
}

pub fn user_main() callconv(.c) noreturn {
    emit("zigu: ring3 up\n");
    flush();
    // prove that the gate is shut before anything is entered (the channel depends on it)
    const denied = sys(uk.SYS_LOG_WRITE, @intFromPtr(&scratch), 1, 0, 0, 0);
    emit("zigu: ready abi=");
    emitInt(uk.ABI_VERSION);
    emit(" channel=@abi agent=");
    emit(agent.VERSION);
    emit(" gate=");
    emit(@tagName(gate));
    emit(" policy=");
    emitInt(sys(uk.SYS_CAP_POLICY, 0, 0, 0, 0, 0));
    emit(" denied=");
    emitInt(denied);
    emit(" scratch=");
    emitHexU(@intFromPtr(&scratch));
    emit("\n");
    flush();
    agent.banner(); // the agent protocol's ready banner: requests are read from here on
    while (true) {
        const n = sys(uk.SYS_SV_CONSOLE_READ, @intFromPtr(&inbuf), inbuf.len, 0, 0, 0);
        if (n <= 0) continue;
        for (inbuf[0..@intCast(n)]) |c| {
            if (c == '\n' or c == '\r') {
                if (line_len > 0 and !line_overflow) handleLine(line[0..line_len]);
                line_len = 0;
                line_overflow = false;
            } else if (line_len < line.len) {
                line[line_len] = c;
                line_len += 1;
            } else line_overflow = true;
        }
    }
}
