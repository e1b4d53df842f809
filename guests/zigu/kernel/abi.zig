//! zigu capability ABI: the single source of truth.
//!
//! This file is compiled twice:
//!   * into the kernel (ring 0, x86_64-freestanding, no SSE), where `dispatch` is called by
//!     the syscall entry with arguments coming from a ring-3 workload;
//!   * into `libzigu_abi.so` (host, via hostlib.zig), so the very same rules can be checked
//!     and fuzzed through ctypes.
//! It must stay free of allocation and of anything platform specific: the platform hooks
//! (clock, waiting, console, user-pointer validation) come in through `Platform`.
//!
//! Every constant that is part of the ABI lives in `uk` and is mirrored by
//! `include/ukernel_abi.h` as `UK_<NAME>`; tests/zigu/test_header_sync.py checks both ways.
const std = @import("std");

pub const uk = struct {
    pub const ABI_VERSION = 1;

    // ---- capability kinds (0 is never a valid kind) ----
    pub const CAP_LOG = 1;
    pub const CAP_TIME = 2;
    pub const CAP_TASK = 3;
    pub const CAP_IO = 4;
    pub const CAP_NET = 5;
    pub const CAP_RANDOM = 6;
    pub const CAP_KIND_MIN = 1;
    pub const CAP_KIND_MAX = 6;

    // ---- capability table / handles ----
    pub const CAP_TABLE_SIZE = 16;
    /// handle = (generation << HANDLE_GEN_SHIFT) | slot; generation is never 0, so 0 is never a handle.
    pub const HANDLE_GEN_SHIFT = 8;
    pub const HANDLE_SLOT_MASK = 0xff;
    pub const HANDLE_GEN_MAX = 0xffffff;

    // ---- results: >= 0 is success, < 0 one of these ----
    pub const OK = 0;
    pub const ERR_PERMISSION = -1; // capability kind of a gated call is not active
    pub const ERR_BAD_HANDLE = -2; // malformed, out of range, or never issued (forged)
    pub const ERR_STALE_HANDLE = -3; // released, or its slot was recycled
    pub const ERR_TABLE_FULL = -4; // no free capability slot (or I/O descriptor)
    pub const ERR_BAD_POINTER = -5; // null / outside workload memory / overflowing
    pub const ERR_BAD_LENGTH = -6; // length or count out of bounds
    pub const ERR_BAD_KIND = -7; // not a capability kind
    pub const ERR_DENIED = -8; // the workload policy forbids acquiring this kind
    pub const ERR_BAD_FD = -9; // not an open I/O descriptor
    pub const ERR_WOULD_BLOCK = -10; // not ready (or would block forever)
    pub const ERR_NOSYS = -11; // unknown call number
    pub const ERR_INVALID = -12; // other invalid argument
    pub const ERR_NO_DEVICE = -13; // capability granted but no such device here
    pub const ERR_CLOSED = -14; // peer end closed

    // ---- call numbers (rax for `syscall`; the same numbers for uk_syscall host-side) ----
    pub const SYS_CAP_ACQUIRE = 1; // (kind) -> handle
    pub const SYS_CAP_RELEASE = 2; // (handle) -> 0
    pub const SYS_CAP_ENTER = 3; // (const u32 *handles, count) -> new active mask
    pub const SYS_CAP_ACTIVE = 4; // () -> active mask
    pub const SYS_CAP_KIND = 5; // (handle) -> kind
    pub const SYS_CAP_POLICY = 6; // () -> mask of kinds the workload may acquire
    pub const SYS_LOG_WRITE = 16; // [LOG] (buf, len) -> len
    pub const SYS_TIME_NOW = 17; // [TIME] () -> monotonic ns
    pub const SYS_TIME_SLEEP = 18; // [TIME] (ns) -> 0
    pub const SYS_TASK_YIELD = 19; // [TASK] () -> 0
    pub const SYS_TASK_ID = 20; // [TASK] () -> task id
    pub const SYS_IO_PIPE = 21; // [IO] (int32 fds[2]) -> 0
    pub const SYS_IO_READ = 22; // [IO] (fd, buf, len) -> bytes (0 = EOF)
    pub const SYS_IO_WRITE = 23; // [IO] (fd, buf, len) -> bytes
    pub const SYS_IO_CLOSE = 24; // [IO] (fd) -> 0
    pub const SYS_IO_POLL = 25; // [IO] (uk_pollfd *fds, count, timeout_ns) -> ready count
    pub const SYS_NET_OPEN = 26; // [NET] (port) -> fd
    pub const SYS_RANDOM_GET = 27; // [RANDOM] (buf, len) -> len
    /// Supervisor calls: only the in-guest channel runner uses them; not part of the
    /// workload ABI; the host library answers ERR_NOSYS.
    pub const SYS_SV_CONSOLE_WRITE = 64; // (buf, len) -> len
    pub const SYS_SV_CONSOLE_READ = 65; // (buf, len) -> bytes (blocks until >= 1)
    pub const SYS_SV_RESET = 66; // (workload) -> 0: start a fresh workload context
    pub const SYS_SV_EXIT = 67; // (status) -> does not return
    pub const SYS_SV_STATS = 68; // (which) -> counter
    pub const SYS_SV_AGENT = 69; // (op, a, b, c, out) -> value: agent protocol primitives (main.zig AG_*)

    // ---- workloads and their acquire policies ----
    pub const WL_DEFAULT = 0;
    pub const WL_TRUSTED = 1;
    pub const WL_MINIMAL = 2;
    pub const WL_SANDBOX = 3;
    pub const WL_COUNT = 4;
    pub const POLICY_DEFAULT = (1 << CAP_LOG) | (1 << CAP_TIME) | (1 << CAP_TASK) | (1 << CAP_IO) | (1 << CAP_RANDOM);
    pub const POLICY_TRUSTED = (1 << CAP_LOG) | (1 << CAP_TIME) | (1 << CAP_TASK) | (1 << CAP_IO) | (1 << CAP_NET) | (1 << CAP_RANDOM);
    pub const POLICY_MINIMAL = (1 << CAP_LOG);
    pub const POLICY_SANDBOX = 0;

    // ---- limits ----
    pub const LOG_MAX = 1024;
    pub const RANDOM_MAX = 4096;
    pub const IO_MAX_FDS = 16;
    pub const IO_PIPE_CAPACITY = 512;
    pub const IO_RW_MAX = 65536;
    pub const IO_POLL_MAX = 32;
    pub const IO_POLL_TIMEOUT_MAX_NS = 60000000000;
    pub const TIME_SLEEP_MAX_NS = 10000000000;

    // ---- io_poll events (uk_pollfd.events / revents) ----
    pub const POLLIN = 0x1;
    pub const POLLOUT = 0x4;
    pub const POLLERR = 0x8;
    pub const POLLHUP = 0x10;
    pub const POLLNVAL = 0x20;
    /// sizeof(struct uk_pollfd): { int32 fd; uint16 events; uint16 revents; }
    pub const POLLFD_SIZE = 8;
};

