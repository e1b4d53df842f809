"""A tiny in-process MCP server following microkernelia's framing rules (u32 big-endian length +
JSON, 1 MiB cap, oversize -> error reply then close), for host-side client tests."""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

from pytest_vmm.mcp import MAX_FRAME, encode_frame


def handle(body: bytes) -> dict | None:
    """A minimal JSON-RPC server: enough to exercise the client."""
    try:
        msg = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    if not isinstance(msg, dict):
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid Request"}}
    if "id" not in msg:
        return None
    try:
        return dispatch(msg)
    except (KeyError, TypeError, AttributeError):
        return {"jsonrpc": "2.0", "id": msg.get("id"), "error": {"code": -32602, "message": "Invalid params"}}


def dispatch(msg: dict) -> dict:
    method = msg.get("method")
    result: object
    if method == "initialize":
        result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                  "serverInfo": {"name": "fake", "version": "0"}}
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": [{"name": "health", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        name = msg["params"]["name"]
        if name != "health":
            return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32602, "message": f"Unknown tool: {name}"}}
        result = {"content": [{"type": "text", "text": "ok"}], "structuredContent": {"status": "ok"}, "isError": False}
    else:
        return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def serve(conn: socket.socket) -> None:
    buf = b""
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if n > MAX_FRAME:
                    conn.sendall(encode_frame({"jsonrpc": "2.0", "id": None,
                                               "error": {"code": -32600, "message": "frame too large"}}))
                    return
                if len(buf) < 4 + n:
                    break
                reply = handle(buf[4:4 + n])
                buf = buf[4 + n:]
                if reply is not None:
                    # Deliberately split each reply in two writes: the client must reassemble.
                    wire = encode_frame(reply)
                    conn.sendall(wire[:3])
                    conn.sendall(wire[3:])


def hybrid_server(path: Path, connections: int = 1) -> tuple[socket.socket, list[bytes]]:
    """A Unix socket speaking the Firecracker handshake (CONNECT <port> / OK <n>) in front of
    serve(); returns the listening socket (close it) and the handshake lines seen."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    seen: list[bytes] = []

    def accept_loop() -> None:
        for _ in range(connections):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(1)
            seen.append(line)
            conn.sendall(b"OK 1073741824\n")
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return srv, seen
