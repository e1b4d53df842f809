"""Host side of the guest agent: typed calls over a pexpect-like serial console.

The console only needs ``send(bytes)`` and ``expect(patterns, timeout)`` with ``match`` /
``before`` / ``after`` as pexpect has them (bytes mode). Reply frames are searched anywhere in
the stream; frames with another id or a bad checksum are skipped, so guest log lines and line
noise can never be taken for an answer.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pexpect

from pytest_vmm.agent.protocol import (
    PIT_ACCOUNTING_FIELDS,
    READY_RE,
    REPLY_RE,
    ErrorCode,
    FrameError,
    Reply,
    encode_request,
    fnv1a32,
    parse_reply,
)

DEFAULT_TIMEOUT = 10.0
MEM_CHUNK = 96  # bytes per mrd/mwr line: 192 hex digits keep a request under MAX_LINE
MEM_FILL_MAX = 0x40000  # bytes one ``mwr ... fill=`` line may write (the probe's DMA area)
TAIL_CHARS = 3000


class AgentError(Exception):
    """The guest answered ``err``: ``code`` (see ErrorCode) and its text."""

    def __init__(self, code: int, text: str, request: str = "") -> None:
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = "?"
        super().__init__(f"agent error {code} ({name}): {text}" + (f" [request: {request}]" if request else ""))
        self.code = code
        self.text = text
        self.request = request


class ExitIgnored(AssertionError):
    """The guest wrote its exit port and the machine kept running (the agent's ``err`` reply to
    ``exit``): a failure of the exit path, never a missing feature, so never a skip."""

    def __init__(self, status: int, code: int, text: str) -> None:
        super().__init__(f"exit({status}): the guest's exit port did not stop the machine "
                         f"(agent error {code}: {text})")
        self.status = status
        self.code = code
        self.text = text


class AgentTimeout(Exception):
    """No reply in time (or the console closed): names the request and shows the console tail."""

    def __init__(self, request: str, timeout: float, tail: str, eof: bool = False) -> None:
        why = "console closed (guest exited or crashed)" if eof else f"no reply within {timeout:.1f}s"
        super().__init__(f"agent request {request!r}: {why}\n--- console tail ---\n{tail}\n--- end ---")
        self.request = request
        self.timeout = timeout
        self.tail = tail
        self.eof = eof


class Console(Protocol):
    match: Any
    before: Any
    after: Any

    def send(self, s: bytes) -> int: ...

    def expect(self, pattern: Any, timeout: float | None = ...) -> int: ...


@dataclass(frozen=True)
class Hello:
    name: str
    arch: str
    proto: int
    cpus: int
    tsc_khz: int
    caps: frozenset[str]
    fields: dict[str, str]


PIT_INPUT_HZ = 1193182  # the 8254's input clock (Hz)


@dataclass(frozen=True)
class Clock:
    tsc: int
    ns: int


@dataclass(frozen=True)
class TickCount:
    """Timer ticks over an interval of guest time (ns measured with the TSC)."""

    ticks: int
    ns: int
    hz: int
    divisor: int = 0  # PIT reload value: the exact rate is PIT_INPUT_HZ / divisor Hz
    span_ns: int = 0  # first tick to last tick, by the guest TSC
    # Tick accounting (agents with the "tickgaps" feature; None otherwise): ticks swallowed by
    # gaps of > 1.5 periods, ticks that came < 0.5 period after the previous one, how many such
    # gaps, and whole periods since the last tick that delivered nothing yet.
    missed: int | None = None
    bunched: int | None = None
    gaps: int | None = None
    pending: int | None = None

    @property
    def rate_hz(self) -> float:
        """The exact tick rate: from the reload value when the guest reports it."""
        return PIT_INPUT_HZ / self.divisor if self.divisor else float(self.hz)

    def ticks_expected(self) -> tuple[int, int]:
        """The tick counts the measured window ``ns`` allows, one either way for the edges.

        Checked against the window the guest measured rather than the one asked for: a vCPU
        that wakes late on a loaded host lengthens the window, and KVM re-injects the ticks
        it held back meanwhile, so the count follows the measured window.
        """
        periods = round(self.ns * self.rate_hz / 1e9)
        return max(0, periods - 1), periods + 1

    @property
    def periods_seen(self) -> int | None:
        """Periods the guest saw elapse: delivered ticks, plus the ones merged into gaps or still
        pending, minus re-injected (bunched) ones; None when the agent does no tick accounting."""
        if self.missed is None or self.bunched is None or self.pending is None:
            return None
        return self.ticks + self.missed + self.pending - self.bunched


@dataclass(frozen=True)
class OneShot:
    requested_ns: int
    elapsed_ns: int  # arm to interrupt, by the guest TSC
    fired: int  # how many timer interrupts arrived (1 expected)
    stall_ns: int = 0  # longest gap between the guest's polls while it waited (probe; 0 if not reported)


@dataclass(frozen=True)
class Halted:
    ns: int
    wakeups: int


@dataclass(frozen=True)
class IpiResult:
    sent: int
    received: int


@dataclass(frozen=True)
class UartBurst:
    sent: bytes
    received: int
    irqs: int
    fnv: int
    overruns: int
    dropped: int
    empty_irqs: int | None = None  # RX interrupts whose ISR found no byte (agents that count them)

    @property
    def intact(self) -> bool:
        return self.received == len(self.sent) and self.fnv == fnv1a32(self.sent)


@dataclass(frozen=True)
class IrqHold:
    before: int  # count when the line was masked
    masked: int  # count after the host raised the line while masked
    after: int  # count after unmasking
    vector: int


class AgentClient:
    """Typed client of the agent protocol (docs/agent-protocol.md)."""

    def __init__(self, console: Console, timeout: float = DEFAULT_TIMEOUT, first_id: int = 1) -> None:
        self.console = console
        self.timeout = timeout
        self._ids = itertools.count(first_id)
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self.skipped: deque[bytes] = deque(maxlen=100)  # reply-shaped frames not ours (debugging)
        self.hello_info: Hello | None = None
        self._pattern = REPLY_RE

    # ------------------------------------------------------------------ plumbing
    def _remember(self, data: Any) -> None:
        if not isinstance(data, (bytes, str)) or not data:
            return
        text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
        self._tail.append(text)
        self._tail_len += len(text)
        while self._tail_len > TAIL_CHARS and len(self._tail) > 1:
            self._tail_len -= len(self._tail.popleft())

    def console_tail(self) -> str:
        return "".join(self._tail)[-TAIL_CHARS:]

    def wait_ready(self, timeout: float = 30.0) -> tuple[int, str]:
        """Wait for the ready banner; returns (protocol version, guest name)."""
        idx = self.console.expect([READY_RE.pattern.encode(), pexpect.EOF, pexpect.TIMEOUT], timeout=timeout)
        self._remember(self.console.before)
        if idx != 0:
            raise AgentTimeout("<ready banner>", timeout, self.console_tail(), eof=idx == 1)
        self._remember(self.console.after)
        m = self.console.match
        return int(m.group(1)), m.group(2).decode()

    def request(
        self,
        command: str,
        timeout: float | None = None,
        on_go: Callable[[Reply], None] | None = None,
        **args: int | str | bool | None,
    ) -> Reply:
        """Send one request and return its ``ok`` reply; raise AgentError/AgentTimeout otherwise.

        ``on_go`` is called for each interim ``go`` reply (the guest is ready for the host's
        part of a test, e.g. sending a burst); the timeout restarts after it.
        """
        limit = self.timeout if timeout is None else timeout
        req_id = next(self._ids)
        line = encode_request(req_id, command, {k: v for k, v in args.items() if v is not None})
        shown = line.decode().rstrip("\n")
        self.console.send(line)
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout(shown, limit, self.console_tail())
            idx = self.console.expect([self._pattern, pexpect.EOF, pexpect.TIMEOUT], timeout=remaining)
            self._remember(self.console.before)
            if idx != 0:
                raise AgentTimeout(shown, limit, self.console_tail(), eof=idx == 1)
            raw = self.console.match.group(0)
            self._remember(raw)
            try:
                reply = parse_reply(raw)
            except FrameError:
                self.skipped.append(raw)
                continue
            if reply.req_id != req_id:
                self.skipped.append(raw)  # a late reply to an earlier, timed-out request
                continue
            if reply.status == "err":
                raise AgentError(reply.code, reply.text, shown)
            if reply.status == "go":
                if on_go is None:
                    raise AgentError(ErrorCode.BAD_FRAME, f"unexpected interim reply {raw!r}", shown)
                on_go(reply)
                deadline = time.monotonic() + limit
                continue
            return reply

    # ------------------------------------------------------------------ identity
    def hello(self) -> Hello:
        r = self.request("hello")
        caps = frozenset(c for c in r.fields.get("caps", "").split(",") if c)
        info = Hello(
            name=r.fields.get("name", "?"),
            arch=r.fields.get("arch", "?"),
            proto=r.int("proto"),
            cpus=r.int("cpus"),
            tsc_khz=r.int("tsc_khz"),
            caps=caps,
            fields=dict(r.fields),
        )
        self.hello_info = info
        return info

    def cpuid(self, leaf: int, sub: int = 0, cpu: int | None = None) -> tuple[int, int, int, int]:
        """CPUID as the guest sees it: (eax, ebx, ecx, edx)."""
        r = self.request("cpuid", leaf=leaf, sub=sub, cpu=cpu)
        return r.int("eax"), r.int("ebx"), r.int("ecx"), r.int("edx")

    def ping(self, cpu: int | None = None) -> None:
        self.request("ping", cpu=cpu)

    # ------------------------------------------------------------------ port I/O and MMIO
    def port_read(self, port: int, width: int, cpu: int | None = None) -> int:
        return self.request("in", port=port, width=width, cpu=cpu).int("value")

    def port_write(self, port: int, width: int, value: int, cpu: int | None = None) -> None:
        self.request("out", port=port, width=width, value=value, cpu=cpu)

    def inb(self, port: int) -> int:
        return self.port_read(port, 1)

    def inw(self, port: int) -> int:
        return self.port_read(port, 2)

    def inl(self, port: int) -> int:
        return self.port_read(port, 4)

    def outb(self, port: int, value: int) -> None:
        self.port_write(port, 1, value)

    def outw(self, port: int, value: int) -> None:
        self.port_write(port, 2, value)

    def outl(self, port: int, value: int) -> None:
        self.port_write(port, 4, value)

    def mmio_read(self, addr: int, width: int, cpu: int | None = None) -> int:
        return self.request("rd", addr=addr, width=width, cpu=cpu).int("value")

    def mmio_write(self, addr: int, width: int, value: int, cpu: int | None = None) -> None:
        self.request("wr", addr=addr, width=width, value=value, cpu=cpu)

    # ------------------------------------------------------------------ guest RAM (probe: dma, mrd, mwr)
    def mem_read(self, addr: int, n: int) -> bytes:
        """``n`` bytes of guest memory, MEM_CHUNK per request."""
        out = bytearray()
        while len(out) < n:
            step = min(MEM_CHUNK, n - len(out))
            reply = self.request("mrd", addr=addr + len(out), n=step)
            chunk = bytes.fromhex(reply.fields.get("hex", ""))
            if len(chunk) != step:
                raise AgentError(ErrorCode.BAD_FRAME, f"mrd n={step} answered {len(chunk)} bytes", reply.raw.decode(errors="replace"))
            out += chunk
        return bytes(out)

    def mem_write(self, addr: int, data: bytes) -> None:
        for i in range(0, len(data), MEM_CHUNK):
            self.request("mwr", addr=addr + i, hex=data[i : i + MEM_CHUNK].hex())

    def mem_fill(self, addr: int, n: int, byte: int = 0) -> None:
        """``n`` bytes of ``byte`` from ``addr``: one ``mwr ... fill=`` line per MEM_FILL_MAX
        bytes, where ``mem_write`` would send two hex digits a byte."""
        for i in range(0, n, MEM_FILL_MAX):
            self.request("mwr", addr=addr + i, hex=f"{byte:02x}", fill=min(MEM_FILL_MAX, n - i))

    def dma_area(self) -> tuple[int, int]:
        """(base, size) of the guest RAM the agent sets aside for host-side drivers."""
        reply = self.request("dma")
        return reply.int("base"), reply.int("size")

    # ------------------------------------------------------------------ interrupts
    def irq_arm(self, line: int, trigger: str = "edge", eoi: str = "auto", pin: int | None = None) -> int:
        """Route ISA/GSI ``line`` through the IOAPIC to the guest's vector for it (returned)."""
        return self.request("irq_arm", line=line, trig=trigger, eoi=eoi, pin=pin).int("vector")

    def irq_mask(self, line: int) -> None:
        self.request("irq_mask", line=line)

    def irq_unmask(self, line: int) -> None:
        self.request("irq_unmask", line=line)

    def irq_count(self, line: int) -> int:
        return self.request("irq_count", line=line).int("count")

    def vector_count(self, vector: int, cpu: int | None = None) -> int:
        return self.request("vec_count", vector=vector, cpu=cpu).int("count")

    def eoi(self) -> int:
        """Send the EOIs a manual-EOI line is holding back; returns how many were sent."""
        return self.request("eoi").int("sent")

    def reset_counts(self) -> None:
        self.request("counts_reset")

    def irq_hold(self, line: int, trigger: Callable[[], None], ms: int = 200) -> IrqHold:
        """Mask ``line``, let the host raise it (``trigger``), wait ``ms``, unmask, count."""
        r = self.request("irq_hold", line=line, ms=ms, on_go=lambda _r: trigger(), timeout=self.timeout + ms / 1000)
        return IrqHold(r.int("before"), r.int("masked"), r.int("after"), r.int("vector"))

    def ipi(self, to: int, vector: int, count: int = 1, cpu: int | None = None) -> IpiResult:
        r = self.request("ipi", to=to, vector=vector, n=count, cpu=cpu)
        return IpiResult(r.int("sent"), r.int("received"))

    # ------------------------------------------------------------------ UART
    def uart_burst(self, data: bytes, ms: int = 5000, chunk: int = 64) -> UartBurst:
        """Send ``data`` as a burst into the guest UART; the guest counts and digests it."""
        def send(_r: Reply) -> None:
            for i in range(0, len(data), chunk):
                self.console.send(data[i : i + chunk])

        r = self.request("rx_burst", n=len(data), ms=ms, on_go=send, timeout=self.timeout + ms / 1000)
        return UartBurst(data, r.int("bytes"), r.int("irqs"), r.int("fnv"), r.int("overruns"), r.int("dropped"),
                         r.get_int("empty_irqs"))

    def uart_loopback(self, value: int = 0x5A) -> dict[str, int]:
        """Echo ``value`` through the 16550's loopback mode: ``value`` (read back), ``msr``, ``lsr``, ``mcr``."""
        r = self.request("uart_loopback", value=value)
        return {k: r.int(k) for k in ("value", "msr", "lsr", "mcr")}

    def uart_stats(self) -> dict[str, int]:
        r = self.request("uart_stats")
        return {k: r.int(k) for k in r.fields}

    # ------------------------------------------------------------------ time
    def clock(self, cpu: int | None = None) -> Clock:
        r = self.request("clock", cpu=cpu)
        return Clock(r.int("tsc"), r.int("ns"))

    @staticmethod
    def _ticks(r: Reply) -> TickCount:
        return TickCount(r.int("ticks"), r.int("ns"), r.int("hz"), r.get_int("divisor", 0) or 0,
                         r.get_int("span_ns", 0) or 0,
                         *(r.get_int(name) for name in PIT_ACCOUNTING_FIELDS))

    def pit_measure(self, ms: int, hz: int = 1000) -> TickCount:
        """PIT periodic at ``hz`` for ``ms`` of guest time: ticks counted by the guest."""
        return self._ticks(self.request("pit_measure", ms=ms, hz=hz, timeout=self.timeout + 2 * ms / 1000))

    def pit_start(self, hz: int = 1000) -> TickCount:
        return self._ticks(self.request("pit_start", hz=hz))

    def pit_read(self) -> TickCount:
        return self._ticks(self.request("pit_read"))

    def pit_stop(self) -> TickCount:
        return self._ticks(self.request("pit_stop"))

    def lapic_oneshot(self, us: int, cpu: int | None = None) -> OneShot:
        r = self.request("lapic_oneshot", us=us, cpu=cpu, timeout=self.timeout + 2 * us / 1e6)
        return OneShot(r.int("requested_ns"), r.int("elapsed_ns"), r.int("fired"), r.get_int("stall_ns", 0) or 0)

    def halt(self, ms: int, cpu: int | None = None) -> Halted:
        r = self.request("halt", ms=ms, cpu=cpu, timeout=self.timeout + 2 * ms / 1000)
        return Halted(r.int("ns"), r.int("wakeups"))

    # ------------------------------------------------------------------ the end
    def exit(self, status: int, timeout: float = 10.0) -> None:
        """Ask the guest to leave through the exit port; returns once the console closes."""
        req_id = next(self._ids)
        line = encode_request(req_id, "exit", {"status": status})
        self.console.send(line)
        patterns: list[Any] = [self._pattern, pexpect.EOF, pexpect.TIMEOUT]
        deadline = time.monotonic() + timeout
        while True:
            idx = self.console.expect(patterns, timeout=max(0.0, deadline - time.monotonic()))
            self._remember(self.console.before)
            if idx == 1:
                return
            if idx == 2:
                raise AgentTimeout(line.decode().strip(), timeout, self.console_tail())
            raw = self.console.match.group(0)
            self._remember(raw)
            try:
                reply = parse_reply(raw)
            except FrameError:
                continue
            if reply.req_id == req_id and reply.status == "err":
                raise ExitIgnored(status, reply.code, reply.text)

    def close(self) -> None:
        """Nothing to release: the console belongs to the machine."""

