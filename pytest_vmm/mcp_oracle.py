"""What an MCP server must answer to a sequence of frames on one connection, and a check of
what it did answer: the fuzz oracle (suites/fuzz/test_mcp_fuzz.py, benchmarks/mcp.py).

The model is JSON-RPC 2.0's, written from the spec, not from the server:
- a frame whose body is not JSON (RFC 8259, UTF-8 only) or not a Request object gets exactly
  one error response with ``id: null`` (section 5);
- a Request object without an ``id`` member is a notification and gets nothing (section 4.1);
- a Request object with an ``id`` gets exactly one response carrying that id if MCP allows it
  (string or integer, basic/index "Requests"), else one with ``id: null``;
- a Response object (no ``method``; ``result`` or ``error``) is not a request: nothing;
- an over-length header (above 1 MiB, microkernelia's vsock binding) gets one error response
  with ``id: null``, then the connection closes. No other close is legal.
Responses come in request order (one connection is served in order), so they are matched one
by one; each is validated against the spec's schema for its revision (:mod:`pytest_vmm.mcp_schema`).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from dataclasses import dataclass
from typing import Any

from pytest_vmm.mcp import MAX_FRAME, META_PROTOCOL_VERSION, MODERN_VERSION, PROTOCOL_VERSION
from pytest_vmm.mcp_schema import HANDSHAKE_PROTOCOL_VERSIONS, response_problems

NONE = "none"          # nothing may come back
ANSWER = "answer"      # exactly one response
CLOSE = "close"        # one error response (id null), then the connection closes
# Integers outside 64 bits cannot be held by every receiver (RFC 8259 section 6): the server
# may answer with the id, or with null as for an id it could not read.
_INT_RANGE = (-(2**63), 2**64 - 1)
# RFC 8259 section 9: a parser may limit nesting depth; beyond this a receiver may refuse the
# whole text (parse error, id null) instead of reading the id.
_DEPTH_LIMIT = 100


@dataclass(frozen=True)
class Expect:
    kind: str                    # NONE, ANSWER or CLOSE
    ids: tuple[Any, ...] = ()    # acceptable response ids
    method: str | None = None    # to pick the result schema
    modern: bool = False         # carries the 2026-07-28 envelope with its version


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def _finite_int(text: str) -> int:
    value = int(text)
    if abs(value) > sys.float_info.max:
        raise _NotJson(f"{text[:20]}... overflows a double")  # receivers disagree: treat as not JSON
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJson(f"{text} overflows a double")  # receivers disagree: treat as not JSON
    return value


def _depth_and_strings(value: Any) -> int:
    """Nesting depth; lone surrogates (\\ud800) cannot be UTF-8 (RFC 8259 section 8.2), so
    they raise: not interoperable JSON."""
    if isinstance(value, str):
        value.encode("utf-8")
        return 0
    if isinstance(value, list):
        return 1 + max((_depth_and_strings(v) for v in value), default=0)
    if isinstance(value, dict):
        for k in value:
            k.encode("utf-8")
        return 1 + max((_depth_and_strings(v) for v in value.values()), default=0)
    return 0


def parse_json(body: bytes) -> tuple[bool, Any, int]:
    """(True, value, depth) for JSON text a strict receiver accepts, (False, None, 0) otherwise."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant,
                           parse_float=_finite_float, parse_int=_finite_int)
        depth = _depth_and_strings(value)
    except (UnicodeError, ValueError, RecursionError):
        return False, None, 0
    return True, value, depth


def _valid_id(rid: Any) -> tuple[Any, ...]:
    if isinstance(rid, str):
        try:
            rid.encode("utf-8")
        except UnicodeError:
            return (None,)
        return (rid,)
    if isinstance(rid, int) and not isinstance(rid, bool):
        return (rid,) if _INT_RANGE[0] <= rid <= _INT_RANGE[1] else (rid, None)
    return (None,)


def expect(frame: bytes) -> Expect:
    """What one wire frame (length prefix included) must get back."""
    (length,) = struct.unpack(">I", frame[:4])
    if length > MAX_FRAME:
        return Expect(CLOSE, (None,))
    ok, msg, depth = parse_json(frame[4:4 + length])
    if not ok or not isinstance(msg, dict):
        return Expect(ANSWER, (None,))
    if depth > _DEPTH_LIMIT:
        return Expect(ANSWER, (*_valid_id(msg.get("id")), None))
    if "method" not in msg and "id" in msg and ("result" in msg or "error" in msg):
        return Expect(NONE)
    is_request = (msg.get("jsonrpc") == "2.0" and isinstance(msg.get("method"), str)
                  and ("params" not in msg or isinstance(msg["params"], (dict, list))))
    if not is_request:
        return Expect(ANSWER, _valid_id(msg["id"]) if "id" in msg else (None,))
    if "id" not in msg:
        return Expect(NONE)
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    modern = isinstance(meta, dict) and meta.get(META_PROTOCOL_VERSION) == MODERN_VERSION
    return Expect(ANSWER, _valid_id(msg["id"]), msg["method"], modern)


def check_exchange(frames: list[bytes], replies: list[Any], closed: bool) -> list[str]:
    """Problems with ``replies`` (decoded JSON, in arrival order) as the answers to ``frames``;
    ``closed``: the server closed the connection. Empty: the server did what the spec says."""
    problems: list[str] = []
    queue = list(replies)
    legacy_version: str | None = None  # set by an answered initialize on this connection
    close_legal = False
    for n, frame in enumerate(frames):
        want = expect(frame)
        if want.kind == NONE:
            continue
        if not queue:
            problems.append(f"frame {n} ({frame[:60]!r}) got no response")
            continue
        reply = queue.pop(0)
        rid = reply.get("id", "<missing>") if isinstance(reply, dict) else "<not an object>"
        if rid not in want.ids or isinstance(rid, bool):
            problems.append(f"frame {n} ({frame[:60]!r}): response id {rid!r}, expected one of {list(want.ids)}"
                            f" (or a reply to another frame): {str(reply)[:200]}")
            continue
        version = MODERN_VERSION if want.modern else (legacy_version or PROTOCOL_VERSION)
        for p in response_problems(reply, rid, want.method, version):
            problems.append(f"frame {n} ({frame[:60]!r}): {p}")
        if (want.method == "initialize" and not want.modern and isinstance(reply, dict)
                and isinstance(reply.get("result"), dict)
                and reply["result"].get("protocolVersion") in HANDSHAKE_PROTOCOL_VERSIONS):
            legacy_version = reply["result"]["protocolVersion"]
        if want.kind == CLOSE:
            close_legal = True
            if n != len(frames) - 1:
                problems.append(f"frame {n} is over-length but not the last of the sequence (strategy bug)")
            break
    for extra in queue:
        problems.append(f"a response no frame asked for: {str(extra)[:200]}")
    if closed and not close_legal:
        problems.append("the server closed the connection, which no frame made legal")
    if close_legal and not closed:
        problems.append("the server kept the connection open after refusing an over-length frame")
    return problems


def reproducer(frames: list[bytes], socket_path: str = "<vsock.sock>") -> str:
    """A script that replays ``frames`` on a fresh connection."""
    wire = b"".join(frames)
    return ("from pytest_vmm.mcp import connect\n"
            f"c = connect({socket_path!r})\n"
            f"c.send_raw(bytes.fromhex({wire.hex()!r}))\n"
            "while True: print(c.recv_frame(5))\n")
