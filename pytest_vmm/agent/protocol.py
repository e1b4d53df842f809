"""The guest agent wire protocol, defined once (docs/agent-protocol.md is its prose twin).

One request and one final reply per line over the serial console, both in the same frame::

    request  @><id> <command> [key=value ...] *<cs>\\n
    reply    @@<id> ok [key=value ...] *<cs>\\r\\n
             @@<id> err <code> <text> *<cs>\\r\\n
             @@<id> go [key=value ...] *<cs>\\r\\n      (interim: "the guest waits for you")

``<cs>`` is the sum of every byte of the line before the `` *`` separator (prefix
included), modulo 256, as two hex digits. A plain byte sum was chosen over a CRC so that a
BusyBox shell script and a 20-line kernel routine can both compute it; it still catches any
single corrupted byte, and the ``@@``/id/status frame catches interleaving. Requests start
with ``@>`` and replies with ``@@`` so a request echoed back by a terminal can never be taken
for its own reply. Everything else on the console (log lines, garbage) is ignored.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass, field
from enum import IntEnum

PROTOCOL_VERSION = 1
REQUEST_PREFIX = "@>"
REPLY_PREFIX = "@@"
MAX_LINE = 240  # a guest's line buffer is 256 bytes; stay clear of it

# The ready banner a guest prints once its agent reads requests, e.g.
# ``@@ready proto=1 name=probe *4e``. Machine configs use READY_REGEX as the ready pattern.
READY_REGEX = r"@@ready proto=(\d+) name=([A-Za-z0-9_.-]+) \*[0-9A-Fa-f]{2}"
READY_RE = re.compile(READY_REGEX)

# Found anywhere in the console stream (a reply may follow an unterminated log line). The body
# excludes '@' so that a broken frame cannot swallow the real reply that follows it. A pty with
# ONLCR turns the guest's \r\n into \r\r\n, hence \r*.
REPLY_REGEX = rb"@@(\d{1,9}) (ok|err|go)((?: [^\r\n@]*?)?) \*([0-9A-Fa-f]{2})\r*\n"
REPLY_RE = re.compile(REPLY_REGEX)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:,/+-]+$")

# Every command the protocol defines (docs/agent-protocol.md, "Commands"). An agent may answer
# some with err 8 (UNSUPPORTED) but names no others; tests/agent/test_agent_sync.py holds each
# guest's agent to this list.
COMMANDS: frozenset[str] = frozenset({
    "hello", "ping", "cpuid", "in", "out", "rd", "wr",
    "irq_arm", "irq_mask", "irq_unmask", "irq_count", "vec_count", "counts_reset", "eoi",
    "irq_hold", "ipi", "clock", "halt", "lapic_oneshot",
    "pit_measure", "pit_start", "pit_read", "pit_stop",
    "uart_loopback", "uart_stats", "rx_burst", "exit",
    # guest memory and device access for the host-side virtio driver and register suites
    "dma", "mrd", "mwr", "vmmio", "mfind", "ioseq", "uart_seq",
    # arm64 (the aarch64 probe): the GICv3 CPU interface and redistributor, the generic timer,
    # PSCI, the PL011's transmit interrupt
    "gic_pmr", "gic_eoimode", "gicr_waker", "cntv_oneshot", "psci", "cpu_on", "uart_tx_irq",
})
# Commands with a meaning on one architecture only; the other architecture's agents do not
# name them (tests/agent/test_agent_sync.py).
ARCH_COMMANDS: dict[str, frozenset[str]] = {
    "aarch64": frozenset({"gic_pmr", "gic_eoimode", "gicr_waker", "cntv_oneshot", "psci", "cpu_on", "uart_tx_irq"}),
    "x86_64": frozenset({"cpuid", "in", "out", "irq_hold", "lapic_oneshot", "pit_measure", "pit_start", "pit_read",
                         "pit_stop", "uart_loopback", "mfind", "ioseq", "uart_seq"}),
}


# Optional agent features a guest names in its hello ``caps=`` list (beyond the stack's
# capability words): checks that need one skip, naming it, on agents that lack it.
AGENT_CAP_TICK_GAPS = "tickgaps"  # pit_* replies carry missed= bunched= gaps= pending=
# The tick accounting fields of pit_* replies (docs/agent-protocol.md, "PIT tick accounting").
PIT_ACCOUNTING_FIELDS = ("missed", "bunched", "gaps", "pending")


class ErrorCode(IntEnum):
    """Numeric error codes of ``err`` replies (shared by every guest agent)."""

    BAD_FRAME = 1  # malformed request line or checksum mismatch
    UNKNOWN_COMMAND = 2
    BAD_ARGUMENT = 3  # missing, malformed or out-of-range argument
    UNSUPPORTED_WIDTH = 4  # access width not 1/2/4/8 or not allowed for that space
    FAULT = 5  # the access raised an exception in the guest (#PF, #GP)
    TIMEOUT = 6  # a guest-side wait ran out (e.g. an interrupt never came)
    NO_CPU = 7  # cpu=N names a vCPU that is not online
    UNSUPPORTED = 8  # this agent does not implement that feature on this machine
    BUSY = 9  # a previous operation still holds the resource


def checksum(data: bytes) -> int:
    """Sum of the bytes modulo 256: the frame check of both requests and replies."""
    return sum(data) & 0xFF


def fnv1a32(data: bytes) -> int:
    """FNV-1a 32-bit: the order-sensitive digest a guest reports for a UART burst."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def format_value(value: int | str | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"agent values are unsigned, got {value}")
        return hex(value) if value > 9 else str(value)
    if not _TOKEN_RE.match(value):
        raise ValueError(f"agent word {value!r} must match {_TOKEN_RE.pattern}")
    return value