pub const policies = [uk.WL_COUNT]u32{ uk.POLICY_DEFAULT, uk.POLICY_TRUSTED, uk.POLICY_MINIMAL, uk.POLICY_SANDBOX };
pub const workload_names = [uk.WL_COUNT][]const u8{ "default", "trusted", "minimal", "sandbox" };

/// Which capability kind a call needs, or null for the ungated capability calls.
pub fn gateOf(nr: u64) ?u32 {
    return switch (nr) {
        uk.SYS_LOG_WRITE => uk.CAP_LOG,
        uk.SYS_TIME_NOW, uk.SYS_TIME_SLEEP => uk.CAP_TIME,
        uk.SYS_TASK_YIELD, uk.SYS_TASK_ID => uk.CAP_TASK,
        uk.SYS_IO_PIPE, uk.SYS_IO_READ, uk.SYS_IO_WRITE, uk.SYS_IO_CLOSE, uk.SYS_IO_POLL => uk.CAP_IO,
        uk.SYS_NET_OPEN => uk.CAP_NET,
        uk.SYS_RANDOM_GET => uk.CAP_RANDOM,
        else => null,
    };
}

/// What the ABI needs from where it runs.
pub const Platform = struct {
    now_ns: *const fn () u64,
    /// Wait until `deadline_ns` or until something may have changed (an interrupt).
    wait_until: *const fn (deadline_ns: u64) void,
    log_write: *const fn (bytes: []const u8) void,
    /// True when [addr, addr+len) is memory the workload may hand to the kernel.
    valid_user: *const fn (addr: u64, len: u64) bool,
    /// Optional network device hook (null: no device).
    net_open: ?*const fn (port: u32) i64 = null,
};

