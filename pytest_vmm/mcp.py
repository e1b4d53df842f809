"""MCP host client: length-prefixed JSON-RPC 2.0 over a connected stream socket.

Framing (microkernelia, docs/microkernelia.md): u32 big-endian length + that many bytes of
UTF-8 JSON; bodies above 1 MiB are refused by the guest (error reply, then close). The socket
comes from :mod:`pytest_vmm.vsock` (hybrid Unix socket with ``CONNECT <port>``, or AF_VSOCK).

Both protocol eras (MCP 2026-07-28 basic/versioning): a new client speaks the stateless
revision, every request carrying its version and capabilities in ``_meta``; ``initialize()``
switches the connection to a handshake (legacy) revision, 2025-11-25 by default.

Command line, like the seed's mcp-cli (installed as ``vmm-mcp``)::

    python -m pytest_vmm.mcp initialize --uds /tmp/vm/vsock.sock --port 5000
    python -m pytest_vmm.mcp tools --uds PATH
    python -m pytest_vmm.mcp call infer '{"prompt": "hello"}' --uds PATH
    python -m pytest_vmm.mcp bridge --uds PATH --stdio     # pytest_vmm.mcp_bridge
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any, Self

# The host's copies of guests/microkernelia/mcp_core's constants (tests/microkernelia/
# test_constants_sync.py keeps them equal).
MAX_FRAME = 1 << 20
MCP_PORT = 5000
# The newest handshake revision (what initialize() asks for) and the stateless one.
PROTOCOL_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
# 2026-07-28 basic/index "_meta": per-request protocol fields.
META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
CLIENT_INFO = {"name": "pytest-vmm", "version": "1"}

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNSUPPORTED_PROTOCOL_VERSION = -32022  # 2026-07-28 basic/index "Error Codes"


def modern_meta(version: str = MODERN_VERSION) -> dict[str, Any]:
    """The ``_meta`` a 2026-07-28 request carries (version, capabilities, identity)."""
    return {META_PROTOCOL_VERSION: version, META_CLIENT_CAPABILITIES: {}, META_CLIENT_INFO: dict(CLIENT_INFO)}


def with_meta(params: dict[str, Any] | None, version: str = MODERN_VERSION) -> dict[str, Any]:
    """``params`` with the modern envelope added (any ``_meta`` keys already there are kept)."""
    out = dict(params or {})
    out["_meta"] = {**modern_meta(version), **out.get("_meta", {})}
    return out


class McpError(Exception):
    """A JSON-RPC error reply."""

    def __init__(self, code: int, message: str, data: Any = None, reply: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" ({data})" if data is not None else ""))
        self.code, self.message, self.data, self.reply = code, message, data, reply


class ConnectionClosed(ConnectionError):
    """The guest closed the connection (EOF) where a frame was expected."""


def encode_frame(body: bytes | str | dict[str, Any] | list[Any]) -> bytes:
    """Length prefix + body; dicts/lists are JSON-encoded. No size check: tests send hostile frames."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body, separators=(",", ":"))
    if isinstance(body, str):
        body = body.encode()
    return struct.pack(">I", len(body)) + body


class FrameReader:
    """Incremental decoder for replies (same rules as the guest: length cap, partial input)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        frames = []
        while len(self.buf) >= 4:
            (n,) = struct.unpack(">I", self.buf[:4])
            if n > self.max_frame:
                raise ValueError(f"reply frame of {n} bytes is above {self.max_frame}")
            if len(self.buf) < 4 + n:
                break
            frames.append(bytes(self.buf[4:4 + n]))
            del self.buf[:4 + n]
        return frames


class McpClient:
    """JSON-RPC client over one connected socket (several clients may share a guest)."""

    def __init__(self, sock: socket.socket, timeout: float = 30.0,
                 protocol: str | None = MODERN_VERSION) -> None:
        self.sock = sock
        # The stateless revision every request declares, or None once initialize() chose a
        # handshake revision (then requests go bare, as that revision wants).
        self.protocol = protocol
        self.timeout = timeout
        self.reader = FrameReader()
        self.pending: list[bytes] = []
        self._ids = itertools.count(1)
        self.server_info: dict[str, Any] | None = None

    # ------------------------------------------------------------------ raw frames
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, body: bytes | str | dict[str, Any] | list[Any]) -> None:
        self.sock.sendall(encode_frame(body))

    def recv_frame(self, timeout: float | None = None) -> bytes:
        """The next reply body; ConnectionClosed on EOF, TimeoutError when nothing comes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no MCP frame within {self.timeout if timeout is None else timeout:.1f} s")
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                continue
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionClosed("the guest closed the MCP connection")
            self.pending.extend(self.reader.feed(data))
        return self.pending.pop(0)

    def recv_json(self, timeout: float | None = None) -> dict[str, Any]:
        return json.loads(self.recv_frame(timeout))

    def expect_silence(self, seconds: float) -> bytes | None:
        """A frame if one arrives within ``seconds`` (None: silence, as for notifications)."""
        try:
            return self.recv_frame(seconds)
        except TimeoutError:
            return None

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True once the guest closed the connection (EOF) within ``timeout``; frames are skipped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.recv_frame(deadline - time.monotonic())
            except ConnectionClosed:
                return True
            except (TimeoutError, ConnectionResetError):
                return isinstance(sys.exc_info()[1], ConnectionResetError)
        return False

    # ------------------------------------------------------------------ JSON-RPC
    def next_id(self) -> int:
        return next(self._ids)

    def request_raw(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send a request and return the whole reply (result or error)."""
        req_id = self.next_id()
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if self.protocol is not None and method != "initialize":
            params = with_meta(params, self.protocol)
        if params is not None:
            msg["params"] = params
        self.send_frame(msg)
        reply = self.recv_json(timeout)
        if reply.get("id") != req_id:
            raise McpError(INTERNAL_ERROR, f"reply id {reply.get('id')!r} does not match request {req_id}", reply=reply)
        return reply

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        reply = self.request_raw(method, params, timeout)
        if "error" in reply:
            err = reply["error"]
            raise McpError(err.get("code", 0), err.get("message", ""), err.get("data"), reply)
        return reply["result"]

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send_frame(msg)

    def initialize(self, version: str = PROTOCOL_VERSION) -> dict[str, Any]:
        """The legacy handshake: this connection speaks ``version``'s era from now on."""
        self.protocol = None
        result = self.request("initialize", {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "pytest-vmm", "version": "1"},
        })
        self.server_info = result
        self.notify("notifications/initialized")
        return result

    def discover(self) -> dict[str, Any]:
        """server/discover (2026-07-28): supported versions, capabilities, identity."""
        return self.request("server/discover")  # type: ignore[no-any-return,unused-ignore]

    def ping(self) -> Any:
        return self.request("ping")

    def list_tools(self) -> list[dict[str, Any]]:
        return self.request("tools/list")["tools"]

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """The tools/call result (check ``isError``); McpError for protocol errors."""
        return self.request("tools/call", {"name": name, "arguments": arguments or {}})

    def health(self) -> dict[str, Any]:
        result = self.call_tool("health")
        if result.get("isError"):
            raise McpError(INTERNAL_ERROR, f"health failed: {result}")
        return result["structuredContent"]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(target: str | os.PathLike[str] | int, port: int = MCP_PORT, timeout: float = 10.0,
            protocol: str | None = MODERN_VERSION) -> McpClient:
    """An MCP client on a new vsock connection (hybrid socket path, or CID for AF_VSOCK)."""
    from pytest_vmm import vsock

    return McpClient(vsock.connect(target, port, timeout=timeout), timeout=max(timeout, 30.0), protocol=protocol)


