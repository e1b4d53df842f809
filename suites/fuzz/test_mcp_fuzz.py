"""Hypothesis fuzzing of microkernelia's MCP framing and JSON-RPC over vsock.

Each example sends a frame sequence (valid, mutated, hostile; pytest_vmm.strategies.mcp) on a
new connection, reads whatever comes back, then checks that a new connection still answers
``health``. A guest that dies fails with the console tail and Hypothesis's reproducer.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, note

from pytest_vmm import Machine
from pytest_vmm.hypothesis_profiles import guest_settings
from pytest_vmm.mcp import ConnectionClosed, McpClient, connect_machine, encode_frame
from pytest_vmm.strategies.mcp import frame_sequences, is_oversize

pytestmark = pytest.mark.vmm_requires("mcp")
END_ID = "fuzz-end"
# Replies come in order: once this ping is answered, every frame before it was handled.
END_MARKER = encode_frame({"jsonrpc": "2.0", "id": END_ID, "method": "ping"})


def _drain(c: McpClient, until_marker: bool) -> list[bytes]:
    """Every reply up to the marker's (or, after an oversize header, up to the close)."""
    got = []
    while True:
        try:
            raw = c.recv_frame(timeout=30)
        except (ConnectionClosed, ConnectionResetError):
            return got
        if until_marker and json.loads(raw).get("id") == END_ID:
            return got
        got.append(raw)


@guest_settings()
@given(seq=frame_sequences())
def test_guest_survives_frame_sequences(shared_machine: Machine, seq: list[bytes]) -> None:
    note(f"frames: {[f[:80] for f in seq]}")
    with connect_machine(shared_machine, timeout=30) as c:
        closes = bool(seq) and is_oversize(seq[-1])
        c.send_raw(b"".join(seq) + (b"" if closes else END_MARKER))
        replies = _drain(c, until_marker=not closes)
        for raw in replies:
            reply = json.loads(raw)  # every reply is JSON-RPC 2.0 JSON
            assert reply.get("jsonrpc") == "2.0", reply
    if seq and is_oversize(seq[-1]):
        assert replies, "an oversize header must get an error reply before the close"
    try:
        with connect_machine(shared_machine, timeout=30) as c:
            health = c.health()
    except Exception as e:
        raise AssertionError(f"guest stopped answering health after {len(seq)} frames: {e!r}\n"
                             f"console tail:\n{shared_machine.tail()}") from e
    assert health["status"] == "ok", health
