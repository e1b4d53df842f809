"""pytest_vmm.mcp (framing, JSON-RPC client, CLI) and pytest_vmm.strategies.mcp against a
tiny in-process fake server that follows microkernelia's framing rules."""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_vmm import mcp
from pytest_vmm.mcp import MAX_FRAME, FrameReader, McpClient, McpError, encode_frame
from pytest_vmm.strategies.mcp import (
    frame_sequences,
    hostile_frames,
    is_oversize,
    mutated_frames,
    valid_frames,
    valid_requests,
)
from tests.microkernelia.fake_mcp import handle, hybrid_server, serve


@pytest.fixture
def client() -> McpClient:
    a, b = socket.socketpair()
    threading.Thread(target=serve, args=(b,), daemon=True).start()
    c = McpClient(a, timeout=5)
    yield c
    c.close()


def test_frame_codec() -> None:
    assert encode_frame(b"ab") == b"\0\0\0\x02ab"
    assert encode_frame({"a": 1}) == b'\0\0\0\x07{"a":1}'
    r = FrameReader()
    wire = encode_frame(b"one") + encode_frame(b"") + encode_frame(b"three")
    got = []
    for i in range(len(wire)):
        got += r.feed(wire[i:i + 1])
    assert got == [b"one", b"", b"three"]
    with pytest.raises(ValueError, match="above"):
        FrameReader().feed(struct.pack(">I", MAX_FRAME + 1))


def test_client_round_trips(client: McpClient) -> None:
    assert client.initialize()["serverInfo"]["name"] == "fake"
    assert client.ping() == {}
    assert client.list_tools()[0]["name"] == "health"
    assert client.health() == {"status": "ok"}
    with pytest.raises(McpError) as err:
        client.call_tool("nope")
    assert err.value.code == mcp.INVALID_PARAMS
    with pytest.raises(McpError) as err:
        client.request("no/such")
    assert err.value.code == mcp.METHOD_NOT_FOUND


def test_notifications_and_silence(client: McpClient) -> None:
    client.notify("notifications/initialized")
    assert client.expect_silence(0.2) is None
    client.send_frame(b"{bad")
    assert client.recv_json()["error"]["code"] == mcp.PARSE_ERROR


def test_oversize_closes(client: McpClient) -> None:
    client.send_raw(struct.pack(">I", 2**32 - 1))
    assert client.recv_json()["error"]["code"] == mcp.INVALID_REQUEST
    assert client.is_closed(2.0)


def test_cli_over_a_hybrid_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI speaks the Firecracker handshake (CONNECT <port> / OK <n>) through pytest_vmm.vsock."""
    path = tmp_path / "v.sock"
    srv, seen = hybrid_server(path, connections=2)
    assert mcp.main(["tools", "--uds", str(path), "--port", "5000"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "health"
    assert mcp.main(["call", "health", "{}", "--uds", str(path), "--port", "5000"]) == 0
    assert json.loads(capsys.readouterr().out)["structuredContent"] == {"status": "ok"}
    assert seen == [b"CONNECT 5000\n", b"CONNECT 5000\n"]
    srv.close()


def _frames_ok(wire: bytes) -> None:
    (n,) = struct.unpack(">I", wire[:4])
    assert is_oversize(wire) or len(wire) == 4 + n


@settings(max_examples=60, deadline=None)
@given(valid_requests())
def test_valid_requests_are_valid_jsonrpc(msg: dict) -> None:
    assert msg["jsonrpc"] == "2.0" and isinstance(msg["method"], str)
    assert handle(json.dumps(msg).encode()) is None or "id" in msg


@settings(max_examples=60, deadline=None)
@given(st.one_of(valid_frames(), mutated_frames(), hostile_frames()))
def test_frames_are_well_framed(wire: bytes) -> None:
    _frames_ok(wire)


@settings(max_examples=40, deadline=None)
@given(frame_sequences())
def test_fake_server_survives_sequences(seq: list[bytes]) -> None:
    assert all(not is_oversize(f) for f in seq[:-1]), "an oversize header may only come last"
    a, b = socket.socketpair()
    threading.Thread(target=serve, args=(b,), daemon=True).start()
    with McpClient(a, timeout=5) as c:
        c.send_raw(b"".join(seq))
        answered = sum(1 for f in seq if is_oversize(f) or handle(f[4:]) is not None)
        for _ in range(answered):
            assert json.loads(c.recv_frame())["jsonrpc"] == "2.0"


def test_cli_is_installed_as_vmm_mcp() -> None:
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="vmm-mcp")
    assert script.load() is mcp.main
