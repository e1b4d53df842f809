"""Hypothesis fuzzing of microkernelia's MCP framing and JSON-RPC over vsock, with an oracle.

Each example sends a frame sequence (valid requests of both protocol eras, mutated, hostile;
pytest_vmm.strategies.mcp) on a new connection and reads everything that comes back. The
oracle (pytest_vmm.mcp_oracle, written from JSON-RPC 2.0 and the MCP spec) then checks: every
request that must be answered got exactly one response with its id; notifications and stray
responses got none; every response validates against the spec's schema for its revision
(mcp-types); the connection closed only after an over-length header, and then it did close.
Afterwards a new connection must still answer ``health``. Every failure prints a reproducer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, note

from pytest_vmm import Machine
from pytest_vmm.hypothesis_profiles import guest_settings
from pytest_vmm.mcp import (
    ConnectionClosed,
    McpClient,
    connect_machine,
    encode_frame,
    machine_socket,
    with_meta,
)
from pytest_vmm.strategies.mcp import frame_sequences, is_oversize

pytestmark = pytest.mark.vmm_requires("mcp")
pytest.importorskip("mcp_types", reason="needs mcp-types (the spec's schema): pip install 'pytest-vmm[mcp]'")

from pytest_vmm.mcp_oracle import check_exchange, reproducer

END_ID = "fuzz-end"
# Responses come in order: once this request is answered, every frame before it was handled.
# It carries the stateless envelope, so it is answered whatever the sequence did to the session.
END_MARKER = encode_frame({"jsonrpc": "2.0", "id": END_ID, "method": "server/discover", "params": with_meta(None)})
READ_TIMEOUT = 30.0


def read_all(c: McpClient, until_marker: bool) -> tuple[list[Any], bool]:
    """(responses before the marker's, closed): everything up to the marker's response, or,
    after an over-length header, up to the close. A close before the marker is reported (the
    oracle decides whether it was legal), never taken as the end of the replies."""
    got: list[Any] = []
    while True:
        try:
            raw = c.recv_frame(timeout=READ_TIMEOUT)
        except (ConnectionClosed, ConnectionResetError):
            return got, True
        except TimeoutError:
            if until_marker:
                raise AssertionError(f"no response to the end marker within {READ_TIMEOUT:.0f} s "
                                     f"({len(got)} responses before it)") from None
            return got, False
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = {"<not JSON>": raw[:200].decode(errors="replace")}
        if until_marker and isinstance(reply, dict) and reply.get("id") == END_ID:
            return got, False
        got.append(reply)


@guest_settings()
@given(seq=frame_sequences())
def test_guest_answers_frame_sequences(shared_machine: Machine, seq: list[bytes]) -> None:
    """JSON-RPC 2.0 sections 4-5 and MCP 2025-11-25/2026-07-28 (schema), through the oracle in
    pytest_vmm.mcp_oracle: every request answered once with its id, notifications unanswered,
    every response schema-valid, the connection closed only after an over-length header
    (docs/microkernelia.md, "MCP")."""
    note(f"frames: {[f[:80] for f in seq]}")
    closes = bool(seq) and is_oversize(seq[-1])
    with connect_machine(shared_machine, timeout=30) as c:
        c.send_raw(b"".join(seq) + (b"" if closes else END_MARKER))
        replies, closed = read_all(c, until_marker=not closes)
        if closes and not closed:
            closed = c.is_closed(READ_TIMEOUT)
    problems = check_exchange(seq, replies, closed)
    if problems:
        note("reproducer:\n" + reproducer(seq + ([] if closes else [END_MARKER]), machine_socket(shared_machine)))
        raise AssertionError("the guest's answers break the spec:\n  " + "\n  ".join(problems[:20]))
    try:
        with connect_machine(shared_machine, timeout=30) as c:
            health = c.health()
    except Exception as e:
        note("reproducer:\n" + reproducer(seq, machine_socket(shared_machine)))
        raise AssertionError(f"guest stopped answering health after {len(seq)} frames: {e!r}\n"
                             f"console tail:\n{shared_machine.tail()}") from e
    assert health["status"] == "ok", health
