"""MCP framing and JSON-RPC conformance over virtio-vsock (microkernelia, seed 002), for both
protocol eras: 2026-07-28 (stateless, per-request ``_meta``) and 2025-11-25 (``initialize``).

Expected values come from the specs (JSON-RPC 2.0; MCP 2025-11-25 and 2026-07-28, cited per
check), from the official schema models (``mcp-types``, through :mod:`pytest_vmm.mcp_schema`)
and, for tool outputs, from an independent reading of the model file in this test. Framing
(u32 big-endian length + UTF-8 JSON, at most 1 MiB) is microkernelia's vsock binding. Every
check ends by asking the guest for ``health`` on a new connection: whatever a peer sends, the
server keeps serving.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_vmm import Machine
from pytest_vmm.mcp import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_FRAME,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    METHOD_NOT_FOUND,
    MODERN_VERSION,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    McpClient,
    connect_machine,
    encode_frame,
    with_meta,
)

pytestmark = pytest.mark.vmm_requires("mcp")
pytest.importorskip("mcp_types", reason="needs mcp-types (the spec's schema): pip install 'pytest-vmm[mcp]'")

from pytest_vmm.mcp_schema import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    MODERN_PROTOCOL_VERSIONS,
    response_problems,
)

LEGACY = "2025-11-25"
ERAS = [MODERN_VERSION, LEGACY]
MODEL_FILE = Path(__file__).resolve().parents[1] / "guests" / "microkernelia" / "model" / "model.kv"


def client(machine: Machine, era: str = MODERN_VERSION) -> McpClient:
    """A connection speaking ``era``: the 2026-07-28 envelope, or 2025-11-25 after initialize."""
    c = connect_machine(machine, timeout=30.0)
    if era != MODERN_VERSION:
        c.initialize(era)
    return c


def assert_healthy(machine: Machine) -> None:
    with client(machine) as c:
        health = c.health()
    assert health["status"] == "ok", f"health says {health}"


def answer(c: McpClient, era: str, method: str, params: dict[str, Any] | None = None, req_id: Any = 1) -> dict[str, Any]:
    """Send one request in ``era``'s form; the reply, checked against the spec's schema."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if era == MODERN_VERSION:
        msg["params"] = with_meta(params)
    elif params is not None:
        msg["params"] = params
    c.send_frame(msg)
    reply = c.recv_json()
    problems = response_problems(reply, request_id=req_id, method=method, version=era)
    assert not problems, f"{method} ({era}): {problems}\nreply: {str(reply)[:500]}"
    return reply


def error_code(reply: dict[str, Any], request_id: Any = 1) -> int:
    assert "error" in reply, f"expected a JSON-RPC error, got {str(reply)[:300]}"
    problems = response_problems(reply, request_id=request_id)
    assert not problems, problems
    return int(reply["error"]["code"])


# ---------------------------------------------------------------- version negotiation

def test_legacy_handshake_negotiates_a_handshake_revision(shared_machine: Machine) -> None:
    """MCP 2025-11-25 basic/lifecycle "Version Negotiation": a supported version is echoed,
    otherwise the server answers with another version it supports (its latest). 2026-07-28
    has no initialize (changelog 2), so the answer is always a handshake revision (the set
    mcp-types lists, not the project's own)."""
    with client(shared_machine, MODERN_VERSION) as c:
        c.protocol = None
        for asked, expected in [(LEGACY, LEGACY), ("2024-11-05", "2024-11-05"), ("2025-06-18", "2025-06-18")]:
            r = answer(c, LEGACY, "initialize", {"protocolVersion": asked, "capabilities": {},
                                                  "clientInfo": {"name": "t", "version": "1"}})
            assert r["result"]["protocolVersion"] == expected, r
        for asked in ["1999-01-01", MODERN_VERSION]:
            r = answer(c, LEGACY, "initialize", {"protocolVersion": asked, "capabilities": {}})
            got = r["result"]["protocolVersion"]
            assert got in HANDSHAKE_PROTOCOL_VERSIONS, f"initialize({asked}) answered {got}, not a handshake revision"
            assert got == HANDSHAKE_PROTOCOL_VERSIONS[-1], f"initialize({asked}) answered {got}, not the latest"
        assert answer(c, LEGACY, "ping")["result"] == {}