const Slot = struct {
    gen: u32 = 1,
    kind: u8 = 0,
    used: bool = false,
    entered: bool = false,
};

const FdKind = enum(u8) { free, pipe_r, pipe_w };
const Fd = struct {
    kind: FdKind = .free,
    pipe: u8 = 0,
};

const Pipe = struct {
    buf: [uk.IO_PIPE_CAPACITY]u8 = undefined,
    head: u16 = 0,
    len: u16 = 0,
    readers: u8 = 0,
    writers: u8 = 0,
    fn inUse(p: *const Pipe) bool {
        return p.readers != 0 or p.writers != 0;
    }
};

const E = error{ Permission, BadHandle, StaleHandle, TableFull, BadPointer, BadLength, BadKind, Denied, BadFd, WouldBlock, NoSys, Invalid, NoDevice, Closed };

fn code(e: E) i64 {
    return switch (e) {
        error.Permission => uk.ERR_PERMISSION,
        error.BadHandle => uk.ERR_BAD_HANDLE,
        error.StaleHandle => uk.ERR_STALE_HANDLE,
        error.TableFull => uk.ERR_TABLE_FULL,
        error.BadPointer => uk.ERR_BAD_POINTER,
        error.BadLength => uk.ERR_BAD_LENGTH,
        error.BadKind => uk.ERR_BAD_KIND,
        error.Denied => uk.ERR_DENIED,
        error.BadFd => uk.ERR_BAD_FD,
        error.WouldBlock => uk.ERR_WOULD_BLOCK,
        error.NoSys => uk.ERR_NOSYS,
        error.Invalid => uk.ERR_INVALID,
        error.NoDevice => uk.ERR_NO_DEVICE,
        error.Closed => uk.ERR_CLOSED,
    };
}

