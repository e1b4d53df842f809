/* ukernel_abi.h: the zigu capability ABI for C workloads and FFI bindings.
 *
 * Mirror of guests/zigu/kernel/abi.zig (namespace `uk`): every UK_* constant here equals
 * the Zig constant of the same name; tests/zigu/test_header_sync.py checks both directions
 * against the constant table exported by libzigu_abi.so (built from that same file).
 * Prose specification: docs/zigu-abi.md.
 *
 * Results: every call returns int64_t; >= 0 is success, < 0 is one of UK_ERR_*.
 * Handles: uint32_t, (generation << UK_HANDLE_GEN_SHIFT) | slot; 0 is never a handle.
 * Gating: a call marked [KIND] returns UK_ERR_PERMISSION unless a live handle of KIND has
 * been activated with uk_cap_enter(); that check comes before any argument check.
 */
#ifndef UKERNEL_ABI_H
#define UKERNEL_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UK_ABI_VERSION               1
#define UK_CAP_LOG                   1
#define UK_CAP_TIME                  2
#define UK_CAP_TASK                  3
#define UK_CAP_IO                    4
#define UK_CAP_NET                   5
#define UK_CAP_RANDOM                6
#define UK_CAP_KIND_MIN              1
#define UK_CAP_KIND_MAX              6
#define UK_CAP_TABLE_SIZE            16
#define UK_HANDLE_GEN_SHIFT          8
#define UK_HANDLE_SLOT_MASK          0xff
#define UK_HANDLE_GEN_MAX            0xffffff
#define UK_OK                        0
#define UK_ERR_PERMISSION            (-1)  /* capability kind of a gated call is not active */
#define UK_ERR_BAD_HANDLE            (-2)  /* malformed, out of range, or never issued (forged) */
#define UK_ERR_STALE_HANDLE          (-3)  /* released, or its slot was recycled */
#define UK_ERR_TABLE_FULL            (-4)  /* no free capability slot (or I/O descriptor) */
#define UK_ERR_BAD_POINTER           (-5)  /* null / outside workload memory / overflowing */
#define UK_ERR_BAD_LENGTH            (-6)  /* length or count out of bounds */
#define UK_ERR_BAD_KIND              (-7)  /* not a capability kind */
#define UK_ERR_DENIED                (-8)  /* the workload policy forbids acquiring this kind */
#define UK_ERR_BAD_FD                (-9)  /* not an open I/O descriptor */
#define UK_ERR_WOULD_BLOCK           (-10)  /* not ready (or would block forever) */
#define UK_ERR_NOSYS                 (-11)  /* unknown call number */
#define UK_ERR_INVALID               (-12)  /* other invalid argument */
#define UK_ERR_NO_DEVICE             (-13)  /* capability granted but no such device here */
#define UK_ERR_CLOSED                (-14)  /* peer end closed */
#define UK_SYS_CAP_ACQUIRE           1  /* (kind) -> handle */
#define UK_SYS_CAP_RELEASE           2  /* (handle) -> 0 */
#define UK_SYS_CAP_ENTER             3  /* (const u32 *handles, count) -> new active mask */
#define UK_SYS_CAP_ACTIVE            4  /* () -> active mask */
#define UK_SYS_CAP_KIND              5  /* (handle) -> kind */
#define UK_SYS_CAP_POLICY            6  /* () -> mask of kinds the workload may acquire */
#define UK_SYS_LOG_WRITE             16  /* [LOG] (buf, len) -> len */
#define UK_SYS_TIME_NOW              17  /* [TIME] () -> monotonic ns */
#define UK_SYS_TIME_SLEEP            18  /* [TIME] (ns) -> 0 */
#define UK_SYS_TASK_YIELD            19  /* [TASK] () -> 0 */
#define UK_SYS_TASK_ID               20  /* [TASK] () -> task id */
#define UK_SYS_IO_PIPE               21  /* [IO] (int32 fds[2]) -> 0 */
#define UK_SYS_IO_READ               22  /* [IO] (fd, buf, len) -> bytes (0 = EOF) */
#define UK_SYS_IO_WRITE              23  /* [IO] (fd, buf, len) -> bytes */
#define UK_SYS_IO_CLOSE              24  /* [IO] (fd) -> 0 */
#define UK_SYS_IO_POLL               25  /* [IO] (uk_pollfd *fds, count, timeout_ns) -> ready count */
#define UK_SYS_NET_OPEN              26  /* [NET] (port) -> fd */
#define UK_SYS_RANDOM_GET            27  /* [RANDOM] (buf, len) -> len */
#define UK_SYS_SV_CONSOLE_WRITE      64  /* (buf, len) -> len */
#define UK_SYS_SV_CONSOLE_READ       65  /* (buf, len) -> bytes (blocks until >= 1) */
#define UK_SYS_SV_RESET              66  /* (workload) -> 0: start a fresh workload context */
#define UK_SYS_SV_EXIT               67  /* (status) -> does not return */
#define UK_SYS_SV_STATS              68  /* (which) -> counter */
#define UK_SYS_SV_AGENT              69  /* (op, a, b, c, out) -> value: agent protocol primitives */
#define UK_WL_DEFAULT                0
#define UK_WL_TRUSTED                1
#define UK_WL_MINIMAL                2
#define UK_WL_SANDBOX                3
#define UK_WL_COUNT                  4
#define UK_POLICY_DEFAULT            94  /* LOG|TIME|TASK|IO|RANDOM (bit = 1 << kind) */
#define UK_POLICY_TRUSTED            126  /* every kind */
#define UK_POLICY_MINIMAL            2  /* LOG only */
#define UK_POLICY_SANDBOX            0  /* nothing */
#define UK_LOG_MAX                   1024
#define UK_RANDOM_MAX                4096
#define UK_IO_MAX_FDS                16
#define UK_IO_PIPE_CAPACITY          512
#define UK_IO_RW_MAX                 65536
#define UK_IO_POLL_MAX               32
#define UK_IO_POLL_TIMEOUT_MAX_NS    60000000000
#define UK_TIME_SLEEP_MAX_NS         10000000000
#define UK_POLLIN                    0x1
#define UK_POLLOUT                   0x4
#define UK_POLLERR                   0x8
#define UK_POLLHUP                   0x10
#define UK_POLLNVAL                  0x20
#define UK_POLLFD_SIZE               8  /* sizeof(struct uk_pollfd) */

