"""Hypothesis strategies for MCP frames: valid requests, mutated frames, hostile frames and
sequences of them. Each frame strategy produces *wire bytes* (length prefix included), so a
test can send them as they are; ``frame_sequences`` produces lists of such byte strings.

    from pytest_vmm.strategies.mcp import frame_sequences
    @given(frame_sequences())
    def test_guest_survives(seq): ...
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import strategies as st

from pytest_vmm.mcp import MAX_FRAME, MODERN_VERSION, encode_frame, with_meta

TOOLS = ("infer", "health", "metadata", "load_model", "logs")
METHODS = ("initialize", "ping", "tools/list", "tools/call", "server/discover", "notifications/initialized",
           "notifications/cancelled", "resources/list", "prompts/list", "no/such/method")
# Protocol versions a request may declare: the stateless one, handshake ones, unknown ones.
VERSIONS = (MODERN_VERSION, "2025-11-25", "2025-06-18", "2024-11-05", "1999-01-01", "2026-13-01")

ids = st.one_of(st.integers(min_value=-(2**53), max_value=2**53), st.text(max_size=20))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def tool_arguments(name: str) -> st.SearchStrategy[dict[str, Any]]:
    if name == "infer":
        return st.fixed_dictionaries({"prompt": st.text(max_size=200)})
    if name == "load_model":
        return st.one_of(st.just({}), st.fixed_dictionaries({"path": st.sampled_from(["model.kv", "missing", "/model.kv", ""])}))
    if name == "logs":
        return st.fixed_dictionaries({}, optional={"since": st.integers(0, 2**40),
                                                   "max_bytes": st.integers(1, 65536)})
    return st.just({})


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed JSON-RPC request or notification, in either era: bare (2025-11-25 and
    older, after or before an initialize) or with the 2026-07-28 per-request ``_meta``."""
    kind = draw(st.sampled_from(["initialize", "ping", "tools/list", "tools/call", "server/discover",
                                 "notification", "cancel", "resources/list"]))
    modern = draw(st.booleans())
    req_id = draw(ids)
    if kind in ("notification", "cancel"):
        note: dict[str, Any] = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        if kind == "cancel":
            note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": req_id}}
        return note
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": kind}
    if kind == "initialize":
        msg["params"] = {"protocolVersion": draw(st.sampled_from(["2025-11-25", "2025-06-18", "2024-11-05", "1999-01-01"])),
                         "capabilities": {}, "clientInfo": {"name": "hypothesis", "version": "1"}}
    elif kind == "tools/call":
        name = draw(st.sampled_from(TOOLS))
        msg["params"] = {"name": name, "arguments": draw(tool_arguments(name))}
    if modern:
        msg["params"] = with_meta(msg.get("params"), draw(st.sampled_from(VERSIONS)))
        if draw(st.integers(0, 9)) == 0:  # now and then, a required envelope field missing
            del msg["params"]["_meta"][draw(st.sampled_from(sorted(msg["params"]["_meta"])))]
    return msg


def valid_frames() -> st.SearchStrategy[bytes]:
    return valid_requests().map(encode_frame)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid request with its JSON damaged: fields dropped/retyped, bytes flipped, cut, padded."""
    msg = draw(valid_requests())
    how = draw(st.sampled_from(["drop", "retype", "flip", "truncate", "insert", "wrap"]))
    if how in ("drop", "retype") and msg:
        key = draw(st.sampled_from(sorted(msg)))
        if how == "drop":
            del msg[key]
        else:
            msg[key] = draw(json_values)
        return encode_frame(msg)
    if how == "wrap":
        return encode_frame(json.dumps(draw(st.sampled_from([[msg], msg.get("method"), 42, None]))))
    body = bytearray(json.dumps(msg).encode())
    if how == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        body[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    else:
        i = draw(st.integers(0, len(body)))
        body[i:i] = draw(st.binary(min_size=1, max_size=8))
    return encode_frame(bytes(body))


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    """Frames aimed at the parser and the framing: junk bytes, invalid UTF-8, deep nesting,
    huge numbers, zero length, lengths that lie. Oversize lengths are sent header-only (the
    guest must refuse them from the header and close the connection)."""
    kind = draw(st.sampled_from(["junk", "utf8", "deep", "bignum", "empty", "long_string", "oversize", "escapes"]))
    if kind == "junk":
        return encode_frame(draw(st.binary(max_size=256)))
    if kind == "utf8":
        return encode_frame(b'{"jsonrpc":"2.0","id":1,"method":"' + draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + b'"}')
    if kind == "deep":
        depth = draw(st.integers(100, 5000))
        return encode_frame("[" * depth + "]" * depth)
    if kind == "bignum":
        return encode_frame('{"jsonrpc":"2.0","id":' + "9" * draw(st.integers(20, 400)) + ',"method":"ping"}')
    if kind == "empty":
        return encode_frame(b"")
    if kind == "long_string":
        n = draw(st.integers(1000, 64 * 1024))
        return encode_frame({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": "infer", "arguments": {"prompt": "x" * n}}})
    if kind == "escapes":
        return encode_frame('{"jsonrpc":"2.0","id":"\\ud800\\u0000","method":"p\\u0069ng"}')
    length = draw(st.integers(MAX_FRAME + 1, 2**32 - 1))
    return struct.pack(">I", length)


def is_oversize(frame: bytes) -> bool:
    return len(frame) >= 4 and struct.unpack(">I", frame[:4])[0] > MAX_FRAME


def any_frames() -> st.SearchStrategy[bytes]:
    return st.one_of(valid_frames(), mutated_frames(), hostile_frames())


def frame_sequences(max_size: int = 8) -> st.SearchStrategy[list[bytes]]:
    """Lists of frames to send on one connection; an oversize header, which ends the
    connection, only ever comes last."""
    return st.lists(any_frames(), min_size=1, max_size=max_size).map(
        lambda seq: [f for f in seq if not is_oversize(f)] + [f for f in seq if is_oversize(f)][:1])


__all__ = [
    "METHODS",
    "TOOLS",
    "VERSIONS",
    "any_frames",
    "frame_sequences",
    "hostile_frames",
    "is_oversize",
    "json_values",
    "mutated_frames",
    "valid_frames",
    "valid_requests",
]