pub const Context = struct {
    workload: u32 = uk.WL_DEFAULT,
    policy: u32 = uk.POLICY_DEFAULT,
    slots: [uk.CAP_TABLE_SIZE]Slot = @splat(.{}),
    fds: [uk.IO_MAX_FDS]Fd = @splat(.{}),
    pipes: [uk.IO_MAX_FDS / 2]Pipe = @splat(.{}),
    rng: u64 = 0x9E3779B97F4A7C15,
    task_id: u32 = 1,
    /// statistics: calls dispatched, calls denied for lack of an active capability
    calls: u64 = 0,
    denied: u64 = 0,

    /// Start a fresh workload: every handle is released (its generation moves on, so
    /// handles of the previous workload stay stale), descriptors closed, mask empty.
    pub fn reset(self: *Context, workload: u64) i64 {
        if (workload >= uk.WL_COUNT) return uk.ERR_INVALID;
        for (&self.slots) |*s| {
            if (s.used) releaseSlot(s);
        }
        self.fds = @splat(.{});
        for (&self.pipes) |*p| {
            p.head = 0;
            p.len = 0;
            p.readers = 0;
            p.writers = 0;
        }
        self.workload = @intCast(workload);
        self.policy = policies[@intCast(workload)];
        self.task_id = @as(u32, @intCast(workload)) + 1;
        return uk.OK;
    }

    pub fn activeMask(self: *const Context) u32 {
        var m: u32 = 0;
        for (self.slots) |s| {
            if (s.used and s.entered) m |= @as(u32, 1) << @intCast(s.kind);
        }
        return m;
    }

    /// The single entry point: call number + up to 5 arguments -> result (>= 0) or ERR_*.
    pub fn dispatch(self: *Context, p: *const Platform, nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) i64 {
        _ = a4;
        _ = a5;
        self.calls +%= 1;
        if (gateOf(nr)) |kind| {
            if (self.activeMask() & (@as(u32, 1) << @intCast(kind)) == 0) {
                self.denied +%= 1;
                return uk.ERR_PERMISSION;
            }
        }
        const r: E!i64 = switch (nr) {
            uk.SYS_CAP_ACQUIRE => self.capAcquire(a1),
            uk.SYS_CAP_RELEASE => self.capRelease(a1),
            uk.SYS_CAP_ENTER => self.capEnter(p, a1, a2),
            uk.SYS_CAP_ACTIVE => self.activeMask(),
            uk.SYS_CAP_KIND => self.capKind(a1),
            uk.SYS_CAP_POLICY => self.policy,
            uk.SYS_LOG_WRITE => logWrite(p, a1, a2),
            uk.SYS_TIME_NOW => @as(i64, @intCast(p.now_ns() & 0x7fffffffffffffff)),
            uk.SYS_TIME_SLEEP => timeSleep(p, a1),
            uk.SYS_TASK_YIELD => 0,
            uk.SYS_TASK_ID => self.task_id,
            uk.SYS_IO_PIPE => self.ioPipe(p, a1),
            uk.SYS_IO_READ => self.ioRead(p, a1, a2, a3),
            uk.SYS_IO_WRITE => self.ioWrite(p, a1, a2, a3),
            uk.SYS_IO_CLOSE => self.ioClose(a1),
            uk.SYS_IO_POLL => self.ioPoll(p, a1, a2, a3),
            uk.SYS_NET_OPEN => netOpen(p, a1),
            uk.SYS_RANDOM_GET => self.randomGet(p, a1, a2),
            else => error.NoSys,
        };
        return r catch |e| code(e);
    }

    // ---------------- capabilities ----------------

    fn capAcquire(self: *Context, kind: u64) E!i64 {
        if (kind < uk.CAP_KIND_MIN or kind > uk.CAP_KIND_MAX) return error.BadKind;
        if (self.policy & (@as(u32, 1) << @intCast(kind)) == 0) return error.Denied;
        for (&self.slots, 0..) |*s, i| {
            if (!s.used) {
                s.used = true;
                s.entered = false;
                s.kind = @intCast(kind);
                return (@as(i64, s.gen) << uk.HANDLE_GEN_SHIFT) | @as(i64, @intCast(i));
            }
        }
        return error.TableFull;
    }

    /// Resolve a handle to its slot index, telling forged from stale handles apart.
    pub fn resolve(self: *const Context, h: u64) E!usize {
        if (h > 0xffffffff) return error.BadHandle;
        const slot: usize = @intCast(h & uk.HANDLE_SLOT_MASK);
        const gen: u64 = h >> uk.HANDLE_GEN_SHIFT;
        if (gen == 0 or slot >= uk.CAP_TABLE_SIZE) return error.BadHandle;
        const s = self.slots[slot];
        if (s.used and s.gen == gen) return slot;
        if (gen < s.gen) return error.StaleHandle; // was issued once, since released/recycled
        return error.BadHandle; // this generation was never issued: forged
    }

    fn capRelease(self: *Context, h: u64) E!i64 {
        const i = try self.resolve(h);
        releaseSlot(&self.slots[i]);
        return uk.OK;
    }

    fn capKind(self: *Context, h: u64) E!i64 {
        const i = try self.resolve(h);
        return self.slots[i].kind;
    }

    fn capEnter(self: *Context, p: *const Platform, ptr: u64, count: u64) E!i64 {
        if (count > uk.CAP_TABLE_SIZE) return error.BadLength;
        var sel: u32 = 0; // slots to enter
        if (count > 0) {
            const bytes = try userSlice(p, ptr, count * 4);
            var k: usize = 0;
            while (k < count) : (k += 1) {
                const h = std.mem.readInt(u32, bytes[k * 4 ..][0..4], .little);
                const i = try self.resolve(h);
                sel |= @as(u32, 1) << @intCast(i);
            }
        }
        // all handles valid: the set is replaced atomically
        for (&self.slots, 0..) |*s, i| {
            s.entered = s.used and (sel & (@as(u32, 1) << @intCast(i))) != 0;
        }
        return self.activeMask();
    }

    // ---------------- gated calls ----------------

    fn logWrite(p: *const Platform, ptr: u64, len: u64) E!i64 {
        if (len > uk.LOG_MAX) return error.BadLength;
        if (len == 0) return 0;
        const bytes = try userSlice(p, ptr, len);
        p.log_write(bytes);
        return @intCast(len);
    }

    fn timeSleep(p: *const Platform, ns: u64) E!i64 {
        if (ns > uk.TIME_SLEEP_MAX_NS) return error.Invalid;
        const deadline = p.now_ns() + ns;
        while (p.now_ns() < deadline) p.wait_until(deadline);
        return 0;
    }

    fn netOpen(p: *const Platform, port: u64) E!i64 {
        if (port == 0 or port > 65535) return error.Invalid;
        if (p.net_open) |f| return f(@intCast(port));
        return error.NoDevice;
    }

    fn randomGet(self: *Context, p: *const Platform, ptr: u64, len: u64) E!i64 {
        if (len > uk.RANDOM_MAX) return error.BadLength;
        if (len == 0) return 0;
        const bytes = try userSlice(p, ptr, len);
        if (self.rng == 0x9E3779B97F4A7C15) self.rng ^= p.now_ns() | 1;
        for (bytes) |*b| {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            b.* = @truncate((self.rng *% 0x2545F4914F6CDD1D) >> 56);
        }
        return @intCast(len);
    }

    // ---------------- I/O: in-kernel pipes + io_poll ----------------

    fn fdAt(self: *Context, fd: u64) E!*Fd {
        if (fd >= uk.IO_MAX_FDS) return error.BadFd;
        const f = &self.fds[@intCast(fd)];
        if (f.kind == .free) return error.BadFd;
        return f;
    }

    fn ioPipe(self: *Context, p: *const Platform, ptr: u64) E!i64 {
        const out = try userSlice(p, ptr, 8);
        var rd: ?usize = null;
        var wr: ?usize = null;
        for (self.fds, 0..) |f, i| {
            if (f.kind != .free) continue;
            if (rd == null) rd = i else if (wr == null) {
                wr = i;
                break;
            }
        }
        var pi: ?usize = null;
        for (self.pipes, 0..) |pp, i| {
            if (!pp.inUse()) {
                pi = i;
                break;
            }
        }
        if (rd == null or wr == null or pi == null) return error.TableFull;
        const pipe = &self.pipes[pi.?];
        pipe.* = .{ .readers = 1, .writers = 1 };
        self.fds[rd.?] = .{ .kind = .pipe_r, .pipe = @intCast(pi.?) };
        self.fds[wr.?] = .{ .kind = .pipe_w, .pipe = @intCast(pi.?) };
        std.mem.writeInt(i32, out[0..4], @intCast(rd.?), .little);
        std.mem.writeInt(i32, out[4..8], @intCast(wr.?), .little);
        return uk.OK;
    }

    fn ioRead(self: *Context, p: *const Platform, fd: u64, ptr: u64, len: u64) E!i64 {
        const f = try self.fdAt(fd);
        if (f.kind != .pipe_r) return error.Invalid;
        if (len > uk.IO_RW_MAX) return error.BadLength;
        if (len == 0) return 0;
        const dst = try userSlice(p, ptr, len);
        const pipe = &self.pipes[f.pipe];
        if (pipe.len == 0) {
            if (pipe.writers == 0) return 0; // EOF
            return error.WouldBlock;
        }
        const n: usize = @min(dst.len, pipe.len);
        var k: usize = 0;
        while (k < n) : (k += 1) {
            dst[k] = pipe.buf[(pipe.head + k) % uk.IO_PIPE_CAPACITY];
        }
        pipe.head = @intCast((pipe.head + n) % uk.IO_PIPE_CAPACITY);
        pipe.len -= @intCast(n);
        return @intCast(n);
    }

    fn ioWrite(self: *Context, p: *const Platform, fd: u64, ptr: u64, len: u64) E!i64 {
        const f = try self.fdAt(fd);
        if (f.kind != .pipe_w) return error.Invalid;
        if (len > uk.IO_RW_MAX) return error.BadLength;
        if (len == 0) return 0;
        const src = try userSlice(p, ptr, len);
        const pipe = &self.pipes[f.pipe];
        if (pipe.readers == 0) return error.Closed;
        const free = uk.IO_PIPE_CAPACITY - @as(usize, pipe.len);
        if (free == 0) return error.WouldBlock;
        const n: usize = @min(src.len, free);
        var k: usize = 0;
        while (k < n) : (k += 1) {
            pipe.buf[(pipe.head + pipe.len + k) % uk.IO_PIPE_CAPACITY] = src[k];
        }
        pipe.len += @intCast(n);
        return @intCast(n);
    }

    fn ioClose(self: *Context, fd: u64) E!i64 {
        const f = try self.fdAt(fd);
        const pipe = &self.pipes[f.pipe];
        switch (f.kind) {
            .pipe_r => pipe.readers -= 1,
            .pipe_w => pipe.writers -= 1,
            .free => unreachable,
        }
        f.* = .{};
        return uk.OK;
    }

    fn revents(self: *Context, fd: i32, events: u16) u16 {
        if (fd < 0) return 0;
        const f = self.fdAt(@intCast(fd)) catch return uk.POLLNVAL;
        const pipe = &self.pipes[f.pipe];
        var r: u16 = 0;
        switch (f.kind) {
            .pipe_r => {
                if (pipe.len > 0) r |= uk.POLLIN;
                if (pipe.writers == 0) r |= uk.POLLHUP;
            },
            .pipe_w => {
                if (pipe.readers == 0) {
                    r |= uk.POLLERR;
                } else if (pipe.len < uk.IO_PIPE_CAPACITY) r |= uk.POLLOUT;
            },
            .free => unreachable,
        }
        return r & (events | uk.POLLHUP | uk.POLLERR | uk.POLLNVAL);
    }

    fn ioPoll(self: *Context, p: *const Platform, ptr: u64, count: u64, timeout: u64) E!i64 {
        if (count > uk.IO_POLL_MAX) return error.BadLength;
        const t: i64 = @bitCast(timeout);
        if (t > uk.IO_POLL_TIMEOUT_MAX_NS) return error.Invalid;
        const arr: []u8 = if (count > 0) try userSlice(p, ptr, count * uk.POLLFD_SIZE) else &.{};
        const start = p.now_ns();
        while (true) {
            var n: i64 = 0;
            var k: usize = 0;
            while (k < count) : (k += 1) {
                const e = arr[k * 8 ..][0..8];
                const fd = std.mem.readInt(i32, e[0..4], .little);
                const ev = std.mem.readInt(u16, e[4..6], .little);
                const rv = self.revents(fd, ev);
                std.mem.writeInt(u16, e[6..8], rv, .little);
                if (rv != 0) n += 1;
            }
            if (n > 0 or t == 0) return n;
            // A single task cannot make its own descriptors ready while it waits:
            // an infinite wait with nothing ready would never return.
            if (t < 0) return error.WouldBlock;
            const deadline = start + @as(u64, @intCast(t));
            if (p.now_ns() >= deadline) return 0;
            p.wait_until(deadline);
        }
    }
};