def machine_socket(machine: Any) -> str:
    """The hybrid vsock socket of a booted machine, where its hypervisor put it (LaunchPlan)."""
    path = machine.vsock_socket
    if path is None:
        raise LookupError(f"{machine.target_id} has no vsock device")
    return str(path)


class McpChannel:
    """``machine.channel("mcp")``: new MCP connections to the guest's server on demand (a
    guest serves several clients at once, so the channel hands out connections)."""

    def __init__(self, socket_path: str, port: int = MCP_PORT, timeout: float = 10.0) -> None:
        self.socket_path, self.port, self.timeout = socket_path, port, timeout

    @classmethod
    def of(cls, machine: Any) -> McpChannel:
        # Connecting and replies scale with the accelerator's slowness (TCG, the lane).
        return cls(machine_socket(machine), timeout=10.0 * machine.timeout_factor)

    def connect(self, port: int | None = None, timeout: float | None = None) -> McpClient:
        return connect(self.socket_path, port or self.port, timeout or self.timeout)


def connect_machine(machine: Any, port: int = MCP_PORT, timeout: float = 10.0,
                    protocol: str | None = MODERN_VERSION) -> McpClient:
    return connect(machine_socket(machine), port, timeout, protocol)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bridge"]:
        from pytest_vmm import mcp_bridge

        return mcp_bridge.main(argv[1:])
    ap = argparse.ArgumentParser(prog="vmm-mcp", description="MCP client over vsock "
                                 "(`vmm-mcp bridge --help`: serve a guest over stdio / Streamable HTTP)")
    ap.add_argument("command", choices=["initialize", "discover", "tools", "call", "ping"])
    ap.add_argument("tool", nargs="?", help="tool name (call)")
    ap.add_argument("args", nargs="?", default="{}", help="tool arguments as JSON (call)")
    ap.add_argument("--uds", help="hybrid vsock Unix socket (Firecracker style)")
    ap.add_argument("--cid", type=int, help="guest CID (AF_VSOCK) instead of --uds")
    ap.add_argument("--port", type=int, default=MCP_PORT)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--protocol", default=MODERN_VERSION,
                    help=f"protocol revision: {MODERN_VERSION} (stateless, default) or a handshake "
                         f"revision such as {PROTOCOL_VERSION} (initialize first)")
    a = ap.parse_args(argv)
    target: str | int | None = a.uds if a.uds else a.cid
    if target is None:
        ap.error("give --uds PATH or --cid N")
    stateless = a.protocol == MODERN_VERSION
    with connect(target, a.port, a.timeout, protocol=a.protocol if stateless else None) as client:
        try:
            if a.command == "initialize":
                out: Any = client.initialize(PROTOCOL_VERSION if stateless else a.protocol)
            else:
                if not stateless:
                    client.initialize(a.protocol)
                if a.command == "discover":
                    out = client.discover()
                elif a.command == "ping":
                    out = client.ping()
                elif a.command == "tools":
                    out = client.list_tools()
                else:
                    if not a.tool:
                        ap.error("call needs a tool name")
                    out = client.call_tool(a.tool, json.loads(a.args))
        except McpError as e:
            print(json.dumps(e.reply or {"error": str(e)}, indent=2))
            return 1
    print(json.dumps(out, indent=2))
    return 1 if isinstance(out, dict) and out.get("isError") else 0


if __name__ == "__main__":
    sys.exit(main())
