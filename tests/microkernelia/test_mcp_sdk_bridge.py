"""pytest_vmm.mcp_sdk: the official MCP SDK's ClientSession over the vsock framing, against the
in-process fake server (handshake, framing and failure paths; the real guest is in
suites/test_mcp_sdk.py)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

anyio = pytest.importorskip("anyio")
pytest.importorskip("mcp")

from mcp import ClientSession

from pytest_vmm.mcp import MAX_FRAME
from pytest_vmm.mcp_sdk import FrameTooLarge, SdkError, vsock_client
from tests.microkernelia.fake_mcp import hybrid_server


def raised(info: pytest.ExceptionInfo[BaseException], kind: type[BaseException]) -> bool:
    """``kind`` raised, bare or inside the task groups' exception groups."""
    if isinstance(info.value, BaseExceptionGroup):
        return info.group_contains(kind)
    return isinstance(info.value, kind)


def run_session(path: Path, body: Callable[[ClientSession], Awaitable[Any]], timeout: float = 10.0) -> Any:
    async def main() -> Any:
        with anyio.fail_after(timeout):
            async with vsock_client(path, 5000) as (read, write), ClientSession(read, write) as session:
                return await body(session)

    return anyio.run(main)


def test_client_session_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "v.sock"
    srv, seen = hybrid_server(path)

    async def body(session: ClientSession) -> tuple[Any, ...]:
        init = await session.initialize()
        tools = await session.list_tools()
        health = await session.call_tool("health", {})
        await session.send_ping()
        # Compare the wire form: SDK 1.x and 2.x name the attributes differently.
        return tuple(r.model_dump(by_alias=True, exclude_none=True) for r in (init, tools, health))

    try:
        init, tools, health = run_session(path, body)
    finally:
        srv.close()
    assert seen == [b"CONNECT 5000\n"]
    assert init["serverInfo"]["name"] == "fake"
    assert [t["name"] for t in tools["tools"]] == ["health"]
    assert health["isError"] is False
    assert health["structuredContent"] == {"status": "ok"}
    assert health["content"][0]["text"] == "ok"


def test_protocol_errors_reach_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "v.sock"
    srv, _ = hybrid_server(path)

    async def body(session: ClientSession) -> int:
        await session.initialize()
        with pytest.raises(SdkError) as err:
            await session.call_tool("nope", {})
        return int(err.value.error.code)

    try:
        assert run_session(path, body) == -32602
    finally:
        srv.close()


def test_message_above_the_frame_limit_is_refused_locally(tmp_path: Path) -> None:
    path = tmp_path / "v.sock"
    srv, _ = hybrid_server(path)

    async def body(session: ClientSession) -> None:
        await session.initialize()
        await session.call_tool("health", {"pad": "x" * MAX_FRAME})

    try:
        with pytest.raises(BaseException) as err:
            run_session(path, body)
    finally:
        srv.close()
    assert raised(err, FrameTooLarge), f"expected FrameTooLarge, got {err.value!r}"


def _one_shot_server(path: Path, reply: bytes) -> socket.socket:
    """Handshake, read one request, answer with raw bytes ``reply``, close."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(1)
            conn.sendall(b"OK 1\n")
            conn.recv(65536)
            conn.sendall(reply)

    threading.Thread(target=run, daemon=True).start()
    return srv


@pytest.mark.parametrize("reply", [b"", struct.pack(">I", 2**32 - 1)], ids=["eof", "4GiB-length"])
def test_a_dead_or_hostile_server_fails_the_request_instead_of_hanging(tmp_path: Path, reply: bytes) -> None:
    path = tmp_path / "v.sock"
    srv = _one_shot_server(path, reply)

    async def body(session: ClientSession) -> None:
        await session.initialize()

    try:
        with pytest.raises(BaseException) as err:
            run_session(path, body, timeout=20.0)
    finally:
        srv.close()
    assert not isinstance(err.value, TimeoutError), "the session waited for a reply that could never come"
    assert raised(err, SdkError), f"expected the SDK's connection-closed error, got {err.value!r}"
