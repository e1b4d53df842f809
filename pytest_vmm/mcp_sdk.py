"""The official MCP Python SDK over vsock: a client transport for ``mcp.ClientSession``.

The SDK's transports (``stdio_client``, ``streamablehttp_client``) hand a ``ClientSession`` a
pair of streams of ``SessionMessage``; :func:`vsock_client` does the same over a vsock
connection framed as microkernelia frames it (u32 big-endian length + UTF-8 JSON, at most
1 MiB: :mod:`pytest_vmm.mcp` defines the framing), so any code written against the SDK talks to
a guest unchanged::

    from mcp import ClientSession
    from pytest_vmm.mcp_sdk import vsock_client

    async with vsock_client("/run/vm/vsock.sock", 5000) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool("health", {})

Needs the ``mcp`` extra (``pip install pytest-vmm[mcp]``); works with SDK 1.x and 2.x.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

try:
    import anyio
    import anyio.to_thread
    from mcp.shared import exceptions as _sdk_exceptions
    from mcp.shared.message import SessionMessage
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("pytest_vmm.mcp_sdk needs the MCP SDK: pip install 'pytest-vmm[mcp]'") from exc

from pytest_vmm import vsock
from pytest_vmm.mcp import MAX_FRAME, MCP_PORT, FrameReader, encode_frame, machine_socket

__all__ = ["FrameTooLarge", "SdkError", "machine_client", "vsock_client"]

RECV_CHUNK = 1 << 16


# The error a ClientSession raises for a JSON-RPC error or a closed connection (SDK 2.x spells
# it MCPError, 1.x McpError).
SdkError: type[Exception] = getattr(_sdk_exceptions, "MCPError", None) or _sdk_exceptions.McpError  # type: ignore[attr-defined,unused-ignore]


class FrameTooLarge(ValueError):
    """A message whose JSON is above the 1 MiB frame limit (the guest would refuse it)."""


def _message_parser() -> Callable[[bytes], Any]:
    """bytes -> JSONRPCMessage, for whichever SDK generation is installed."""
    try:
        from mcp_types import jsonrpc_message_adapter  # SDK 2.x: types live in mcp-types

        return lambda body: jsonrpc_message_adapter.validate_json(body, by_name=False)
    except ImportError:
        from mcp.types import JSONRPCMessage  # SDK 1.x

        return JSONRPCMessage.model_validate_json  # type: ignore[attr-defined,no-any-return,unused-ignore]


_parse_message = _message_parser()
# anyio >= 4.7 names it wait_readable; older releases only have the socket-specific one.
_wait_readable = getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
_wait_writable = getattr(anyio, "wait_writable", None) or anyio.wait_socket_writable


def encode_message(message: SessionMessage) -> bytes:
    """One wire frame for an SDK message; FrameTooLarge above the frame limit."""
    body = message.message.model_dump_json(by_alias=True, exclude_unset=True).encode()
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(f"MCP message of {len(body)} bytes is above the {MAX_FRAME}-byte frame limit")
    return encode_frame(body)


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await _wait_writable(sock)
            continue
        view = view[sent:]


@asynccontextmanager
async def vsock_client(target: str | os.PathLike[str] | int, port: int = MCP_PORT,
                       connect_timeout: float = 10.0) -> AsyncIterator[tuple[Any, Any]]:
    """(read_stream, write_stream) for ``mcp.ClientSession`` over one vsock connection.

    ``target`` is a hybrid vsock Unix socket (Firecracker/god style ``CONNECT <port>``) or a
    guest CID for AF_VSOCK. Frames that do not parse as JSON-RPC reach the session as
    exceptions; a reply frame above 1 MiB or an EOF ends the read stream (the session's
    pending requests then fail instead of hanging). The socket is closed on exit.
    """
    sock = await anyio.to_thread.run_sync(lambda: vsock.connect(target, port, timeout=connect_timeout))
    sock.setblocking(False)
    read_in, read_out = anyio.create_memory_object_stream[Any](0)
    write_in, write_out = anyio.create_memory_object_stream[SessionMessage](0)

    async def guest_to_session() -> None:
        reader = FrameReader()
        async with read_in:
            while True:
                try:
                    data = sock.recv(RECV_CHUNK)
                except BlockingIOError:
                    await _wait_readable(sock)
                    continue
                except OSError as exc:
                    await read_in.send(exc)
                    return
                if not data:
                    return
                try:
                    frames = reader.feed(data)
                except ValueError as exc:  # an oversized length: the stream cannot resynchronise
                    await read_in.send(exc)
                    return
                for frame in frames:
                    try:
                        await read_in.send(SessionMessage(_parse_message(frame)))
                    except ValueError as exc:  # pydantic's ValidationError is a ValueError
                        await read_in.send(exc)

    async def session_to_guest() -> None:
        async with write_out:
            async for message in write_out:
                await _send_all(sock, encode_message(message))

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(guest_to_session)
            tasks.start_soon(session_to_guest)
            try:
                yield read_out, write_in
            finally:
                tasks.cancel_scope.cancel()
    finally:
        sock.close()


def machine_client(machine: Any, port: int = MCP_PORT, connect_timeout: float = 10.0) -> Any:
    """:func:`vsock_client` on a booted machine's vsock device (``async with`` it)."""
    return vsock_client(machine_socket(machine), port, connect_timeout)
