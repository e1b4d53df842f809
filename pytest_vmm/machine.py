"""Machine: one booted guest.

It owns the hypervisor process (its own session and process group), the serial console
(pexpect over a pty, fully logged), boot timing, channels (agent, ABI, MCP...), metrics,
and shutdown: graceful, then SIGTERM, then SIGKILL, then a check that nothing is left.
Modelled on QEMU's python/qemu/machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pexpect import EOF, TIMEOUT

from pytest_vmm.console import Console, ConsolePump, tail
from pytest_vmm.errors import (
    BootTimeout,
    GuestCrashed,
    GuestExited,
    LaunchError,
    MachineError,
    MachineLeak,
)
from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Companion, Hypervisor, LaunchPlan
from pytest_vmm.stack import BootSpec, ChannelFactory, ChannelHost

if TYPE_CHECKING:
    from pytest_vmm.agent.client import AgentClient

COMPANION_READY_S = 15.0
GRACEFUL_S = 5.0
TERM_S = 3.0
KILL_S = 3.0
# What a helper of the VMM (a console relay) may take to end by itself once the VMM is gone.
SETTLE_S = 1.0


@dataclass
class MachineConfig:
    target_id: str
    stack: str
    hypervisor: Hypervisor
    spec: BootSpec
    accel: str
    host: HostInfo
    artifacts_dir: Path
    boot_timeout_s: float
    channels: dict[str, ChannelFactory] = field(default_factory=dict)
    # The accelerator's slowness (hypervisor.timeout_multiplier): channels scale their waits by it.
    timeout_factor: float = 1.0
    health: Callable[[ChannelHost], bool] | None = None
    # The stack's capabilities (Stack.capabilities): what a suite may ask of this guest.
    capabilities: frozenset[str] = frozenset()


class Machine:
    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self.spec = config.spec
        self.target_id = config.target_id
        self.artifacts_dir = config.artifacts_dir
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.console_log = self.artifacts_dir / "console.log"
        self.stderr_log = self.artifacts_dir / "hypervisor-stderr.log"
        # Short path under /tmp: Unix socket paths must stay under 108 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"vmm-{config.stack[:12]}-"))
        self.boot_ms: float | None = None
        self.metrics: dict[str, float] = {}
        self.metric_listeners: list[Callable[[str, float], None]] = []
        self.notes: list[str] = []
        self.plan: LaunchPlan | None = None
        # Seconds spent in each phase of this machine's life ("boot", "shutdown"), for --vmm-profile.
        self.phases: dict[str, float] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: ConsolePump | None = None
        self._console: Console | None = None
        self._master_fd = -1
        self._stderr_file: Any = None
        self._channels: dict[str, object] = {}
        self._started_at = 0.0
        self._descendants: set[int] = set()
        self._fail_res = [re.compile(p) for p in self.spec.fail_patterns]
        self._stopped = False
        self._companions: list[tuple[str, subprocess.Popen[bytes]]] = []

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Launch the hypervisor and wait for the ready pattern.

        On any failure the machine cleans up after itself (processes, companions, run dir)
        before the error propagates, as QEMU's ``QEMUMachine.launch`` does: callers never
        have to. A leak found by that cleanup is added to the error as a note.
        """
        began = time.monotonic()
        try:
            self._launch()
        except BaseException as exc:
            try:
                self.shutdown()
            except MachineError as leak:
                exc.add_note(str(leak))
            raise
        finally:
            self.phases["boot"] = time.monotonic() - began
        return self

    def _launch(self) -> None:
        self.plan = self.config.hypervisor.launch_plan(self.spec, self.config.accel, self.run_dir, self.config.host)
        (self.artifacts_dir / "command.txt").write_text(" ".join(_quote(a) for a in self.plan.argv) + "\n")
        for companion in self.plan.companions:
            self._start_companion(companion)
        master, slave = os.openpty()
        tty.setraw(slave)  # the console is a byte pipe: no echo, no CRLF mapping, no line editing
        env = {**os.environ, **self.plan.env}
        self._stderr_file = self.stderr_log.open("wb")
        self._started_at = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self.plan.argv, stdin=slave, stdout=slave, stderr=self._stderr_file,
                cwd=self.plan.cwd or self.run_dir, env=env, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            os.close(master)
            os.close(slave)
            self._stderr_file.close()
            raise LaunchError(f"cannot start {self.config.hypervisor.name}: {self.plan.argv[0]}: {exc.strerror}") from exc
        os.close(slave)
        self._master_fd = master
        self._pump = ConsolePump(master, self.console_log)
        self._console = Console(self._pump, master)
        self.wait_ready()

    def _start_companion(self, companion: Companion) -> None:
        log = (self.artifacts_dir / f"{companion.name}.log").open("wb")
        try:
            process = subprocess.Popen(
                companion.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.run_dir, env={**os.environ, **companion.env}, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {companion.name}: {companion.argv[0]}: {exc.strerror}") from exc
        finally:
            log.close()
        self._companions.append((companion.name, process))
        deadline = time.monotonic() + COMPANION_READY_S
        while companion.ready_path is not None and not companion.ready_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
                log_tail = tail(self.artifacts_dir / f"{companion.name}.log", 10)
                raise LaunchError(f"{companion.name} {state} before creating {companion.ready_path}; "
                                  f"its log: {log_tail}")
            time.sleep(0.02)

    def wait_ready(self) -> None:
        console = self.console
        timeout = self.config.boot_timeout_s
        patterns: list[Any] = [re.compile(self.spec.ready), *self._fail_res, EOF, TIMEOUT]
        index = console.expect(patterns, timeout=timeout)
        if index == 0:
            self.boot_ms = (time.monotonic() - self._started_at) * 1000.0
            return
        what = self.spec.ready.decode(errors="replace")
        if index <= len(self._fail_res):
            raise GuestCrashed(
                f"{self.target_id}: guest crashed while booting (matched {self._fail_res[index - 1].pattern!r})",
                self.tail(), str(self.console_log),
            )
        if patterns[index] is EOF:
            status = self.wait_exit(5.0)
            raise GuestExited(
                f"{self.target_id}: hypervisor exited with status {status} before the guest was ready "
                f"(waited for /{what}/){self._stderr_summary()}",
                self.tail(), str(self.console_log),
            )
        seen = self.console_log.stat().st_size if self.console_log.exists() else 0
        raise BootTimeout(
            f"{self.target_id}: no boot within {timeout:.1f} s: waited for /{what}/ on the console, "
            f"got {seen} bytes of other output instead{self._stderr_summary()}",
            self.tail(), str(self.console_log),
        )

    def _stderr_summary(self) -> str:
        text = tail(self.stderr_log, 5)
        return f"; hypervisor stderr: {text}" if text else ""

    def note(self, text: str) -> None:
        """A line for this machine's failure report (ProcessControl)."""
        self.notes.append(text)

    @property
    def pid(self) -> int:
        assert self._process is not None, "machine not started"
        return self._process.pid

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the hypervisor process and its threads have used so far;
        None without /proc (not Linux) or once the process is gone."""
        stat = _proc_stat(self.pid)
        return None if stat is None else stat.cpu_seconds

    def cpu_share_while(self, action: Callable[[], object]) -> float | None:
        """The share of one core the hypervisor process used while ``action()`` ran (0.25 is a
        quarter of a core); None without /proc."""
        cpu0, t0 = self.cpu_seconds(), time.monotonic()
        if cpu0 is None:
            return None
        action()
        cpu1, t1 = self.cpu_seconds(), time.monotonic()
        if cpu1 is None:
            raise MachineError(f"{self.target_id}: the hypervisor process went away while its CPU time was measured")
        return (cpu1 - cpu0) / (t1 - t0)

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def healthy(self) -> bool:
        if not self.is_alive():
            return False
        return self.config.health(self) if self.config.health else True

    @property
    def timeout_factor(self) -> float:
        return self.config.timeout_factor

    @property
    def vsock_socket(self) -> Path | None:
        """Host side of the guest's vsock device, as the hypervisor placed it (LaunchPlan)."""
        return self.plan.vsock_socket if self.plan is not None else None

    def wait_exit(self, timeout: float) -> int | None:
        """The hypervisor's exit status, or None if it is still running after ``timeout``."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def exit_status(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def signal_leader(self, signum: int) -> None:
        if self.is_alive():
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def signal_group(self, signum: int) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def shutdown(self) -> list[str]:
        """Stop the guest and verify nothing is left. Raises MachineLeak on a leak."""
        if self._stopped:
            return self.notes
        self._stopped = True
        began = time.monotonic()
        try:
            return self._shutdown()
        finally:
            self.phases["shutdown"] = time.monotonic() - began

    def _shutdown(self) -> list[str]:
        leaks: list[str] = []
        if self._process is not None:
            self._descendants = _descendants(self.pid)
            if self.is_alive():
                self._escalate()
            self._process.wait()
            self._reap_group(self.pid, self._descendants, leaks)
        for name, process in self._companions:
            companion_tree = _descendants(process.pid)
            if process.poll() is None:
                _stop_process_group(process)
            self._reap_group(process.pid, companion_tree, leaks)
        if self._pump is not None:
            self._pump.close()
        if self._master_fd >= 0:
            os.close(self._master_fd)
            self._master_fd = -1
        if self._stderr_file is not None:
            self._stderr_file.close()
        for channel in self._channels.values():
            close = getattr(channel, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - a channel that fails to close is noted
                    self.notes.append(f"closing channel failed: {exc}")
        self._channels.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.run_dir.exists():
            leaks.append(f"run directory {self.run_dir} could not be removed")
        for sock in self.plan.sockets if self.plan else []:
            if sock.exists():
                leaks.append(f"socket {sock} left behind")
        if leaks:
            raise MachineLeak(f"{self.target_id}: shutdown left things behind: " + "; ".join(leaks),
                              self.tail(), str(self.console_log))
        return self.notes

    def _escalate(self) -> None:
        asked = self.plan is not None and self.config.hypervisor.request_stop(self, self.plan)
        if asked and self.wait_exit(GRACEFUL_S) is not None:
            return
        self.notes.append(f"{self.config.hypervisor.name} ignored the graceful stop; sent SIGTERM")
        self.signal_group(signal.SIGTERM)
        if self.wait_exit(TERM_S) is not None:
            return
        self.notes.append("SIGTERM ignored; sent SIGKILL")
        self.signal_group(signal.SIGKILL)
        self.wait_exit(KILL_S)

    def _reap_group(self, pgid: int, descendants: set[int], leaks: list[str]) -> None:
        """Kill anything a process started that outlived it (same group or descendants).

        A helper that ends by itself once its VMM has gone (the socket-console relay sees
        EOF) gets SETTLE_S to do so before it counts as left over: a busy machine must not
        turn a clean stop into a kill.
        """
        settle = time.monotonic() + SETTLE_S
        while (_group_members(pgid) | {p for p in descendants if _alive(p)}) and time.monotonic() < settle:
            time.sleep(0.02)
        deadline = time.monotonic() + KILL_S
        while True:
            survivors = _group_members(pgid) | {p for p in descendants if _alive(p)}
            if not survivors:
                return
            if time.monotonic() > deadline:
                leaks.append(f"processes {sorted(survivors)} survived SIGKILL")
                return
            self.notes.append(f"killed leftover processes {sorted(survivors)}")
            for pid in survivors:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    # ------------------------------------------------------------------ console
    @property
    def console(self) -> Console:
        if self._console is None:
            raise RuntimeError(f"{self.target_id}: machine not started")
        return self._console

    def expect(self, pattern: bytes | str | Sequence[bytes | str], timeout: float = 30.0) -> re.Match[bytes]:
        """Wait for a console regex; a fail pattern, EOF or timeout raises with the tail."""
        wanted = [pattern] if isinstance(pattern, (bytes, str)) else list(pattern)
        compiled = [re.compile(p.encode() if isinstance(p, str) else p) for p in wanted]
        index = self.console.expect([*compiled, *self._fail_res, EOF, TIMEOUT], timeout=timeout)
        if index < len(compiled):
            return self.console.match
        shown = " | ".join(p.pattern.decode(errors="replace") for p in compiled)
        index -= len(compiled)
        if index < len(self._fail_res):
            raise GuestCrashed(f"{self.target_id}: guest crashed (matched {self._fail_res[index].pattern!r}) "
                               f"while waiting for /{shown}/", self.tail(), str(self.console_log))
        if index == len(self._fail_res):
            raise GuestExited(f"{self.target_id}: console closed (status {self.wait_exit(2.0)}) while waiting "
                              f"for /{shown}/{self._stderr_summary()}", self.tail(), str(self.console_log))
        raise BootTimeout(f"{self.target_id}: /{shown}/ did not appear within {timeout:.1f} s",
                          self.tail(), str(self.console_log))

    def send(self, data: bytes | str) -> None:
        self.console.send(data)

    def sendline(self, data: bytes | str = b"") -> None:
        self.console.sendline(data)

    def tail(self, lines: int = 40) -> str:
        return tail(self.console_log, lines)

    def console_text(self) -> bytes:
        return self.console_log.read_bytes() if self.console_log.exists() else b""

    def crashed(self) -> bool:
        """A fail pattern appeared somewhere on the console (the guest must not be reused)."""
        data = self.console_text()
        return any(pattern.search(data) for pattern in self._fail_res)

    def check_console(self) -> None:
        """Fail if a fail pattern appeared anywhere on the console (checked after each test)."""
        data = self.console_text()
        for pattern in self._fail_res:
            if pattern.search(data):
                raise GuestCrashed(f"{self.target_id}: console shows {pattern.pattern!r}",
                                   self.tail(), str(self.console_log))

    # ------------------------------------------------------------- channels etc.
    def channel(self, name: str) -> Any:
        if name not in self._channels:
            factory = self.config.channels.get(name)
            if factory is None:
                raise LookupError(f"{self.target_id} has no {name!r} channel "
                                  f"(channels: {', '.join(sorted(self.config.channels)) or 'none'})")
            self._channels[name] = factory(self)
        return self._channels[name]

    @property
    def agent(self) -> AgentClient:
        return self.channel("agent")

    def record(self, name: str, value: float) -> None:
        """A metric (tok_s, exits_per_s...): kept on the machine and sent to JUnit properties."""
        self.metrics[name] = value
        for listener in self.metric_listeners:
            listener(name, value)

    @property
    def accel(self) -> str:
        return self.config.accel

    @property
    def hypervisor_name(self) -> str:
        return self.config.hypervisor.name

    @property
    def arch(self) -> str:
        """The guest architecture (the hypervisor's: x86_64, aarch64)."""
        return self.config.hypervisor.arch

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else f"exited({self.exit_status})"
        return f"<Machine {self.target_id} {state} pid={self._process.pid if self._process else '-'}>"


def _stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a companion's group, then SIGKILL if it does not go."""
    for signum, wait_s in ((signal.SIGTERM, TERM_S), (signal.SIGKILL, KILL_S)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat this module uses (proc(5))."""

    state: str
    ppid: int
    pgrp: int
    cpu_seconds: float  # utime + stime


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> ProcStat | None:
    """/proc/PID/stat of a live process, None when gone or a zombie. The command name (field 2)
    may hold spaces and parentheses: the fields start after its last ')'."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    # fields[i] is proc(5) field i + 3: state(3) ppid(4) pgrp(5) ... utime(14) stime(15)
    return ProcStat(fields[0], int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)


def _alive(pid: int) -> bool:
    return _proc_stat(pid) is not None


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _group_members(pgid: int) -> set[int]:
    members = set()
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat.pgrp == pgid:
            members.add(pid)
    return members


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None:
            children.setdefault(stat.ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