fn releaseSlot(s: *Slot) void {
    s.used = false;
    s.entered = false;
    s.kind = 0;
    s.gen = if (s.gen >= uk.HANDLE_GEN_MAX) 1 else s.gen + 1;
}

fn userSlice(p: *const Platform, ptr: u64, len: u64) E![]u8 {
    if (ptr == 0) return error.BadPointer;
    if (ptr +% len < ptr) return error.BadPointer;
    if (!p.valid_user(ptr, len)) return error.BadPointer;
    const base: [*]u8 = @ptrFromInt(@as(usize, @intCast(ptr)));
    return base[0..@intCast(len)];
}

// ====================================================================================
// Unit tests (zig build test): a fake platform over a local "user memory" arena.
// ====================================================================================

const testing = std.testing;

var t_clock: u64 = 1000;
var t_mem: [4096]u8 align(8) = undefined;
var t_log: [4096]u8 = undefined;
var t_log_len: usize = 0;

fn tNow() u64 {
    return t_clock;
}
fn tWait(deadline: u64) void {
    if (deadline > t_clock) t_clock = deadline;
}
fn tLog(b: []const u8) void {
    @memcpy(t_log[t_log_len..][0..b.len], b);
    t_log_len += b.len;
}
fn tValid(addr: u64, len: u64) bool {
    const lo: u64 = @intFromPtr(&t_mem);
    return addr >= lo and addr + len <= lo + t_mem.len;
}
const tplat = Platform{ .now_ns = tNow, .wait_until = tWait, .log_write = tLog, .valid_user = tValid };

