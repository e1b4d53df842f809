"""ctypes bindings to the zigu capability ABI (libzigu_abi.so = kernel/abi.zig built for the host).

The constants are not re-typed here: they are read from the library's constant table
(``uk_const_at``), which is generated at compile time from ``abi.zig``'s ``uk`` namespace.
So ``UK.ERR_PERMISSION`` here, ``UK_ERR_PERMISSION`` in include/ukernel_abi.h and
``uk.ERR_PERMISSION`` in Zig are one value.

Two backends offer the same methods (raw integer results, never exceptions):
  * ``HostAbi``  - calls the library in-process (fast: fuzzing, the asyncio adapter);
  * ``ukernel_channel.GuestAbi`` - asks the running kernel over the serial ABI channel.
``check(rc)`` turns an error code into ``UkError`` when a caller prefers exceptions.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
ZIGU_DIR = HERE.parent.parent  # guests/zigu
DEFAULT_LIB = ZIGU_DIR / "zig-out" / "lib" / "libzigu_abi.so"

_lib: ctypes.CDLL | None = None
UK = SimpleNamespace()  # UK.CAP_LOG, UK.ERR_PERMISSION, ... (filled by load())
ERROR_NAMES: dict[int, str] = {}
KIND_NAMES: dict[int, str] = {}


class UkError(OSError):
    def __init__(self, code: int, what: str = ""):
        self.code = code
        self.name = ERROR_NAMES.get(code, f"ERR_{code}")
        super().__init__(code, f"{what + ': ' if what else ''}{self.name} ({code})")


def check(rc: int, what: str = "") -> int:
    if rc < 0:
        raise UkError(rc, what)
    return rc


def build_library() -> Path:
    """`zig build` in guests/zigu (used when no library was built yet)."""
    subprocess.run([sys.executable, "-m", "ziglang", "build"], cwd=ZIGU_DIR, check=True)
    return DEFAULT_LIB


def library_path() -> Path:
    env = os.environ.get("ZIGU_ABI_LIB")
    if env:
        return Path(env)
    if DEFAULT_LIB.exists():
        return DEFAULT_LIB
    return build_library()


def load(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Load (once) the host ABI library and publish its constants in ``UK``."""
    global _lib
    if _lib is not None and path is None:
        return _lib
    lib = ctypes.CDLL(str(path or library_path()))
    i64, u64, u32, i32 = ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int32
    vp = ctypes.c_void_p
    sigs = {
        "uk_syscall": (i64, [u64] * 6),
        "uk_cap_acquire": (i64, [u32]),
        "uk_cap_release": (i64, [u32]),
        "uk_cap_enter": (i64, [vp, u32]),
        "uk_cap_active": (i64, []),
        "uk_cap_kind": (i64, [u32]),
        "uk_cap_policy": (i64, []),
        "uk_log_write": (i64, [vp, u64]),
        "uk_time_now": (i64, []),
        "uk_time_sleep": (i64, [u64]),
        "uk_task_yield": (i64, []),
        "uk_task_id": (i64, []),
        "uk_io_pipe": (i64, [vp]),
        "uk_io_read": (i64, [i32, vp, u64]),
        "uk_io_write": (i64, [i32, vp, u64]),
        "uk_io_close": (i64, [i32]),
        "uk_io_poll": (i64, [vp, u32, i64]),
        "uk_net_open": (i64, [u32]),
        "uk_random_get": (i64, [vp, u64]),
        "uk_host_reset": (i64, [u32]),
        "uk_host_set_user_range": (None, [u64, u64]),
        "uk_host_log_take": (u64, [vp, u64]),
        "uk_host_stats": (u64, [u32]),
        "uk_host_bench": (i64, [u64, u64, u64, u64, u64]),
        "uk_const_count": (u32, []),
        "uk_const_at": (i32, [u32, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(i64)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    for name, value in constants(lib).items():
        setattr(UK, name[3:], value)
    ERROR_NAMES.clear()
    KIND_NAMES.clear()
    for k, v in vars(UK).items():
        if k.startswith("ERR_"):
            ERROR_NAMES[v] = k
        elif k.startswith("CAP_") and not k.startswith(("CAP_KIND_", "CAP_TABLE")):
            KIND_NAMES[v] = k[4:]
    ERROR_NAMES[0] = "OK"
    _lib = lib
    return lib


def constants(lib: ctypes.CDLL | None = None) -> dict[str, int]:
    """Every UK_* constant of abi.zig, as exported by the library."""
    lib = lib or load()
    out: dict[str, int] = {}
    name, value = ctypes.c_char_p(), ctypes.c_int64()
    for i in range(lib.uk_const_count()):
        lib.uk_const_at(i, ctypes.byref(name), ctypes.byref(value))
        out[name.value.decode()] = value.value
    return out


class PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int32), ("events", ctypes.c_uint16), ("revents", ctypes.c_uint16)]


def _addr(buf) -> int:
    return ctypes.addressof(buf)


class HostAbi:
    """The ABI in-process. One library = one global kernel context: use one HostAbi at a time."""

    name = "host"

    def __init__(self, path: str | os.PathLike | None = None):
        self.lib = load(path)
        self._scratch = ctypes.create_string_buffer(8192)

    # --- harness ---
    def reset(self, workload: int = 0) -> int:
        self.lib.uk_host_set_user_range(0x10000, 0x0000_8000_0000_0000)
        return self.lib.uk_host_reset(workload)

    def bad_pointers(self) -> list[int]:
        """Pointer values the ABI must reject with ERR_BAD_POINTER on this backend."""
        return [0, 0x10, 0xFFFF_8000_0000_0000, 0xFFFF_FFFF_FFFF_FFF0]

    def scratch(self, off: int = 0) -> int:
        return _addr(self._scratch) + off

    def poke(self, off: int, data: bytes) -> None:
        ctypes.memmove(self.scratch(off), data, len(data))

    def peek(self, off: int, n: int) -> bytes:
        return ctypes.string_at(self.scratch(off), n)

    def log_take(self) -> bytes:
        buf = ctypes.create_string_buffer(65536)
        n = self.lib.uk_host_log_take(buf, len(buf))
        return buf.raw[:n]

    def stats(self) -> dict[str, int]:
        return {"calls": self.lib.uk_host_stats(0), "denied": self.lib.uk_host_stats(1)}

    # --- the ABI (raw results) ---
    def syscall(self, nr: int, *args: int) -> int:
        a = [int(x) & 0xFFFF_FFFF_FFFF_FFFF for x in args] + [0] * (5 - len(args))
        return self.lib.uk_syscall(nr, *a[:5])

    def acquire(self, kind: int) -> int:
        return self.syscall(UK.SYS_CAP_ACQUIRE, kind)

    def release(self, handle: int) -> int:
        return self.syscall(UK.SYS_CAP_RELEASE, handle)

    def kind(self, handle: int) -> int:
        return self.syscall(UK.SYS_CAP_KIND, handle)

    def active(self) -> int:
        return self.lib.uk_cap_active()

    def policy(self) -> int:
        return self.lib.uk_cap_policy()

    def enter(self, handles: list[int]) -> int:
        arr = (ctypes.c_uint32 * max(1, len(handles)))(*[h & 0xFFFFFFFF for h in handles])
        return self.lib.uk_cap_enter(arr if handles else None, len(handles))

    def log(self, data: bytes) -> int:
        return self.lib.uk_log_write(data, len(data)) if data else self.lib.uk_log_write(self.scratch(), 0)

    def now(self) -> int:
        return self.lib.uk_time_now()

    def sleep(self, ns: int) -> int:
        return self.lib.uk_time_sleep(ns)

    def yield_(self) -> int:
        return self.lib.uk_task_yield()

    def task_id(self) -> int:
        return self.lib.uk_task_id()

    def pipe(self) -> tuple[int, int, int]:
        fds = (ctypes.c_int32 * 2)(-1, -1)
        rc = self.lib.uk_io_pipe(fds)
        return rc, fds[0], fds[1]

    def read(self, fd: int, n: int) -> tuple[int, bytes]:
        buf = ctypes.create_string_buffer(max(1, min(n, 1 << 17)))
        rc = self.lib.uk_io_read(fd, buf, n if n <= len(buf) else n)
        return rc, (buf.raw[:rc] if rc > 0 else b"")

    def write(self, fd: int, data: bytes) -> int:
        return self.lib.uk_io_write(fd, data if data else self.scratch(), len(data))

    def close(self, fd: int) -> int:
        return self.lib.uk_io_close(fd)

    def poll(self, items: list[tuple[int, int]], timeout_ns: int) -> tuple[int, list[int]]:
        arr = (PollFd * max(1, len(items)))()
        for i, (fd, ev) in enumerate(items):
            arr[i].fd, arr[i].events, arr[i].revents = fd, ev, 0
        rc = self.lib.uk_io_poll(arr if items else None, len(items), timeout_ns)
        return rc, [arr[i].revents for i in range(len(items))]

    def net_open(self, port: int) -> int:
        return self.lib.uk_net_open(port)

    def random(self, n: int) -> tuple[int, bytes]:
        buf = ctypes.create_string_buffer(max(1, min(n, 8192)))
        rc = self.lib.uk_random_get(buf, n)
        return rc, (buf.raw[:rc] if rc > 0 else b"")

    def bench(self, count: int, nr: int, *args: int) -> int:
        a = list(args) + [0] * (3 - len(args))
        return self.lib.uk_host_bench(count, nr, *a[:3])


if __name__ == "__main__":
    load()
    for k, v in sorted(vars(UK).items(), key=lambda kv: kv[0]):
        print(f"UK_{k} = {v}")
