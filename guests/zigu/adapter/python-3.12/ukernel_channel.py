"""The in-guest ABI channel: ask the running zigu kernel to perform ABI calls.

Wire format (serial console, one line each way; see docs/zigu-abi.md "In-guest channel")::

    host -> guest   @abi <id> <op> [args] [; <op> [args]]...
    guest -> host   =abi <id> <result> [<result>]...

The ring-3 channel runner in the guest (kernel/user.zig) performs every op as a workload,
through the real trap gate into ring 0, so each result is what the kernel's ABI answered.

``GuestAbi`` offers the same methods as ``ukernel_abi.HostAbi``, so one check can run on
both. It needs only a transport with ``sendline(str)`` and ``expect(regex_bytes, timeout)``
returning a ``re.Match``: pytest-vmm's ``Machine`` has both; ``QemuGuest`` below is a
stand-alone launcher for the CLI, tests and benchmarks.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from ukernel_abi import UK, load

READY_RE = rb"zigu: ready abi=(\d+)[^\r\n]*scratch=(0x[0-9a-f]+)\r*\n"
KERNEL_ADDR = 0x100000  # the kernel image: never workload memory
SCRATCH = 8192


class Transport(Protocol):
    def sendline(self, data: str) -> None: ...
    def expect(self, pattern, timeout: float = 30.0) -> re.Match: ...


class ChannelError(RuntimeError):
    pass


def _hex(data: bytes) -> str:
    return data.hex() if data else "-"


class GuestAbi:
    name = "guest"

    def __init__(self, transport: Transport, timeout: float = 10.0, scratch_base: int | None = None):
        load()  # constants
        self.t = transport
        self.timeout = timeout
        self._ids = itertools.count(1)
        self.scratch_base = scratch_base
        if scratch_base is None:
            self.scratch_base = self._scratch_from_stats()

    # --- transport ---
    def request(self, *ops: str) -> list[str]:
        """Send one line with several ops; return one result token per op."""
        rid = next(self._ids)
        self.t.sendline(f"@abi {rid} " + " ; ".join(ops))
        m = self.t.expect(rb"=abi %d ([^\r\n]*)\r*\n" % rid, timeout=self.timeout)  # bytes: Machine.expect compiles it
        toks = m.group(1).decode("ascii", "replace").split()
        if len(toks) != len(ops):
            raise ChannelError(f"{len(ops)} ops but {len(toks)} results: {ops} -> {toks}")
        return toks

    def call(self, op: str) -> str:
        return self.request(op)[0]

    @staticmethod
    def rc(tok: str) -> int:
        if tok == "err":
            raise ChannelError("the channel runner could not parse the op")
        return int(tok.split(":", 1)[0])

    @staticmethod
    def payload(tok: str) -> str:
        return tok.split(":", 1)[1] if ":" in tok else ""

    def _scratch_from_stats(self) -> int:
        return int(self.payload(self.call("scratch")), 16)

    # --- harness ---
    def reset(self, workload: int = 0) -> int:
        return self.rc(self.call(f"reset {workload}"))

    def bad_pointers(self) -> list[int]:
        return [0, 0x10, KERNEL_ADDR, 0xFFFF_8000_0000_0000, self.scratch_base + SCRATCH + 0x100000]

    def scratch(self, off: int = 0) -> int:
        return self.scratch_base + off

    def poke(self, off: int, data: bytes) -> None:
        self.rc(self.call(f"poke {off} {_hex(data)}"))

    def peek(self, off: int, n: int) -> bytes:
        return bytes.fromhex(self.payload(self.call(f"peek {off} {n}")))

    def stats(self) -> dict[str, int]:
        vals = [int(x) for x in self.payload(self.call("stats")).split(",")]
        keys = ["calls", "denied", "ticks", "tsc_hz", "now_ns", "traps", "rx_dropped", "workload"]
        return dict(zip(keys, vals))

    def exit(self, status: int = 0) -> None:
        self.t.sendline(f"@abi {next(self._ids)} exit {status}")

    # --- the ABI (raw results) ---
    def syscall(self, nr: int, *args: int) -> int:
        return self.rc(self.call("sys " + " ".join(str(int(x)) for x in (nr, *args))))

    def acquire(self, kind: int) -> int:
        return self.rc(self.call(f"acquire {kind}"))

    def release(self, handle: int) -> int:
        return self.rc(self.call(f"release {handle}"))

    def kind(self, handle: int) -> int:
        return self.rc(self.call(f"kind {handle}"))

    def active(self) -> int:
        return self.rc(self.call("active"))

    def policy(self) -> int:
        return self.rc(self.call("policy"))

    def enter(self, handles: list[int]) -> int:
        return self.rc(self.call("enter " + (",".join(str(h & 0xFFFFFFFF) for h in handles) or "-")))

    def log(self, data: bytes) -> int:
        return self.rc(self.call(f"log {_hex(data)}"))

    def now(self) -> int:
        return self.rc(self.call("now"))

    def sleep(self, ns: int) -> int:
        return self.rc(self.call(f"sleep {ns}"))

    def yield_(self) -> int:
        return self.rc(self.call("yield"))

    def task_id(self) -> int:
        return self.rc(self.call("taskid"))

    def pipe(self) -> tuple[int, int, int]:
        tok = self.call("pipe")
        rc = self.rc(tok)
        if rc < 0:
            return rc, -1, -1
        rd, wr = (int(x) for x in self.payload(tok).split(","))
        return rc, rd, wr

    def read(self, fd: int, n: int) -> tuple[int, bytes]:
        tok = self.call(f"read {fd} {n}")
        rc = self.rc(tok)
        return rc, bytes.fromhex(self.payload(tok)) if rc > 0 else b""

    def write(self, fd: int, data: bytes) -> int:
        return self.rc(self.call(f"write {fd} {_hex(data)}"))

    def close(self, fd: int) -> int:
        return self.rc(self.call(f"close {fd}"))

    def poll(self, items: list[tuple[int, int]], timeout_ns: int) -> tuple[int, list[int]]:
        spec = ",".join(f"{fd}:{ev}" for fd, ev in items) or "-"
        tok = self.call(f"poll {timeout_ns} {spec}")
        rc = self.rc(tok)
        revs = [int(x) for x in self.payload(tok).split(",")] if rc >= 0 and items else [0] * len(items)
        return rc, revs

    def net_open(self, port: int) -> int:
        return self.rc(self.call(f"net {port}"))

    def random(self, n: int) -> tuple[int, bytes]:
        tok = self.call(f"random {n}")
        rc = self.rc(tok)
        return rc, bytes.fromhex(self.payload(tok)) if rc > 0 else b""

    def bench(self, count: int, nr: int, *args: int) -> tuple[int, int]:
        """Run one raw call `count` times inside the guest; -> (last result, elapsed ns)."""
        tok = self.call(f"bench {count} {nr} " + " ".join(str(a) for a in args))
        return self.rc(tok), int(self.payload(tok))


# ----------------------------------------------------------------------------------------
# stand-alone launcher (QEMU microvm + KVM, else TCG)
# ----------------------------------------------------------------------------------------
def qemu_argv(kernel: Path, accel: str = "kvm", mem_mib: int = 64) -> list[str]:
    cpu = "host,arch-capabilities=off" if accel == "kvm" else "max"
    return [
        shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
        "-M", "microvm", "-accel", accel, "-cpu", cpu, "-m", str(mem_mib),
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
        "-kernel", str(kernel),
    ]


class QemuGuest:
    """Boot zigu.elf on QEMU microvm with the console on a pty (pexpect); always kill it."""

    def __init__(self, kernel: str | os.PathLike, accel: str | None = None, log_path: str | None = None,
                 boot_timeout: float = 20.0):
        import pexpect

        self.kernel = Path(kernel)
        if accel is None:
            accel = "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"
        self.accel = accel
        argv = qemu_argv(self.kernel, accel)
        self.argv = argv
        self._log = open(log_path, "wb") if log_path else None
        self.t0 = time.monotonic()
        self.child = pexpect.spawn(argv[0], argv[1:], timeout=boot_timeout, echo=False)  # pty child = session + group leader
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
        if self._log:
            self.child.logfile_read = self._log
        self.ready_match = self.expect(re.compile(READY_RE), timeout=boot_timeout)
        self.boot_s = time.monotonic() - self.t0
        self.scratch_base = int(self.ready_match.group(2), 16)

    def sendline(self, data: str) -> None:
        self.child.send(data.encode() + b"\n")

    def expect(self, pattern, timeout: float = 30.0) -> re.Match:
        import pexpect

        pat = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
        try:
            self.child.expect(pat, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            tail = (self.child.before or b"")[-800:].decode("ascii", "replace")
            raise ChannelError(f"zigu: waiting for {pat.pattern!r}: {type(e).__name__}; console tail:\n{tail}") from None
        return self.child.match

    def abi(self) -> GuestAbi:
        return GuestAbi(self, scratch_base=self.scratch_base)

    def exit_status(self, timeout: float = 5.0) -> int | None:
        end = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < end:
            time.sleep(0.02)
        if self.child.isalive():
            return None
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.child.close(force=True)
        if self._log:
            self._log.close()

    def __enter__(self) -> "QemuGuest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