/* io_poll descriptor (UK_POLLFD_SIZE bytes, little endian, no alignment requirement) */
struct uk_pollfd {
    int32_t fd;        /* < 0: ignored (revents 0) */
    uint16_t events;   /* UK_POLLIN | UK_POLLOUT */
    uint16_t revents;  /* set by io_poll; UK_POLLHUP/ERR/NVAL are always reported */
};

typedef char uk_pollfd_size_check[(sizeof(struct uk_pollfd) == UK_POLLFD_SIZE) ? 1 : -1];

#ifdef UK_GUEST
/* In the guest: trap into the kernel. The portable gate is `ud2` from ring 3 (PVM does not
 * deliver `syscall`/`int 0x80` from guest ring 3); rax = number, rdi rsi rdx r10 r8 = args. */
static inline int64_t uk_syscall(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3,
                                 uint64_t a4, uint64_t a5) {
    register uint64_t r10 __asm__("r10") = a4;
    register uint64_t r8 __asm__("r8") = a5;
    int64_t ret;
    __asm__ volatile("ud2" : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8)
                     : "memory");
    return ret;
}
#define UK_CALL_(nr, a1, a2, a3) uk_syscall((nr), (uint64_t)(a1), (uint64_t)(a2), (uint64_t)(a3), 0, 0)
static inline int64_t uk_cap_acquire(uint32_t kind) { return UK_CALL_(UK_SYS_CAP_ACQUIRE, kind, 0, 0); }
static inline int64_t uk_cap_release(uint32_t h) { return UK_CALL_(UK_SYS_CAP_RELEASE, h, 0, 0); }
static inline int64_t uk_cap_enter(const uint32_t *hs, uint32_t n) { return UK_CALL_(UK_SYS_CAP_ENTER, (uintptr_t)hs, n, 0); }
static inline int64_t uk_cap_active(void) { return UK_CALL_(UK_SYS_CAP_ACTIVE, 0, 0, 0); }
static inline int64_t uk_cap_kind(uint32_t h) { return UK_CALL_(UK_SYS_CAP_KIND, h, 0, 0); }
static inline int64_t uk_cap_policy(void) { return UK_CALL_(UK_SYS_CAP_POLICY, 0, 0, 0); }
static inline int64_t uk_log_write(const void *b, uint64_t n) { return UK_CALL_(UK_SYS_LOG_WRITE, (uintptr_t)b, n, 0); }
static inline int64_t uk_time_now(void) { return UK_CALL_(UK_SYS_TIME_NOW, 0, 0, 0); }
static inline int64_t uk_time_sleep(uint64_t ns) { return UK_CALL_(UK_SYS_TIME_SLEEP, ns, 0, 0); }
static inline int64_t uk_task_yield(void) { return UK_CALL_(UK_SYS_TASK_YIELD, 0, 0, 0); }
static inline int64_t uk_task_id(void) { return UK_CALL_(UK_SYS_TASK_ID, 0, 0, 0); }
static inline int64_t uk_io_pipe(int32_t fds[2]) { return UK_CALL_(UK_SYS_IO_PIPE, (uintptr_t)fds, 0, 0); }
static inline int64_t uk_io_read(int32_t fd, void *b, uint64_t n) { return UK_CALL_(UK_SYS_IO_READ, (int64_t)fd, (uintptr_t)b, n); }
static inline int64_t uk_io_write(int32_t fd, const void *b, uint64_t n) { return UK_CALL_(UK_SYS_IO_WRITE, (int64_t)fd, (uintptr_t)b, n); }
static inline int64_t uk_io_close(int32_t fd) { return UK_CALL_(UK_SYS_IO_CLOSE, (int64_t)fd, 0, 0); }
static inline int64_t uk_io_poll(struct uk_pollfd *fds, uint32_t n, int64_t timeout_ns) { return UK_CALL_(UK_SYS_IO_POLL, (uintptr_t)fds, n, timeout_ns); }
static inline int64_t uk_net_open(uint32_t port) { return UK_CALL_(UK_SYS_NET_OPEN, port, 0, 0); }
static inline int64_t uk_random_get(void *b, uint64_t n) { return UK_CALL_(UK_SYS_RANDOM_GET, (uintptr_t)b, n, 0); }
#else
/* On the host: libzigu_abi.so (kernel/abi.zig built with `zig build`) exports these. */
int64_t uk_syscall(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
int64_t uk_cap_acquire(uint32_t kind);
int64_t uk_cap_release(uint32_t handle);
int64_t uk_cap_enter(const uint32_t *handles, uint32_t count);
int64_t uk_cap_active(void);
int64_t uk_cap_kind(uint32_t handle);
int64_t uk_cap_policy(void);
int64_t uk_log_write(const void *buf, uint64_t len);          /* [LOG] */
int64_t uk_time_now(void);                                     /* [TIME] */
int64_t uk_time_sleep(uint64_t ns);                            /* [TIME] */
int64_t uk_task_yield(void);                                   /* [TASK] */
int64_t uk_task_id(void);                                      /* [TASK] */
int64_t uk_io_pipe(int32_t fds[2]);                            /* [IO] */
int64_t uk_io_read(int32_t fd, void *buf, uint64_t len);       /* [IO] */
int64_t uk_io_write(int32_t fd, const void *buf, uint64_t len);/* [IO] */
int64_t uk_io_close(int32_t fd);                               /* [IO] */
int64_t uk_io_poll(struct uk_pollfd *fds, uint32_t count, int64_t timeout_ns); /* [IO] */
int64_t uk_net_open(uint32_t port);                            /* [NET] */
int64_t uk_random_get(void *buf, uint64_t len);                /* [RANDOM] */
/* host harness only */
int64_t uk_host_reset(uint32_t workload);
void uk_host_set_user_range(uint64_t lo, uint64_t hi);
uint64_t uk_host_log_take(void *buf, uint64_t cap);
uint64_t uk_host_stats(uint32_t which);
int64_t uk_host_bench(uint64_t count, uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3);
uint32_t uk_const_count(void);
int32_t uk_const_at(uint32_t i, const char **name, int64_t *value);
#endif

#ifdef __cplusplus
}
#endif
#endif /* UKERNEL_ABI_H */