def test_discover_lists_both_eras(shared_machine: Machine) -> None:
    """MCP 2026-07-28 server/discover: servers MUST implement it; supportedVersions names the
    versions a client may choose. A dual-era server (basic/versioning "Backward Compatibility")
    lists the stateless revision and the handshake one."""
    with client(shared_machine) as c:
        r = answer(c, MODERN_VERSION, "server/discover", req_id="discover-1")
    versions = r["result"]["supportedVersions"]
    assert MODERN_VERSION in versions and LEGACY in versions, versions
    assert set(versions) <= set(MODERN_PROTOCOL_VERSIONS) | set(HANDSHAKE_PROTOCOL_VERSIONS), versions
    assert "tools" in r["result"]["capabilities"], r


def test_unsupported_version_then_retry(shared_machine: Machine) -> None:
    """MCP 2026-07-28 basic/versioning "Protocol Version Negotiation": an unsupported per-request
    version MUST get UnsupportedProtocolVersionError (-32022) listing the supported versions;
    the client retries with one of them, and that request is served."""
    with client(shared_machine) as c:
        c.send_frame({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                      "params": with_meta(None, "1900-01-01")})
        reply = c.recv_json()
        assert error_code(reply) == UNSUPPORTED_PROTOCOL_VERSION, reply
        assert reply["error"]["data"]["requested"] == "1900-01-01", reply
        modern = [v for v in reply["error"]["data"]["supported"] if v in MODERN_PROTOCOL_VERSIONS]
        assert modern, f"no stateless revision among {reply['error']['data']['supported']}"
        c.send_frame({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": with_meta(None, modern[0])})
        retried = c.recv_json()
        assert not response_problems(retried, 2, "tools/list", modern[0]), retried


def test_modern_request_missing_required_meta(shared_machine: Machine) -> None:
    """MCP 2026-07-28 basic/index "_meta": clientCapabilities is required on every request; a
    request missing it is malformed and MUST be rejected with -32602."""
    with client(shared_machine) as c:
        c.send_frame({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                      "params": {"_meta": {META_PROTOCOL_VERSION: MODERN_VERSION}}})
        assert error_code(c.recv_json()) == INVALID_PARAMS


def test_stateless_requests_set_up_no_session(shared_machine: Machine) -> None:
    """MCP 2026-07-28 basic/index "Statelessness": servers MUST NOT rely on prior requests on the
    connection. A modern request neither needs nor creates a session: a bare (legacy) request
    on the same connection is still before initialize; a modern one after a legacy initialize
    is still answered as 2026-07-28 (every result carries resultType, basic/index "ResultType")."""
    with client(shared_machine) as c:
        assert "resultType" in answer(c, MODERN_VERSION, "tools/list")["result"]
        c.send_frame({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert "error" in c.recv_json(), "a bare request after a stateless one was served as if initialised"
        c.initialize(LEGACY)
        legacy = answer(c, LEGACY, "tools/list", req_id=3)
        modern = answer(c, MODERN_VERSION, "tools/list", req_id=4)
    assert modern["result"]["resultType"] == "complete", modern
    assert [t["name"] for t in legacy["result"]["tools"]] == [t["name"] for t in modern["result"]["tools"]]


def test_removed_methods_under_2026(shared_machine: Machine) -> None:
    """MCP 2026-07-28 changelog 2 and 5: initialize/initialized and ping are removed; a request
    for a method the revision does not have is "Method not found" (JSON-RPC 2.0 section 5.1)."""
    with client(shared_machine) as c:
        c.send_frame({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": with_meta(None)})
        assert error_code(c.recv_json()) == METHOD_NOT_FOUND


def test_requests_before_initialize_under_2025(shared_machine: Machine) -> None:
    """MCP 2025-11-25 basic/lifecycle "Initialization": the client SHOULD NOT send requests other
    than pings before initialize. A dual-era server cannot tell such a request's era (no
    negotiated version, no per-request _meta, which 2026-07-28 requires: -32602), so it is
    refused rather than served under guessed semantics; ping is answered."""
    with client(shared_machine) as c:
        c.protocol = None
        c.send_frame({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert error_code(c.recv_json()) == INVALID_PARAMS
        c.send_frame({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "health"}})
        assert error_code(c.recv_json(), 2) == INVALID_PARAMS
        assert answer(c, LEGACY, "ping", req_id=3)["result"] == {}


# ---------------------------------------------------------------- tools

def test_tools_list_has_schemas(shared_machine: Machine) -> None:
    """MCP tools/list (both revisions): every tool has a name and an object inputSchema; the
    2026-07-28 result is cacheable (ttlMs, cacheScope: changelog minor 5). Schema-checked."""
    for era in ERAS:
        with client(shared_machine, era) as c:
            tools = {t["name"]: t for t in answer(c, era, "tools/list")["result"]["tools"]}
        for name, tool in tools.items():
            assert tool["inputSchema"]["type"] == "object", f"{era}: {name} has no object input schema: {tool}"
        assert {"infer", "health", "load_model"} <= set(tools), f"{era}: tools {sorted(tools)}"


def model_rows() -> dict[str, str]:
    """The model file read here, independently of the guest's parser: prompt -> answer."""
    rows = {}
    for line in MODEL_FILE.read_text().splitlines():
        if line and not line.startswith(("#", "@")) and "\t" in line:
            prompt, reply = line.split("\t", 1)
            rows[prompt] = reply
    return rows


@pytest.mark.parametrize("era", ERAS)
def test_every_tool(shared_machine: Machine, era: str) -> None:
    """MCP server/tools "Calling Tools" and "Error Handling": results are content blocks
    (schema-checked for the revision); a failing tool is a result with isError, not a protocol
    error. infer's answers are the model file's, read by this test."""
    rows = model_rows()
    with client(shared_machine, era) as c:
        call = lambda name, args: answer(c, era, "tools/call", {"name": name, "arguments": args})["result"]
        loaded = call("load_model", {"path": "model.kv"})
        assert loaded["isError"] is False, loaded
        assert loaded["structuredContent"]["rows"] == len(rows), loaded
        for prompt in ["what is vsock", "what is virtio"]:
            got = call("infer", {"prompt": prompt})
            assert got["content"] == [{"type": "text", "text": rows[prompt]}], got
        health = call("health", {})["structuredContent"]
        assert health["status"] == "ok" and health["model_loaded"] is True, health
        meta = call("metadata", {})["structuredContent"]
        assert meta["maxFrame"] == MAX_FRAME and MODERN_VERSION in meta["protocolVersions"], meta
        logs = call("logs", {"max_bytes": 65536})["structuredContent"]["text"]
        console = shared_machine.console_text().decode(errors="replace")
        ready = re.search(r"microkernelia: mcp ready[^\r\n]*", logs)
        assert ready, f"the kernel log has no 'mcp ready' line: {logs[-300:]!r}"
        assert ready.group(0) in console, "the log tool and the serial console disagree"
        missing = call("load_model", {"path": "no-such-file"})
        assert missing["isError"] is True, missing
        assert call("infer", {})["isError"] is True


@pytest.mark.parametrize("era", ERAS)
def test_unknown_tool_and_unknown_method(shared_machine: Machine, era: str) -> None:
    """MCP server/tools "Error Handling": an unknown tool is -32602; JSON-RPC 2.0 section 5.1: an
    unknown method is -32601 (resources/list and prompts/list: capabilities not declared)."""
    with client(shared_machine, era) as c:
        c.send_frame({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": with_meta({"name": "nope"}) if era == MODERN_VERSION else {"name": "nope"}})
        assert error_code(c.recv_json()) == INVALID_PARAMS
        for n, method in enumerate(["no/such", "resources/list", "prompts/list"], start=2):
            c.send_frame({"jsonrpc": "2.0", "id": n, "method": method,
                          **({"params": with_meta(None)} if era == MODERN_VERSION else {})})
            assert error_code(c.recv_json(), n) == METHOD_NOT_FOUND, method


# ---------------------------------------------------------------- JSON-RPC 2.0 edge cases

def readable_id(frame: bytes) -> Any:
    """The id a response must carry (JSON-RPC 2.0 section 5): the request's, when it is an object
    with a valid id (MCP: string or integer), else null."""
    try:
        msg = json.loads(frame)
    except ValueError:
        return None
    rid = msg.get("id") if isinstance(msg, dict) else None
    return rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None


@pytest.mark.parametrize("frame, code", [
    (b"{oops", PARSE_ERROR),
    (b"\xff\xfe\xfd", PARSE_ERROR),
    (b"[1, 2, 3]", INVALID_REQUEST),
    (b"[]", INVALID_REQUEST),
    (b"42", INVALID_REQUEST),
    (b'"ping"', INVALID_REQUEST),
    (b"null", INVALID_REQUEST),
    (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', INVALID_REQUEST),
    (b'{"id":1,"method":"ping"}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":7}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","method":"ping","params":7}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","method":1,"params":"bar"}', INVALID_REQUEST),
], ids=["parse", "utf8", "batch", "empty-batch", "number", "string", "null", "jsonrpc-1.0",
        "no-jsonrpc", "no-method", "method-number", "scalar-params-no-id", "jsonrpc-spec-example"])
def test_error_codes(shared_machine: Machine, frame: bytes, code: int) -> None:
    """JSON-RPC 2.0 section 5.1 codes: -32700 for invalid JSON, -32600 for a value that is not a
    Request object (MCP 2025-06-18 removed batches, so an array is not one), answered even
    without an id since it is no notification either (section 7's example ``"method": 1``).
    Section 5: when the id cannot be read (parse error, invalid request), the response id MUST
    be null."""
    with client(shared_machine) as c:
        c.send_frame(frame)
        reply = c.recv_json()
        assert error_code(reply, readable_id(frame)) == code
        assert "id" in reply, "the id member is required even when null (JSON-RPC 2.0 section 5)"
        assert c.discover()["supportedVersions"], "the connection must stay usable after an error reply"


@pytest.mark.parametrize("bad_id", ["null", "1.5", "true", "[1]", '{"a":1}'])
def test_invalid_id_types(shared_machine: Machine, bad_id: str) -> None:
    """MCP basic/index "Requests": an id MUST be a string or an integer, never null. A request
    with another id is not a valid Request (-32600); its id cannot be used, so the response's is
    null (JSON-RPC 2.0 section 5)."""
    with client(shared_machine) as c:
        c.send_frame(b'{"jsonrpc":"2.0","id":' + bad_id.encode() + b',"method":"server/discover"}')
        assert error_code(c.recv_json(), None) == INVALID_REQUEST


@pytest.mark.parametrize("req_id", [0, -1, 2**53, "", "x" * 200, "ünïcode"])
def test_valid_ids_come_back_unchanged(shared_machine: Machine, req_id: Any) -> None:
    """JSON-RPC 2.0 section 5: the response id MUST be the same as the request's."""
    with client(shared_machine) as c:
        answer(c, MODERN_VERSION, "server/discover", req_id=req_id)


def test_params_must_be_structured(shared_machine: Machine) -> None:
    """JSON-RPC 2.0 section 4.2: params, if present, MUST be an object or array; MCP params are
    objects, so an array is -32602."""
    with client(shared_machine) as c:
        c.send_frame(b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}')
        assert error_code(c.recv_json()) == INVALID_PARAMS


@pytest.mark.parametrize("era", ERAS)
def test_notifications_get_no_reply(shared_machine: Machine, era: str) -> None:
    """JSON-RPC 2.0 section 4.1 and MCP basic/index "Notifications": the receiver MUST NOT reply
    to a notification, known, unknown or malformed; MCP basic/utilities/cancellation: a
    cancellation of an unknown or finished request is ignored."""
    meta = {"params": with_meta(None)} if era == MODERN_VERSION else {}
    with client(shared_machine, era) as c:
        c.notify("notifications/initialized")
        c.notify("notifications/cancelled", {"requestId": 1, "reason": "test"})
        c.notify("notifications/cancelled", {"requestId": "never-sent"})
        c.send_frame({"jsonrpc": "2.0", "method": "no/such/notification", **meta})
        c.send_frame({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": [7]})
        assert c.expect_silence(1.0) is None, "a notification was answered"
        assert answer(c, era, "tools/list", req_id=9)["id"] == 9


def test_cancelling_an_answered_request(shared_machine: Machine) -> None:
    """MCP 2025-11-25 basic/utilities/cancellation: a cancellation may arrive after the request
    finished; the receiver ignores it, and the request still got exactly one response."""
    with client(shared_machine, LEGACY) as c:
        c.send_frame({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"name": "health", "arguments": {}}})
        c.notify("notifications/cancelled", {"requestId": 41})
        assert c.recv_json()["id"] == 41
        assert c.expect_silence(0.5) is None, "a second response (or a reply to the cancellation) came"


def test_client_responses_are_not_answered(shared_machine: Machine) -> None:
    """JSON-RPC 2.0 section 5: a Response is not a Request; the server sent no request, so a
    stray response gets nothing back."""
    with client(shared_machine) as c:
        c.send_frame({"jsonrpc": "2.0", "id": 5, "result": {}})
        c.send_frame({"jsonrpc": "2.0", "id": 6, "error": {"code": 1, "message": "x"}})
        assert c.expect_silence(1.0) is None


# ---------------------------------------------------------------- framing (microkernelia's binding)

def test_internal_error_for_an_unframeable_reply(shared_machine: Machine) -> None:
    """-32603 (JSON-RPC 2.0 section 5.1): infer echoes the prompt, so a prompt that fills a 1 MiB
    request makes a reply above 1 MiB, which the server cannot frame."""
    with client(shared_machine) as c:
        c.call_tool("load_model")
        head = (b'{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"_meta":{"'
                + META_PROTOCOL_VERSION.encode() + b'":"' + MODERN_VERSION.encode() + b'","'
                + META_CLIENT_CAPABILITIES.encode() + b'":{}},"name":"infer","arguments":{"prompt":"')
        tail = b'"}}}'
        c.send_frame(head + b"a" * (MAX_FRAME - len(head) - len(tail)) + tail)
        reply = c.recv_json(timeout=60)
        assert error_code(reply, 77) == INTERNAL_ERROR, str(reply)[:300]


def test_exactly_one_mib_is_accepted(shared_machine: Machine) -> None:
    """docs/microkernelia.md, "MCP" (framing): a frame of exactly 1 MiB is within the limit and is
    answered (a ping padded with JSON whitespace, RFC 8259 section 2, is still one request)."""
    body = b'{"jsonrpc":"2.0","id":5,"method":"ping"}'
    frame = body + b" " * (MAX_FRAME - len(body))
    assert len(frame) == MAX_FRAME
    with client(shared_machine) as c:
        c.send_frame(frame)
        assert c.recv_json(timeout=60) == {"jsonrpc": "2.0", "id": 5, "result": {}}


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 2**32 - 1], ids=["1MiB+1", "4GiB"])
def test_oversize_length_refused_then_closed(shared_machine: Machine, length: int) -> None:
    """docs/microkernelia.md, "MCP" (framing): a length above 1 MiB is refused at the header with
    -32600 (JSON-RPC 2.0 section 5.1, Invalid Request) naming the length, then the connection is
    closed, and the body is never allocated (the heap does not grow by its size)."""
    with client(shared_machine) as c:
        before = c.health()["heap_used"]
        c.send_raw(struct.pack(">I", length))  # only the header: the guest must not wait for the body
        reply = c.recv_json()
        assert error_code(reply, None) == INVALID_REQUEST and reply["error"]["data"]["length"] == length, reply
        assert c.is_closed(), "the guest must close the connection after refusing a frame"
    with client(shared_machine) as c:
        after = c.health()["heap_used"]
    # The refused frame was never allocated: the heap did not grow by anything like its size.
    assert after - before < 512 * 1024, f"heap grew from {before} to {after} bytes"


def test_zero_length_frame_is_a_parse_error(shared_machine: Machine) -> None:
    """An empty body is not JSON text: -32700 with id null (JSON-RPC 2.0 section 5.1)."""
    with client(shared_machine) as c:
        c.send_raw(b"\0\0\0\0")
        assert error_code(c.recv_json(), None) == PARSE_ERROR
        assert c.discover()


def test_truncated_frame_then_close_then_new_connection(shared_machine: Machine) -> None:
    """docs/microkernelia.md, "MCP" (framing): a peer that leaves mid-frame costs the server
    nothing; a new connection is served (health)."""
    with client(shared_machine) as c:
        c.send_raw(struct.pack(">I", 100) + b'{"jsonrpc":"2.0"')
    assert_healthy(shared_machine)


def test_one_byte_at_a_time(shared_machine: Machine) -> None:
    """docs/microkernelia.md, "MCP" (framing): the decoder takes whatever chunks arrive; two frames
    sent a byte at a time get two responses (JSON-RPC 2.0 section 5: same id, empty ping result,
    MCP 2025-11-25 basic/utilities/ping)."""
    wire = encode_frame({"jsonrpc": "2.0", "id": 9, "method": "ping"}) * 2
    with client(shared_machine) as c:
        for i in range(len(wire)):
            c.send_raw(wire[i:i + 1])
            time.sleep(0.002)
        assert c.recv_json() == {"jsonrpc": "2.0", "id": 9, "result": {}}
        assert c.recv_json() == {"jsonrpc": "2.0", "id": 9, "result": {}}


def test_pipelined_frames_answered_in_order(shared_machine: Machine) -> None:
    """docs/microkernelia.md, "MCP" (framing): several frames in one packet are answered in order;
    each request gets exactly one response with its id (JSON-RPC 2.0 section 5)."""
    wire = b"".join(encode_frame({"jsonrpc": "2.0", "id": i, "method": "ping"}) for i in range(100))
    with client(shared_machine) as c:
        c.send_raw(wire)
        ids = [c.recv_json()["id"] for _ in range(100)]
    assert ids == list(range(100))


def test_sixteen_concurrent_connections_both_eras(shared_machine: Machine) -> None:
    """MCP 2025-11-25 and 2026-07-28, server/tools (tools/list): sixteen connections at once, half of
    each protocol era, every response valid for its era (the response_problems model); the
    server stays healthy."""
    clients = [client(shared_machine, ERAS[n % 2]) for n in range(16)]
    errors: list[str] = []

    def work(n: int, c: McpClient) -> None:
        try:
            for i in range(10):
                r = c.request_raw("tools/list")
                problems = response_problems(r, r.get("id"), "tools/list", ERAS[n % 2])
                if problems:
                    errors.append(f"conn {n}: {problems}")
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(f"conn {n}: {e!r}")

    threads = [threading.Thread(target=work, args=(n, c)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    assert not errors, errors
    assert_healthy(shared_machine)


def test_invalid_utf8_in_a_string(shared_machine: Machine) -> None:
    """RFC 8259 section 8.1: JSON text is UTF-8; an overlong encoding is not, so -32700."""
    with client(shared_machine) as c:
        c.send_frame(b'{"jsonrpc":"2.0","id":1,"method":"\xc0\x80"}')
        assert error_code(c.recv_json(), None) == PARSE_ERROR


def test_still_healthy_after_everything(shared_machine: Machine) -> None:
    """docs/microkernelia.md, "MCP": whatever the peers above sent, the server still answers health
    on a new connection and the machine is alive."""
    assert_healthy(shared_machine)
    assert shared_machine.is_alive()
