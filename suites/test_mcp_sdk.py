"""The official MCP Python SDK against the guest: ``mcp.ClientSession`` over vsock through
:mod:`pytest_vmm.mcp_sdk`, so any MCP client code talks to the stack unchanged. The SDK sees
exactly what the raw protocol shows (compared with :mod:`pytest_vmm.mcp`'s client) and
validates every reply against its own models, which the raw checks do not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pytest_vmm import Machine
from pytest_vmm.mcp import INVALID_PARAMS, connect_machine

pytestmark = pytest.mark.vmm_requires("mcp")
anyio = pytest.importorskip("anyio")
pytest.importorskip("mcp", reason="needs the MCP SDK: pip install 'pytest-vmm[mcp]'")

from mcp import ClientSession

from pytest_vmm.mcp_sdk import SdkError, machine_client


def wire(model: Any) -> dict[str, Any]:
    """An SDK result in its JSON form (SDK 1.x and 2.x name the Python attributes differently)."""
    return model.model_dump(by_alias=True, exclude_none=True)  # type: ignore[no-any-return]


def with_session(machine: Machine, body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        with anyio.fail_after(120):
            async with machine_client(machine) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)

    return anyio.run(main)


def test_sdk_handshake_and_tool_listing_match_the_wire(shared_machine: Machine) -> None:
    """MCP 2025-11-25 lifecycle (initialize), server/tools (tools/list) and basic/utilities/ping
    (an empty result): the SDK's session sees the same tool names and inputSchemas as the raw
    wire client."""
    async def body(session: ClientSession) -> tuple[dict[str, Any], dict[str, Any]]:
        return wire(await session.list_tools()), wire(await session.send_ping())

    tools, pong = with_session(shared_machine, body)
    with connect_machine(shared_machine, timeout=30.0) as raw:
        raw.initialize()
        raw_tools = raw.list_tools()
    sdk_names = [t["name"] for t in tools["tools"]]
    assert sdk_names == [t["name"] for t in raw_tools], f"SDK listing {sdk_names} differs from the wire's"
    for sdk_tool, raw_tool in zip(tools["tools"], raw_tools):
        assert sdk_tool["inputSchema"] == raw_tool["inputSchema"], f"{sdk_tool['name']}: schema changed in the SDK's hands"
    assert pong == {}, f"ping through the SDK: expected an empty result, got {pong}"


def test_sdk_calls_every_tool(shared_machine: Machine) -> None:
    """MCP 2025-11-25 server/tools, "Calling Tools": every tool answers a CallToolResult with
    isError false and text content; the values come from an independent reading of the model
    file and the seed's tool list (infer answers about sockets, health "ok", metadata names the
    stack)."""
    async def body(session: ClientSession) -> dict[str, dict[str, Any]]:
        results = {"load_model": wire(await session.call_tool("load_model", {"path": "model.kv"}))}
        results["infer"] = wire(await session.call_tool("infer", {"prompt": "What is vsock?"}))
        for name in ("health", "metadata", "logs"):
            results[name] = wire(await session.call_tool(name, {}))
        return results

    results = with_session(shared_machine, body)
    for name, result in results.items():
        assert result.get("isError") is False, f"{name} through the SDK: {result}"
        assert result["content"] and result["content"][0]["type"] == "text", f"{name}: {result}"
    assert "socket" in results["infer"]["content"][0]["text"].lower(), results["infer"]
    assert results["health"]["structuredContent"]["status"] == "ok", results["health"]
    assert results["metadata"]["structuredContent"]["name"] == "microkernelia", results["metadata"]


def test_sdk_sees_a_failing_tool_as_an_error_result(shared_machine: Machine) -> None:
    """MCP 2025-11-25 server/tools, "Error Handling": a tool execution error (a file that does
    not exist) is a result with isError true, not a protocol error."""
    async def body(session: ClientSession) -> dict[str, Any]:
        return wire(await session.call_tool("load_model", {"path": "no-such-file"}))

    missing = with_session(shared_machine, body)
    assert missing["isError"] is True, f"load_model of a missing file through the SDK: {missing}"


def test_sdk_raises_protocol_errors(shared_machine: Machine) -> None:
    """MCP 2025-11-25 server/tools, "Error Handling": an unknown tool is a protocol error, -32602
    (JSON-RPC 2.0 section 5.1, Invalid params), which the SDK raises."""
    async def body(session: ClientSession) -> int:
        with pytest.raises(SdkError) as err:
            await session.call_tool("no_such_tool", {})
        return int(err.value.error.code)

    code = with_session(shared_machine, body)
    assert code == INVALID_PARAMS, f"unknown tool through the SDK: expected {INVALID_PARAMS}, observed {code}"


def test_sdk_speaks_2026_statelessly(shared_machine: Machine) -> None:
    """MCP 2026-07-28 through the SDK: server/discover adopts the stateless revision (no
    initialize), then every request carries _meta and every result validates in the SDK's
    2026-07-28 models (resultType, cache hints)."""
    async def main() -> tuple[Any, Any, Any]:
        with anyio.fail_after(120):
            async with machine_client(shared_machine) as (read, write), ClientSession(read, write) as session:
                found = await session.discover()
                return found, await session.list_tools(), await session.call_tool("health", {})

    found, tools, health = anyio.run(main)
    assert "2026-07-28" in found.supported_versions, found
    assert {t.name for t in tools.tools} >= {"infer", "health"}, tools
    assert health.is_error is False and health.structured_content["status"] == "ok", health
