"""``vmm-mcp bridge``: a guest's MCP server (length-prefixed JSON-RPC over vsock) on the two
standard MCP transports, so any MCP host (an editor, the Inspector, an agent framework, the
official SDKs and conformance tool) can use the unikernel as a server:

    vmm-mcp bridge --uds /run/vm/vsock.sock --stdio          # newline-delimited JSON-RPC
    vmm-mcp bridge --uds /run/vm/vsock.sock --http 8765      # Streamable HTTP on 127.0.0.1

stdio (MCP 2025-11-25 / 2026-07-28 basic/transports "stdio"): one vsock connection for the
process; each stdin line is one message, each guest frame one stdout line; logs go to stderr.

Streamable HTTP (2025-11-25 basic/transports, 2026-07-28 basic/transports/streamable-http):
one endpoint, ``POST /mcp``, bound to loopback only, Origin checked (DNS rebinding). A request
carrying the 2026-07-28 ``_meta`` is stateless: its own vsock connection, headers checked
against the body (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``: -32020 on mismatch).
An ``initialize`` opens a 2025-11-25 session (``Mcp-Session-Id``) backed by one vsock
connection; ``DELETE`` ends it. Answers are single JSON objects (no SSE streams: the guest
sends nothing but responses). ``GET`` is 405.

Failures reach the client as JSON-RPC errors naming the problem: a message above the 1 MiB
frame limit is refused by the bridge (the guest never sees it); a guest that closes or dies
fails the requests in flight (-32603, and HTTP 502); a client that goes away mid-request only
loses its vsock connection, and the guest keeps serving.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pytest_vmm.mcp import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_FRAME,
    MCP_PORT,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    ConnectionClosed,
    McpClient,
    connect,
)

HEADER_MISMATCH = -32020  # 2026-07-28 basic/index "Error Codes"
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
REPLY_TIMEOUT = 120.0
LOCAL_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "[::1]")

# Oversized bodies up to this many bytes are read and dropped before the 413 (see do_POST).
OVERSIZE_DRAIN_BYTES = 4 * MAX_FRAME


class GuestGone(ConnectionError):
    """The guest's MCP server cannot be reached, or closed the connection."""


