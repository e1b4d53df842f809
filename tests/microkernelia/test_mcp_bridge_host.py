"""vmm-mcp bridge's stdio side against in-process fake guests (no VM): answers pass through,
over-length lines are refused, and a guest that dies or is absent gives every request a
JSON-RPC error naming the problem instead of silence."""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

from fake_mcp import hybrid_server

from pytest_vmm.mcp import INTERNAL_ERROR, INVALID_REQUEST, MAX_FRAME, MCP_PORT
from pytest_vmm.mcp_bridge import serve_stdio


def run(path: Path, lines: list[bytes], connect_timeout: float = 10.0) -> list[dict]:
    out = io.BytesIO()
    serve_stdio(str(path), MCP_PORT, stdin=io.BytesIO(b"".join(line + b"\n" for line in lines)), stdout=out,
                log=lambda s: None, connect_timeout=connect_timeout)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_answers_pass_through(tmp_path: Path) -> None:
    srv, seen = hybrid_server(tmp_path / "v.sock")
    try:
        replies = run(tmp_path / "v.sock", [b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                                            b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
                                            b'{"jsonrpc":"2.0","id":"b","method":"tools/list"}'])
    finally:
        srv.close()
    assert [r["id"] for r in replies] == [1, "b"], replies
    assert seen == [f"CONNECT {MCP_PORT}\n".encode()]


def test_over_length_line_is_refused(tmp_path: Path) -> None:
    srv, _ = hybrid_server(tmp_path / "v.sock")
    try:
        replies = run(tmp_path / "v.sock", [b'{"jsonrpc":"2.0","id":1,"method":"x","p":"' + b"a" * MAX_FRAME + b'"}',
                                            b'{"jsonrpc":"2.0","id":2,"method":"ping"}'])
    finally:
        srv.close()
    assert replies[0]["error"]["code"] == INVALID_REQUEST and replies[0]["id"] is None, replies[0]
    assert replies[1] == {"jsonrpc": "2.0", "id": 2, "result": {}}


def dying_guest(path: Path) -> socket.socket:
    """Accepts one connection, reads one request, and dies without answering."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            while not conn.recv(1).endswith(b"\n"):
                pass
            conn.sendall(b"OK 1\n")
            conn.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_guest_dying_mid_request_fails_the_request(tmp_path: Path) -> None:
    srv = dying_guest(tmp_path / "v.sock")
    try:
        replies = run(tmp_path / "v.sock", [b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"health"}}'])
    finally:
        srv.close()
    assert len(replies) == 1 and replies[0]["id"] == 7, replies
    assert replies[0]["error"]["code"] == INTERNAL_ERROR and "closed" in replies[0]["error"]["message"], replies


def test_absent_guest(tmp_path: Path) -> None:
    # a socket that never appears: each connect attempt gives up after connect_timeout
    replies = run(tmp_path / "nothing.sock", [b'{"jsonrpc":"2.0","id":1,"method":"ping"}'], connect_timeout=0.5)
    assert replies[0]["id"] == 1 and replies[0]["error"]["code"] == INTERNAL_ERROR, replies
    assert "cannot reach" in replies[0]["error"]["message"], replies