def encode_request(req_id: int, command: str, args: dict[str, int | str | bool] | None = None) -> bytes:
    """The request line for ``command`` with ``args``, framed and terminated by ``\\n``."""
    if not 0 < req_id < 10**9:
        raise ValueError(f"request id {req_id} out of range 1..999999999")
    if not _TOKEN_RE.match(command):
        raise ValueError(f"bad command name {command!r}")
    parts = [f"{REQUEST_PREFIX}{req_id}", command]
    for key, value in (args or {}).items():
        if not _TOKEN_RE.match(key):
            raise ValueError(f"bad argument name {key!r}")
        parts.append(f"{key}={format_value(value)}")
    body = " ".join(parts).encode("ascii")
    line = body + b" *%02x\n" % checksum(body)
    if len(line) > MAX_LINE:
        raise ValueError(f"request longer than {MAX_LINE} bytes: {line!r}")
    return line


def parse_int(text: str) -> int:
    """Agent integers: decimal or 0x-prefixed hex, unsigned."""
    return int(text, 16) if text[:2].lower() == "0x" else int(text, 10)


@dataclass(frozen=True)
class Reply:
    """One verified reply frame."""

    req_id: int
    status: str  # "ok", "err" or "go"
    fields: dict[str, str] = field(default_factory=dict)
    code: int = 0  # err only
    text: str = ""  # err only: the message; ok/go: words without '='
    raw: bytes = b""

    def int(self, key: str) -> int:
        """Field ``key`` as an integer; KeyError/ValueError name the reply if it is missing."""
        if key not in self.fields:
            raise KeyError(f"reply has no field {key!r}: {self.raw!r}")
        try:
            return parse_int(self.fields[key])
        except ValueError:
            raise ValueError(f"field {key}={self.fields[key]!r} is not an integer: {self.raw!r}") from None

    def get_int(self, key: str, default: builtins.int | None = None) -> builtins.int | None:
        return self.int(key) if key in self.fields else default


class FrameError(ValueError):
    """A reply-shaped match that fails verification (bad checksum or body)."""


def parse_reply(raw: bytes) -> Reply:
    """Verify and decode one frame as matched by REPLY_RE (``raw`` is the whole match)."""
    m = REPLY_RE.fullmatch(raw) or REPLY_RE.search(raw)
    if m is None:
        raise FrameError(f"not a reply frame: {raw!r}")
    body_end = m.end(3)
    framed = raw[m.start() : body_end]
    want = int(m.group(4), 16)
    if checksum(framed) != want:
        raise FrameError(f"checksum {checksum(framed):02x} != {want:02x} in {raw!r}")
    req_id = int(m.group(1))
    status = m.group(2).decode()
    words = m.group(3).decode("ascii", errors="replace").split()
    if status == "err":
        if not words or not words[0].isdigit():
            raise FrameError(f"err reply without a numeric code: {raw!r}")
        return Reply(req_id, status, code=int(words[0]), text=" ".join(words[1:]), raw=bytes(raw))
    fields: dict[str, str] = {}
    loose: list[str] = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
        else:
            loose.append(word)
    return Reply(req_id, status, fields=fields, text=" ".join(loose), raw=bytes(raw))


def encode_reply(req_id: int, status: str, body: str = "") -> bytes:
    """A reply line as a guest would send it (used by tests and by Python-side fakes)."""
    head = f"{REPLY_PREFIX}{req_id} {status}" + (f" {body}" if body else "")
    data = head.encode("ascii")
    return data + b" *%02x\r\n" % checksum(data)
