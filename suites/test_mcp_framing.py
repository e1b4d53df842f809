"""MCP framing and JSON-RPC conformance over virtio-vsock (microkernelia, seed 002).

Framing: u32 big-endian length + UTF-8 JSON, at most 1 MiB. Every check ends by asking the
guest for ``health`` on a new connection: whatever a peer sends, the server keeps serving.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

from pytest_vmm import Machine
from pytest_vmm.mcp import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_FRAME,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    McpClient,
    connect_machine,
    encode_frame,
)

pytestmark = pytest.mark.vmm_requires("mcp")
TOOLS = {"infer", "health", "metadata", "load_model", "logs"}


def client(machine: Machine) -> McpClient:
    return connect_machine(machine, timeout=30.0)


def assert_healthy(machine: Machine) -> None:
    with client(machine) as c:
        health = c.health()
    assert health["status"] == "ok", f"health says {health}"


def error_code(reply: dict) -> int:
    assert "error" in reply, f"expected a JSON-RPC error, got {reply}"
    assert reply["jsonrpc"] == "2.0", reply
    return int(reply["error"]["code"])


def test_handshake(shared_machine: Machine) -> None:
    with client(shared_machine) as c:
        result = c.initialize()
        assert result["protocolVersion"] == "2025-11-25", result
        assert result["serverInfo"]["name"] == "microkernelia", result
        assert "tools" in result["capabilities"], result
        assert c.ping() == {}
        older = c.request("initialize", {"protocolVersion": "2024-11-05", "capabilities": {}})
        assert older["protocolVersion"] == "2024-11-05", "a supported older version must be echoed back"
        unknown = c.request("initialize", {"protocolVersion": "1999-01-01", "capabilities": {}})
        assert unknown["protocolVersion"] == "2025-11-25", "an unknown version gets the server's latest"


def test_tools_list_has_schemas(shared_machine: Machine) -> None:
    with client(shared_machine) as c:
        c.initialize()
        tools = {t["name"]: t for t in c.list_tools()}
    assert set(tools) == TOOLS, f"tools: {sorted(tools)}"
    for name, tool in tools.items():
        assert tool["inputSchema"]["type"] == "object", f"{name} has no object input schema: {tool}"
    assert tools["infer"]["inputSchema"]["required"] == ["prompt"]


def test_every_tool(shared_machine: Machine) -> None:
    with client(shared_machine) as c:
        c.initialize()
        loaded = c.call_tool("load_model", {"path": "model.kv"})
        assert loaded["isError"] is False, loaded
        assert loaded["structuredContent"]["rows"] > 0, loaded
        answer = c.call_tool("infer", {"prompt": "What is vsock?"})
        assert answer["isError"] is False, answer
        assert "socket" in answer["content"][0]["text"].lower(), answer
        assert answer["structuredContent"]["score"] == 1.0, answer
        health = c.call_tool("health")["structuredContent"]
        assert health["status"] == "ok" and health["model_loaded"] is True, health
        meta = c.call_tool("metadata")["structuredContent"]
        assert meta["name"] == "microkernelia" and set(meta["tools"]) == TOOLS, meta
        assert meta["maxFrame"] == MAX_FRAME, meta
        logs = c.call_tool("logs", {"max_bytes": 65536})
        assert "mcp ready" in logs["structuredContent"]["text"], logs
        # A failing tool is a result with isError, not a protocol error.
        missing = c.call_tool("load_model", {"path": "no-such-file"})
        assert missing["isError"] is True and "no file" in missing["content"][0]["text"], missing
        bad = c.call_tool("infer", {})
        assert bad["isError"] is True, bad


@pytest.mark.parametrize("frame, code", [
    (b"{oops", PARSE_ERROR),
    (b"\xff\xfe\xfd", PARSE_ERROR),
    (b"[1, 2, 3]", INVALID_REQUEST),
    (b"42", INVALID_REQUEST),
    (b'"ping"', INVALID_REQUEST),
    (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":"no/such"}', METHOD_NOT_FOUND),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}', INVALID_PARAMS),
], ids=["parse", "utf8", "batch", "number", "string", "jsonrpc-1.0", "no-method", "unknown-method",
        "no-tool-name", "unknown-tool", "params-array"])
def test_error_codes(shared_machine: Machine, frame: bytes, code: int) -> None:
    with client(shared_machine) as c:
        c.send_frame(frame)
        assert error_code(c.recv_json()) == code
        assert c.ping() == {}, "the connection must stay usable after an error reply"


def test_internal_error_for_an_unframeable_reply(shared_machine: Machine) -> None:
    """-32603: infer echoes the prompt, so a prompt that fills a 1 MiB request makes a reply
    above 1 MiB, which the server cannot frame."""
    with client(shared_machine) as c:
        c.call_tool("load_model")
        head = b'{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"infer","arguments":{"prompt":"'
        tail = b'"}}}'
        c.send_frame(head + b"a" * (MAX_FRAME - len(head) - len(tail)) + tail)
        reply = c.recv_json(timeout=60)
        assert error_code(reply) == INTERNAL_ERROR and reply["id"] == 77, str(reply)[:300]


def test_exactly_one_mib_is_accepted(shared_machine: Machine) -> None:
    body = b'{"jsonrpc":"2.0","id":5,"method":"ping"}'
    frame = body + b" " * (MAX_FRAME - len(body))
    assert len(frame) == MAX_FRAME
    with client(shared_machine) as c:
        c.send_frame(frame)
        assert c.recv_json(timeout=60) == {"jsonrpc": "2.0", "id": 5, "result": {}}


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 2**32 - 1], ids=["1MiB+1", "4GiB"])
def test_oversize_length_refused_then_closed(shared_machine: Machine, length: int) -> None:
    with client(shared_machine) as c:
        before = c.health()["heap_used"]
        c.send_raw(struct.pack(">I", length))  # only the header: the guest must not wait for the body
        reply = c.recv_json()
        assert error_code(reply) == INVALID_REQUEST and reply["error"]["data"]["length"] == length, reply
        assert c.is_closed(), "the guest must close the connection after refusing a frame"
    with client(shared_machine) as c:
        after = c.health()["heap_used"]
    # The refused frame was never allocated: the heap did not grow by anything like its size.
    assert after - before < 512 * 1024, f"heap grew from {before} to {after} bytes"


def test_zero_length_frame_is_a_parse_error(shared_machine: Machine) -> None:
    with client(shared_machine) as c:
        c.send_raw(b"\0\0\0\0")
        assert error_code(c.recv_json()) == PARSE_ERROR
        assert c.ping() == {}


def test_truncated_frame_then_close_then_new_connection(shared_machine: Machine) -> None:
    with client(shared_machine) as c:
        c.send_raw(struct.pack(">I", 100) + b'{"jsonrpc":"2.0"')
    assert_healthy(shared_machine)


def test_one_byte_at_a_time(shared_machine: Machine) -> None:
    wire = encode_frame({"jsonrpc": "2.0", "id": 9, "method": "ping"}) * 2
    with client(shared_machine) as c:
        for i in range(len(wire)):
            c.send_raw(wire[i:i + 1])
            time.sleep(0.002)
        assert c.recv_json() == {"jsonrpc": "2.0", "id": 9, "result": {}}
        assert c.recv_json() == {"jsonrpc": "2.0", "id": 9, "result": {}}


def test_pipelined_frames_answered_in_order(shared_machine: Machine) -> None:
    wire = b"".join(encode_frame({"jsonrpc": "2.0", "id": i, "method": "ping"}) for i in range(100))
    with client(shared_machine) as c:
        c.send_raw(wire)
        ids = [c.recv_json()["id"] for _ in range(100)]
    assert ids == list(range(100))


def test_sixteen_concurrent_connections(shared_machine: Machine) -> None:
    clients = [client(shared_machine) for _ in range(16)]
    errors: list[str] = []

    def work(n: int, c: McpClient) -> None:
        try:
            c.initialize()
            for i in range(10):
                r = c.request_raw("ping")
                if r.get("result") != {}:
                    errors.append(f"conn {n}: {r}")
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


def test_notification_gets_no_reply(shared_machine: Machine) -> None:
    with client(shared_machine) as c:
        c.notify("notifications/initialized")
        c.notify("notifications/cancelled", {"requestId": 1})
        c.notify("no/such/notification")
        assert c.expect_silence(1.0) is None, "a notification was answered"
        assert c.ping() == {}


def test_invalid_utf8_and_non_objects(shared_machine: Machine) -> None:
    with client(shared_machine) as c:
        for frame, code in [(b'{"jsonrpc":"2.0","id":1,"method":"\xc0\x80"}', PARSE_ERROR),
                            (b"null", INVALID_REQUEST), (b"true", INVALID_REQUEST), (b"[]", INVALID_REQUEST)]:
            c.send_frame(frame)
            assert error_code(c.recv_json()) == code, frame


def test_still_healthy_after_everything(shared_machine: Machine) -> None:
    assert_healthy(shared_machine)
    assert shared_machine.is_alive()
