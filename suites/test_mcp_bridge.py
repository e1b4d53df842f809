"""``vmm-mcp bridge``: the guest's MCP server used by the official SDK clients over the standard
transports (stdio, Streamable HTTP), both protocol eras, and the bridge's own failure modes
(over-length messages, a client that leaves mid-request) with the guest left serving.

The clients are the official ones: the Python SDK (``mcp``) and, where node and the pinned
npm packages are installed (scripts/bootstrap.sh, tools/mcp-conformance), the TypeScript SDK.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_vmm import Machine
from pytest_vmm.mcp import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_FRAME,
    METHOD_NOT_FOUND,
    MODERN_VERSION,
    connect_machine,
    machine_socket,
)

pytestmark = pytest.mark.vmm_requires("mcp")
anyio = pytest.importorskip("anyio")
pytest.importorskip("mcp", reason="needs the MCP SDK: pip install 'pytest-vmm[mcp]'")

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from pytest_vmm.mcp_bridge import BridgeHTTPServer
from pytest_vmm.mcp_sdk import SdkError

TOOLS_DIR = Path(__file__).resolve().parents[1] / "tools" / "mcp-conformance"


def bridge_argv(machine: Machine) -> list[str]:
    return [sys.executable, "-m", "pytest_vmm.mcp", "bridge", "--uds", machine_socket(machine), "--stdio"]


def with_stdio_session(machine: Machine, body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    argv = bridge_argv(machine)

    async def main() -> Any:
        with anyio.fail_after(120):
            params = StdioServerParameters(command=argv[0], args=argv[1:])
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                return await body(session)

    return anyio.run(main)


def assert_guest_serving(machine: Machine) -> None:
    with connect_machine(machine, timeout=30) as c:
        assert c.health()["status"] == "ok"


def test_python_sdk_over_stdio_2025(shared_machine: Machine) -> None:
    """The Python SDK's stdio client, legacy era: initialize, list, call (MCP 2025-11-25
    basic/transports "stdio", server/tools)."""
    async def body(session: ClientSession) -> tuple[Any, Any, Any, int]:
        init = await session.initialize()
        tools = await session.list_tools()
        health = await session.call_tool("health", {})
        with pytest.raises(SdkError) as err:
            await session.call_tool("no_such_tool", {})
        return init, tools, health, int(err.value.error.code)

    init, tools, health, unknown = with_stdio_session(shared_machine, body)
    assert init.protocol_version == "2025-11-25", init
    assert {"infer", "health", "load_model"} <= {t.name for t in tools.tools}, tools
    assert health.is_error is False and health.structured_content["status"] == "ok", health
    assert unknown == INVALID_PARAMS


def test_python_sdk_over_stdio_2026(shared_machine: Machine) -> None:
    """The Python SDK's stdio client, stateless era: server/discover adopts 2026-07-28, then
    requests carry _meta (MCP 2026-07-28 server/discover, basic/versioning)."""
    async def body(session: ClientSession) -> tuple[Any, Any, Any]:
        found = await session.discover()
        tools = await session.list_tools()
        answer = await session.call_tool("metadata", {})
        return found, tools, answer

    found, tools, answer = with_stdio_session(shared_machine, body)
    assert MODERN_VERSION in found.supported_versions, found
    assert {"infer", "health"} <= {t.name for t in tools.tools}
    assert answer.is_error is False and answer.structured_content["name"] == "microkernelia", answer


def test_typescript_sdk_over_stdio(shared_machine: Machine) -> None:
    """The official TypeScript SDK client (npm @modelcontextprotocol/sdk, pinned in
    tools/mcp-conformance) through the stdio bridge."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the TypeScript SDK client needs it)")
    if not (TOOLS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        pytest.skip(f"the pinned npm packages are not installed in {TOOLS_DIR} (scripts/bootstrap.sh runs npm ci)")
    proc = subprocess.run([node, str(TOOLS_DIR / "ts-client.mjs"), *bridge_argv(shared_machine)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"TypeScript client failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["server"]["name"] == "microkernelia", out
    assert {"infer", "health", "load_model"} <= set(out["tools"]), out
    assert out["health"]["structuredContent"]["status"] == "ok", out
    assert out["unknownTool"] == INVALID_PARAMS, out
    assert out["resources"] == METHOD_NOT_FOUND, out


@pytest.fixture
def stdio_bridge(shared_machine: Machine) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(bridge_argv(shared_machine), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def exchange(proc: subprocess.Popen[bytes], line: bytes) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + b"\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]


def test_stdio_over_length_message_is_refused_by_the_bridge(shared_machine: Machine,
                                                            stdio_bridge: subprocess.Popen[bytes]) -> None:
    """A message above the guest's 1 MiB frame limit gets an error naming the limit (id null:
    the bridge does not read it), and the next message is served."""
    big = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"' + b"x" * MAX_FRAME + b'"}}'
    reply = exchange(stdio_bridge, big)
    assert reply["error"]["code"] == INVALID_REQUEST and reply["id"] is None, reply
    assert str(MAX_FRAME) in reply["error"]["message"], reply
    discover = {"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION, "io.modelcontextprotocol/clientCapabilities": {}}}}
    assert exchange(stdio_bridge, json.dumps(discover).encode())["id"] == 2
    assert_guest_serving(shared_machine)


def test_stdio_client_leaving_mid_request(shared_machine: Machine, stdio_bridge: subprocess.Popen[bytes]) -> None:
    """The client sends a request and disappears: the bridge ends, the guest keeps serving."""
    assert stdio_bridge.stdin is not None
    stdio_bridge.stdin.write(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"load_model"}}\n')
    stdio_bridge.stdin.flush()
    stdio_bridge.stdin.close()
    assert stdio_bridge.wait(30) == 0, stdio_bridge.stderr.read().decode() if stdio_bridge.stderr else ""
    assert_guest_serving(shared_machine)


@pytest.fixture
def http_bridge(shared_machine: Machine) -> Iterator[BridgeHTTPServer]:
    server = BridgeHTTPServer(machine_socket(shared_machine), 5000)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = resp.read()
            return resp.status, dict(resp.headers), json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, dict(e.headers), json.loads(data) if data else None


def test_http_both_eras(http_bridge: BridgeHTTPServer) -> None:
    """Streamable HTTP: a 2026-07-28 request with its mirrored headers is served statelessly
    (no Mcp-Session-Id); a header that disagrees with the body is 400 / -32020; a 2025-11-25
    initialize opens a session that later requests name (2026-07-28 and 2025-11-25
    basic/transports)."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION, "io.modelcontextprotocol/clientCapabilities": {}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "health", "arguments": {}, "_meta": meta}}).encode()
    modern = {"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": "tools/call", "Mcp-Name": "health"}
    status, headers, reply = post(http_bridge.url, body, modern)
    assert status == 200 and reply["result"]["resultType"] == "complete", (status, reply)
    assert "Mcp-Session-Id" not in headers
    status, _, reply = post(http_bridge.url, body, {**modern, "Mcp-Name": "metadata"})
    assert status == 400 and reply["error"]["code"] == -32020, (status, reply)
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
    status, headers, reply = post(http_bridge.url, init, {})
    sid = headers.get("Mcp-Session-Id")
    assert status == 200 and sid, (status, headers, reply)
    tools = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).encode()
    status, _, reply = post(http_bridge.url, tools, {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
    assert status == 200 and reply["result"]["tools"], (status, reply)
    status, _, reply = post(http_bridge.url, tools, {"MCP-Protocol-Version": "2025-11-25"})
    assert status == 400, "a legacy request without its session must be refused"


def test_http_over_length_body(http_bridge: BridgeHTTPServer, shared_machine: Machine) -> None:
    """MCP 2025-11-25 basic/transports (Streamable HTTP) and docs/microkernelia.md, "Host side": a
    body above the 1 MiB frame limit is refused by the bridge with 413 and a -32600 error
    (JSON-RPC 2.0 section 5.1); the guest keeps serving."""
    status, _, reply = post(http_bridge.url, b" " * (MAX_FRAME + 1), {})
    assert status == 413 and reply["error"]["code"] == INVALID_REQUEST, (status, reply)
    assert_guest_serving(shared_machine)


def test_http_client_leaving_mid_request(http_bridge: BridgeHTTPServer, shared_machine: Machine) -> None:
    """A client that sends half a body and leaves costs the guest nothing."""
    import socket

    host, port = http_bridge.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=10) as s:
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"jsonrpc\"")
    time.sleep(0.2)
    assert_guest_serving(shared_machine)