fn call(c: *Context, nr: u64, a1: u64, a2: u64, a3: u64) i64 {
    return c.dispatch(&tplat, nr, a1, a2, a3, 0, 0);
}
fn mem(off: usize) u64 {
    return @intFromPtr(&t_mem) + off;
}
fn putHandles(hs: []const i64) u64 {
    for (hs, 0..) |h, i| std.mem.writeInt(u32, t_mem[i * 4 ..][0..4], @intCast(h), .little);
    return mem(0);
}

test "starts with no capability active; gated calls denied" {
    var c = Context{};
    _ = c.reset(uk.WL_DEFAULT);
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_CAP_ACTIVE, 0, 0, 0));
    const gated = [_]u64{ uk.SYS_LOG_WRITE, uk.SYS_TIME_NOW, uk.SYS_TIME_SLEEP, uk.SYS_TASK_YIELD, uk.SYS_TASK_ID, uk.SYS_IO_PIPE, uk.SYS_IO_READ, uk.SYS_IO_WRITE, uk.SYS_IO_CLOSE, uk.SYS_IO_POLL, uk.SYS_NET_OPEN, uk.SYS_RANDOM_GET };
    for (gated) |nr| try testing.expectEqual(@as(i64, uk.ERR_PERMISSION), call(&c, nr, 0, 0, 0));
}

