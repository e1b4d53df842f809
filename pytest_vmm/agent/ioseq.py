"""Port-I/O sequences the probe agent runs with interrupts off (``ioseq``, and ``uart_seq``
on the console's own COM1, which the agent restores afterwards): a register check can then
see a change within microseconds instead of one agent round trip per access.

    seq = PortSeq().out(0x43, 0xE2).read(0x40)
    status, = seq.run(agent)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_vmm.agent.client import AgentClient

MAX_RESULTS = 48  # guests/probe/agent.c SEQ_MAX_RESULTS
MAX_MS = 3000  # longest poll/count/delay one op may take


class PortSeq:
    def __init__(self) -> None:
        self.ops: list[str] = []
        self.results = 0

    def _result(self, op: str) -> PortSeq:
        if self.results == MAX_RESULTS:
            raise ValueError(f"a port sequence returns at most {MAX_RESULTS} values")
        self.results += 1
        self.ops.append(op)
        return self

    def out(self, port: int, value: int) -> PortSeq:
        self.ops.append(f"o{port:x}.{value & 0xFF:x}")
        return self

    def repeat(self, port: int, value: int, times: int) -> PortSeq:
        """``out(port, value)`` ``times`` times (to fill a FIFO in one short op)."""
        if not 0 < times <= 0xFFFF:
            raise ValueError(f"repeat count {times} out of range")
        self.ops.append(f"w{port:x}.{value & 0xFF:x}.{times:x}")
        return self

    def read(self, port: int) -> PortSeq:
        return self._result(f"i{port:x}")

    def delay(self, us: int) -> PortSeq:
        if not 0 <= us <= MAX_MS * 1000:
            raise ValueError(f"delay {us} us out of range")
        self.ops.append(f"d{us:x}")
        return self

    def poll(self, port: int, mask: int, value: int, ms: int) -> PortSeq:
        """Read ``port`` until ``(value_read & mask) == value``; its result is the last read.
        The agent answers err 6 (TIMEOUT) when ``ms`` pass first."""
        if not 0 <= ms <= MAX_MS:
            raise ValueError(f"poll {ms} ms out of range")
        return self._result(f"p{port:x}.{mask:x}.{value:x}.{ms:x}")

    def count(self, port: int, mask: int, ms: int) -> PortSeq:
        """Read ``port`` back to back for ``ms``; result: how many reads had a ``mask`` bit set."""
        if not 0 <= ms <= MAX_MS:
            raise ValueError(f"count {ms} ms out of range")
        return self._result(f"c{port:x}.{mask:x}.{ms:x}")

    def time(self) -> PortSeq:
        """Result: ns since the sequence started, by the guest TSC."""
        return self._result("t")

    def encoded(self) -> str:
        return ",".join(self.ops)

    def run(self, agent: AgentClient, console_uart: bool = False, timeout: float | None = None) -> list[int]:
        command = "uart_seq" if console_uart else "ioseq"
        reply = agent.request(command, ops=self.encoded(), timeout=timeout)
        text = reply.fields.get("v", "")
        values = [int(v, 16) for v in text.split(",") if v]
        if len(values) != self.results:
            raise ValueError(f"{command}: expected {self.results} values, got {len(values)}: {reply.raw!r}")
        return values