def error(req_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": req_id, "error": err}


def readable_id(msg: Any) -> Any:
    """The id to answer with: the message's, when MCP allows it (string or integer), else null."""
    rid = msg.get("id") if isinstance(msg, dict) else None
    return rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None


def is_request(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" in msg and "id" in msg


def oversize(length: int, req_id: Any = None) -> dict[str, Any]:
    return error(req_id, INVALID_REQUEST, f"message of {length} bytes is above the guest's {MAX_FRAME}-byte frame limit",
                 {"length": length, "max": MAX_FRAME})


class GuestLink:
    """One vsock connection to the guest's MCP server; request/response, one at a time."""

    def __init__(self, target: str | int, port: int, timeout: float = 10.0) -> None:
        self.target, self.port = target, port
        try:
            self.client: McpClient = connect(target, port, timeout=timeout, protocol=None)
        except OSError as e:
            raise GuestGone(f"cannot reach the guest's MCP server at {target} port {port}: {e}") from e
        self.lock = threading.Lock()
        self.closed = False

    def send(self, body: bytes) -> None:
        try:
            self.client.send_frame(body)
        except OSError as e:
            self.closed = True
            raise GuestGone(f"the guest's MCP connection failed while sending: {e}") from e

    def recv(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        try:
            return self.client.recv_json(timeout)
        except (ConnectionClosed, OSError, ValueError) as e:
            self.closed = True
            raise GuestGone(f"the guest's MCP server closed the connection ({e})") from e

    def exchange(self, body: bytes, answered: bool) -> dict[str, Any] | None:
        """Send one message; its response if ``answered`` (requests), else None."""
        with self.lock:
            self.send(body)
            return self.recv() if answered else None

    def close(self) -> None:
        self.closed = True
        self.client.close()


# ------------------------------------------------------------------------------------ stdio

def _lines(stream: Any, limit: int) -> Iterator[tuple[bytes, int]]:
    """(message, its length) per newline-delimited line; a line above ``limit`` bytes is
    skipped unread and comes back empty with its length."""
    while True:
        line = stream.readline(limit + 2)
        if not line:
            return
        if line.endswith(b"\n") or len(line) <= limit:
            body = line.rstrip(b"\r\n")
            yield body, len(body)
            continue
        length = len(line)
        while True:
            more = stream.readline(1 << 16)
            length += len(more)
            if not more or more.endswith(b"\n"):
                break
        yield b"", length


def serve_stdio(target: str | int, port: int, stdin: Any = None, stdout: Any = None,
                log: Callable[[str], None] | None = None, connect_timeout: float = 10.0) -> int:
    """Bridge stdin/stdout (newline-delimited JSON-RPC) to one guest connection until stdin ends.

    ``connect_timeout``: how long each attempt to reach the guest waits for its socket."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    log = log or (lambda s: print(f"vmm-mcp bridge: {s}", file=sys.stderr, flush=True))
    write_lock = threading.Lock()
    pending: dict[str, Any] = {}  # json-encoded id -> id, requests sent and not yet answered
    pending_lock = threading.Lock()
    link: GuestLink | None = None

    def emit(msg: dict[str, Any] | bytes) -> None:
        data = msg if isinstance(msg, bytes) else json.dumps(msg, separators=(",", ":")).encode()
        with write_lock:
            try:
                stdout.write(data + b"\n")
                stdout.flush()
            except (BrokenPipeError, ValueError):  # the client closed its end: nothing to tell it
                closing.set()

    def fail_pending(reason: str) -> None:
        with pending_lock:
            ids = list(pending.values())
            pending.clear()
        for rid in ids:
            emit(error(rid, INTERNAL_ERROR, reason))

    def pump(current: GuestLink) -> None:
        while True:
            try:
                raw = current.client.recv_frame(timeout=3600 * 24)
            except TimeoutError:
                continue
            except (ConnectionClosed, OSError, ValueError) as e:
                current.closed = True
                if not closing.is_set():
                    reason = f"the guest's MCP server closed the connection ({e}): request not answered"
                    log(reason)
                    fail_pending(reason)
                return
            try:
                reply = json.loads(raw)
                key = json.dumps(reply.get("id")) if isinstance(reply, dict) else None
            except ValueError:
                key = None
            if key is not None:
                with pending_lock:
                    pending.pop(key, None)
            emit(raw)

    def ensure_link() -> GuestLink:
        nonlocal link
        if link is None or link.closed:
            link = GuestLink(target, port, timeout=connect_timeout)
            threading.Thread(target=pump, args=(link,), daemon=True, name="guest-to-stdout").start()
        return link

    closing = threading.Event()
    try:
        ensure_link()
    except GuestGone as e:
        log(str(e))  # keep going: every request will say so, and a guest that comes up is used
    for line, length in _lines(stdin, MAX_FRAME):
        if length <= MAX_FRAME and not line.strip():
            continue
        try:
            msg = json.loads(line) if length <= MAX_FRAME else None
        except ValueError:
            msg = None  # the guest answers malformed JSON itself (parse error, id null)
        if length > MAX_FRAME:
            emit(oversize(length))
            continue
        try:
            current = ensure_link()
            if isinstance(msg, dict) and is_request(msg):
                with pending_lock:
                    pending[json.dumps(msg["id"])] = readable_id(msg)
            current.send(line)
        except GuestGone as e:
            log(str(e))
            fail_pending(str(e))
            if is_request(msg) or msg is None:
                emit(error(readable_id(msg), INTERNAL_ERROR, str(e)))
    # stdin ended: the answers still owed are delivered (the guest is not left mid-reply)
    # unless the client is gone too.
    deadline = time.monotonic() + REPLY_TIMEOUT
    while pending and not closing.is_set() and link is not None and not link.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    closing.set()
    if link is not None:
        link.close()
    return 0


# ------------------------------------------------------------------------------------ HTTP

def _b64_header(value: str) -> str:
    """2026-07-28 streamable-http "Value Encoding": =?base64?...?= sentinels decoded."""
    if value.startswith("=?base64?") and value.endswith("?="):
        return base64.b64decode(value[9:-2]).decode("utf-8")
    return value


class Sessions:
    """2025-11-25 Streamable HTTP sessions: id -> the vsock connection that holds its state."""

    def __init__(self) -> None:
        self.links: dict[str, GuestLink] = {}
        self.lock = threading.Lock()

    def open(self, link: GuestLink) -> str:
        sid = uuid.uuid4().hex
        with self.lock:
            self.links[sid] = link
        return sid

    def get(self, sid: str) -> GuestLink | None:
        with self.lock:
            return self.links.get(sid)

    def close(self, sid: str) -> bool:
        with self.lock:
            link = self.links.pop(sid, None)
        if link is not None:
            link.close()
        return link is not None

    def close_all(self) -> None:
        with self.lock:
            links, self.links = list(self.links.values()), {}
        for link in links:
            link.close()


def modern_header_problem(headers: Any, msg: dict[str, Any]) -> str | None:
    """2026-07-28 streamable-http "Server Validation": the mirrored headers match the body."""
    params: dict[str, Any] = msg["params"] if isinstance(msg.get("params"), dict) else {}
    meta = params.get("_meta")
    version = meta.get(META_PROTOCOL_VERSION) if isinstance(meta, dict) else None

    def header(name: str) -> str | None:
        value = headers.get(name)
        return None if value is None else value.strip(" \t")  # RFC 9110 section 5.5: OWS is not part of the value

    got = header("MCP-Protocol-Version")
    if got is None:
        return "MCP-Protocol-Version header is missing"
    if got != version:
        return f"MCP-Protocol-Version header {got!r} does not match _meta {META_PROTOCOL_VERSION} {version!r}"
    method = header("Mcp-Method")
    if method is None:
        return "Mcp-Method header is missing"
    if method != msg.get("method"):
        return f"Mcp-Method header {method!r} does not match the body's method {msg.get('method')!r}"
    if msg.get("method") in ("tools/call", "resources/read", "prompts/get"):
        body_name = params.get("name", params.get("uri"))
        name = header("Mcp-Name")
        if name is None:
            return "Mcp-Name header is missing"
        try:
            decoded = _b64_header(name)
        except (ValueError, UnicodeError):
            return f"Mcp-Name header {name!r} is not valid base64"
        if decoded != body_name:
            return f"Mcp-Name header value {decoded!r} does not match body value {body_name!r}"
    return None


def is_modern(msg: Any) -> bool:
    params = msg.get("params") if isinstance(msg, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and META_PROTOCOL_VERSION in meta


def modern_status(reply: dict[str, Any], msg: dict[str, Any]) -> int:
    """HTTP status of a 2026-07-28 response (streamable-http "Protocol Version Header", basic/index)."""
    code = reply.get("error", {}).get("code") if isinstance(reply.get("error"), dict) else None
    if code == METHOD_NOT_FOUND:
        return 404
    if code in (UNSUPPORTED_PROTOCOL_VERSION, MISSING_REQUIRED_CLIENT_CAPABILITY, HEADER_MISMATCH):
        return 400
    meta = msg["params"]["_meta"]
    if code == INVALID_PARAMS and not isinstance(meta.get(META_CLIENT_CAPABILITIES), dict):
        return 400  # a required per-request field is missing: malformed (basic/index "_meta")
    return 200


class BridgeHandler(BaseHTTPRequestHandler):
    server: BridgeHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # ------------------------------------------------------------------ helpers
    def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        try:
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client left: nothing to tell it

    def _origin_ok(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None:
            return True
        host = origin.split("://", 1)[-1].split("/", 1)[0]
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        return host in LOCAL_ORIGIN_HOSTS

    def _host_ok(self) -> bool:
        host = self.headers.get("Host", "")
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        return host in LOCAL_ORIGIN_HOSTS

    def _endpoint_ok(self) -> bool:
        """Path, Origin and Host checked; on a refusal the connection closes (the body is unread)."""
        ok = self._endpoint_checks()
        if not ok:
            self.close_connection = True
        return ok

    def _endpoint_checks(self) -> bool:
        if self.path.split("?", 1)[0] != self.server.endpoint:
            self._send(404, error(None, INVALID_REQUEST, f"no MCP endpoint at {self.path}; use {self.server.endpoint}"))
            return False
        # 2025-11-25 / 2026-07-28 transports "Security": Origin validated against DNS rebinding
        # (403); a Host that is not loopback is the same attack seen from the other side.
        if not self._origin_ok():
            self._send(403, error(None, INVALID_REQUEST, f"Origin {self.headers.get('Origin')!r} is not local"))
            return False
        if not self._host_ok():
            self._send(403, error(None, INVALID_REQUEST, f"Host {self.headers.get('Host')!r} is not local"))
            return False
        return True

    # ------------------------------------------------------------------ methods
    def do_GET(self) -> None:
        if self._endpoint_ok():
            self._send(405, None, {"Allow": "POST, DELETE"})

    def do_DELETE(self) -> None:
        if not self._endpoint_ok():
            return
        sid = self.headers.get("Mcp-Session-Id")
        if sid is None:
            self._send(400, error(None, INVALID_REQUEST, "DELETE needs an Mcp-Session-Id header"))
        elif self.server.sessions.close(sid):
            self._send(200)
        else:
            self._send(404, error(None, INVALID_REQUEST, f"no session {sid}"))

    def do_POST(self) -> None:
        if not self._endpoint_ok():
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, error(None, INVALID_REQUEST, "a Content-Length header is required"))
            return
        if length > MAX_FRAME:
            self.close_connection = True
            # A client still sending its body when the 413 and the close come gets a broken
            # pipe instead of the answer: read (and drop) a body of up to a few frames first.
            # A larger one (a 2 GiB claim) is never read.
            if length <= OVERSIZE_DRAIN_BYTES:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            self._send(413, oversize(length))
            return
        body = self.rfile.read(length)
        try:
            msg = json.loads(body)
        except ValueError as e:
            self._send(400, error(None, PARSE_ERROR, f"Parse error: {e}"))
            return
        if not isinstance(msg, dict):
            self._send(400, error(None, INVALID_REQUEST, "the body must be a single JSON-RPC message object"))
            return
        try:
            if is_modern(msg):
                self._modern(msg, body)
            else:
                self._legacy(msg, body)
        except GuestGone as e:
            self._send(502, error(readable_id(msg), INTERNAL_ERROR, str(e)))

    def _modern(self, msg: dict[str, Any], body: bytes) -> None:
        # Headers are checked against the body first, whatever version the body names.
        problem = modern_header_problem(self.headers, msg)
        if problem is not None:
            self._send(400, error(readable_id(msg), HEADER_MISMATCH, f"Header mismatch: {problem}"))
            return
        link = GuestLink(self.server.target, self.server.port)
        try:
            reply = link.exchange(body, answered=is_request(msg))
        finally:
            link.close()  # stateless: one vsock connection per request (a client gone mid-way loses only it)
        if reply is None:
            self._send(202)
            return
        self._send(modern_status(reply, msg), reply)

    def _legacy(self, msg: dict[str, Any], body: bytes) -> None:
        sid = self.headers.get("Mcp-Session-Id")
        version = self.headers.get("MCP-Protocol-Version")
        if sid is not None and version is not None and version not in HANDSHAKE_VERSIONS:
            # 2025-11-25 basic/transports "Protocol Version Header": invalid or unsupported -> 400.
            self._send(400, error(readable_id(msg), INVALID_REQUEST, f"unsupported MCP-Protocol-Version {version!r}"))
            return
        if msg.get("method") == "initialize" and sid is None:
            link = GuestLink(self.server.target, self.server.port)
            reply = link.exchange(body, answered=True)
            assert reply is not None
            if "result" not in reply:
                link.close()
                self._send(200, reply)
                return
            self._send(200, reply, {"Mcp-Session-Id": self.server.sessions.open(link)})
            return
        if sid is None:
            # Neither era's context (no session, no per-request _meta): the guest names what is
            # missing (-32602), and it is a 400 (2025-11-25: a request without its session;
            # 2026-07-28 basic/index: a request missing required _meta fields).
            self._modern_less(msg, body)
            return
        session = self.server.sessions.get(sid)
        if session is None or session.closed:
            self.server.sessions.close(sid)
            self._send(404, error(readable_id(msg), INVALID_REQUEST, f"session {sid} is unknown or has ended"))
            return
        try:
            reply = session.exchange(body, answered=is_request(msg))
        except GuestGone:
            self.server.sessions.close(sid)
            raise
        if reply is None:
            self._send(202)
        else:
            self._send(200, reply)

    def _modern_less(self, msg: dict[str, Any], body: bytes) -> None:
        """A session-less, envelope-less message: the guest says what is missing."""
        link = GuestLink(self.server.target, self.server.port)
        try:
            reply = link.exchange(body, answered=is_request(msg))
        finally:
            link.close()
        if reply is None:
            self._send(202)
        else:
            self._send(400 if "error" in reply else 200, reply)


class BridgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, target: str | int, port: int, listen_port: int = 0, endpoint: str = "/mcp",
                 verbose: bool = False) -> None:
        super().__init__(("127.0.0.1", listen_port), BridgeHandler)
        self.target, self.port, self.endpoint, self.verbose = target, port, endpoint, verbose
        self.sessions = Sessions()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.endpoint}"

    def server_close(self) -> None:
        self.sessions.close_all()
        super().server_close()


def serve_http(target: str | int, port: int, listen_port: int, verbose: bool = False,
               ready: Callable[[str], None] | None = None) -> int:
    server = BridgeHTTPServer(target, port, listen_port, verbose=verbose)
    (ready or (lambda url: print(f"vmm-mcp bridge: serving {url}", file=sys.stderr, flush=True)))(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vmm-mcp bridge", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uds", help="the running machine's hybrid vsock Unix socket (run dir's vsock.sock)")
    ap.add_argument("--cid", type=int, help="guest CID (AF_VSOCK) instead of --uds")
    ap.add_argument("--port", type=int, default=MCP_PORT, help=f"guest vsock port (default {MCP_PORT})")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="newline-delimited JSON-RPC on stdin/stdout")
    mode.add_argument("--http", type=int, metavar="PORT",
                      help="Streamable HTTP at http://127.0.0.1:PORT/mcp (0: any free port, printed on stderr)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    target: str | int | None = a.uds if a.uds else a.cid
    if target is None:
        ap.error("give --uds PATH (a running machine's vsock socket) or --cid N")
    if isinstance(target, str) and not os.path.exists(target):
        ap.error(f"--uds {target}: no such socket (is the machine running?)")
    if a.stdio:
        return serve_stdio(target, a.port)
    return serve_http(target, a.port, a.http, a.verbose)


__all__ = ["BridgeHTTPServer", "GuestGone", "GuestLink", "main", "serve_http", "serve_stdio"]