test "acquire, enter, use, release" {
    var c = Context{};
    _ = c.reset(uk.WL_DEFAULT);
    const h = call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_LOG, 0, 0);
    try testing.expect(h > 0);
    // acquired but not entered: still denied
    try testing.expectEqual(@as(i64, uk.ERR_PERMISSION), call(&c, uk.SYS_LOG_WRITE, mem(64), 2, 0));
    try testing.expectEqual(@as(i64, 1 << uk.CAP_LOG), call(&c, uk.SYS_CAP_ENTER, putHandles(&.{h}), 1, 0));
    @memcpy(t_mem[64..66], "hi");
    t_log_len = 0;
    try testing.expectEqual(@as(i64, 2), call(&c, uk.SYS_LOG_WRITE, mem(64), 2, 0));
    try testing.expectEqualStrings("hi", t_log[0..t_log_len]);
    try testing.expectEqual(@as(i64, uk.CAP_LOG), call(&c, uk.SYS_CAP_KIND, @intCast(h), 0, 0));
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_CAP_RELEASE, @intCast(h), 0, 0));
    // released: mask drops, handle stale
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_CAP_ACTIVE, 0, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_STALE_HANDLE), call(&c, uk.SYS_CAP_RELEASE, @intCast(h), 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_PERMISSION), call(&c, uk.SYS_LOG_WRITE, mem(64), 2, 0));
}

test "stale after recycle, forged, bad kind, policy" {
    var c = Context{};
    _ = c.reset(uk.WL_DEFAULT);
    const h1 = call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_TIME, 0, 0);
    _ = call(&c, uk.SYS_CAP_RELEASE, @intCast(h1), 0, 0);
    const h2 = call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_TIME, 0, 0);
    try testing.expectEqual(h1 & 0xff, h2 & 0xff); // same slot recycled
    try testing.expect(h1 != h2);
    try testing.expectEqual(@as(i64, uk.ERR_STALE_HANDLE), call(&c, uk.SYS_CAP_KIND, @intCast(h1), 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_HANDLE), call(&c, uk.SYS_CAP_KIND, @intCast(h2 + (1 << 8)), 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_HANDLE), call(&c, uk.SYS_CAP_KIND, 0, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_HANDLE), call(&c, uk.SYS_CAP_KIND, (1 << 8) | 200, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_HANDLE), call(&c, uk.SYS_CAP_KIND, 1 << 40, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_KIND), call(&c, uk.SYS_CAP_ACQUIRE, 0, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_KIND), call(&c, uk.SYS_CAP_ACQUIRE, 99, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_DENIED), call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_NET, 0, 0));
    _ = c.reset(uk.WL_SANDBOX);
    try testing.expectEqual(@as(i64, uk.ERR_DENIED), call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_LOG, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_STALE_HANDLE), call(&c, uk.SYS_CAP_KIND, @intCast(h2), 0, 0));
}

test "table exhaustion and recovery" {
    var c = Context{};
    _ = c.reset(uk.WL_DEFAULT);
    var hs: [uk.CAP_TABLE_SIZE]i64 = undefined;
    for (&hs) |*h| {
        h.* = call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_LOG, 0, 0);
        try testing.expect(h.* > 0);
    }
    try testing.expectEqual(@as(i64, uk.ERR_TABLE_FULL), call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_IO, 0, 0));
    _ = call(&c, uk.SYS_CAP_RELEASE, @intCast(hs[5]), 0, 0);
    try testing.expect(call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_IO, 0, 0) > 0);
}

test "cap_enter validates pointer, length and every handle atomically" {
    var c = Context{};
    _ = c.reset(uk.WL_DEFAULT);
    const h = call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_LOG, 0, 0);
    try testing.expectEqual(@as(i64, uk.ERR_BAD_POINTER), call(&c, uk.SYS_CAP_ENTER, 0, 1, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_POINTER), call(&c, uk.SYS_CAP_ENTER, 0x10, 1, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_LENGTH), call(&c, uk.SYS_CAP_ENTER, mem(0), 17, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_HANDLE), call(&c, uk.SYS_CAP_ENTER, putHandles(&.{ h, 12345 << 8 }), 2, 0));
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_CAP_ACTIVE, 0, 0, 0));
    try testing.expectEqual(@as(i64, 1 << uk.CAP_LOG), call(&c, uk.SYS_CAP_ENTER, putHandles(&.{h}), 1, 0));
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_CAP_ENTER, 0, 0, 0)); // drop all
}

test "io pipe, poll readiness and timeouts" {
    var c = Context{};
    _ = c.reset(uk.WL_DEFAULT);
    const hi = call(&c, uk.SYS_CAP_ACQUIRE, uk.CAP_IO, 0, 0);
    _ = call(&c, uk.SYS_CAP_ENTER, putHandles(&.{hi}), 1, 0);
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_IO_PIPE, mem(16), 0, 0));
    const rd = std.mem.readInt(i32, t_mem[16..20], .little);
    const wr = std.mem.readInt(i32, t_mem[20..24], .little);
    // poll read end: nothing ready; timeout advances the fake clock
    std.mem.writeInt(i32, t_mem[32..36], rd, .little);
    std.mem.writeInt(u16, t_mem[36..38], uk.POLLIN, .little);
    const before = t_clock;
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_IO_POLL, mem(32), 1, 5000));
    try testing.expect(t_clock >= before + 5000);
    try testing.expectEqual(@as(i64, uk.ERR_WOULD_BLOCK), call(&c, uk.SYS_IO_POLL, mem(32), 1, @bitCast(@as(i64, -1))));
    try testing.expectEqual(@as(i64, uk.ERR_WOULD_BLOCK), call(&c, uk.SYS_IO_READ, @intCast(rd), mem(100), 10));
    @memcpy(t_mem[200..205], "hello");
    try testing.expectEqual(@as(i64, 5), call(&c, uk.SYS_IO_WRITE, @intCast(wr), mem(200), 5));
    try testing.expectEqual(@as(i64, 1), call(&c, uk.SYS_IO_POLL, mem(32), 1, 0));
    try testing.expectEqual(@as(u16, uk.POLLIN), std.mem.readInt(u16, t_mem[38..40], .little));
    try testing.expectEqual(@as(i64, 5), call(&c, uk.SYS_IO_READ, @intCast(rd), mem(100), 10));
    try testing.expectEqualStrings("hello", t_mem[100..105]);
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_IO_CLOSE, @intCast(wr), 0, 0));
    try testing.expectEqual(@as(i64, 1), call(&c, uk.SYS_IO_POLL, mem(32), 1, 0));
    try testing.expectEqual(@as(u16, uk.POLLHUP), std.mem.readInt(u16, t_mem[38..40], .little));
    try testing.expectEqual(@as(i64, 0), call(&c, uk.SYS_IO_READ, @intCast(rd), mem(100), 10)); // EOF
    try testing.expectEqual(@as(i64, uk.ERR_BAD_FD), call(&c, uk.SYS_IO_CLOSE, @intCast(wr), 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_BAD_LENGTH), call(&c, uk.SYS_IO_POLL, mem(32), 33, 0));
}

test "unknown call numbers" {
    var c = Context{};
    try testing.expectEqual(@as(i64, uk.ERR_NOSYS), call(&c, 999, 0, 0, 0));
    try testing.expectEqual(@as(i64, uk.ERR_NOSYS), call(&c, uk.SYS_SV_EXIT, 0, 0, 0));
}
