"""Answers checked against the MCP spec's schema for their revision, and JSON-RPC 2.0's rules.

The schema is the official one: ``mcp-types`` (PyPI), the pydantic models the Python SDK
generates from the spec's ``schema.ts``, one package per revision (2025-11-25 for every
handshake revision, 2026-07-28 for the stateless one). The envelope rules the models cannot
express (a response has ``result`` or ``error``, never both; ``id: null`` only when the id
could not be read) come from JSON-RPC 2.0 section 5.

    problems = response_problems(reply, request_id=3, method="tools/list", version="2026-07-28")
    assert not problems, problems
"""

from __future__ import annotations

from typing import Any

try:
    import pydantic
    from mcp_types import methods as _methods
    from mcp_types.jsonrpc import JSONRPCError, JSONRPCResponse
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("pytest_vmm.mcp_schema needs mcp-types: pip install 'pytest-vmm[mcp]'") from exc

__all__ = ["HANDSHAKE_PROTOCOL_VERSIONS", "MODERN_PROTOCOL_VERSIONS", "response_problems", "schema_knows"]

_UNSET: Any = object()


def schema_knows(method: str, version: str) -> bool:
    """Whether the revision's schema defines a server result for ``method``."""
    return (method, version) in _methods.SERVER_RESULTS


def _unsupported_version_problems(reply: dict[str, Any]) -> list[str]:
    # mcp-types keeps the per-code error shapes in its per-revision package only.
    from mcp_types import _v2026_07_28 as v2026

    try:
        v2026.UnsupportedProtocolVersionError.model_validate(reply, by_name=False)
    except pydantic.ValidationError as e:
        return [f"UnsupportedProtocolVersionError (2026-07-28 schema): {e}"]
    return []


def response_problems(reply: Any, request_id: Any = _UNSET, method: str | None = None,
                      version: str | None = None) -> list[str]:
    """What is wrong with ``reply`` as the answer to a request (empty: nothing).

    ``request_id``: the id it must carry (``None``: the request's id could not be read, so
    ``id`` must be null). ``method``/``version``: validate a result against that revision's
    schema (skipped when the schema has no result type for the method).
    """
    if not isinstance(reply, dict):
        return [f"a response must be a JSON object (JSON-RPC 2.0 section 5), got {reply!r:.200}"]
    problems = []
    if reply.get("jsonrpc") != "2.0":
        problems.append(f'jsonrpc must be exactly "2.0" (JSON-RPC 2.0 section 5): {reply.get("jsonrpc")!r}')
    has_result, has_error = "result" in reply, "error" in reply
    if has_result == has_error:
        problems.append("exactly one of result and error must be present (JSON-RPC 2.0 section 5): "
                        f"keys {sorted(reply)}")
    if "id" not in reply:
        problems.append("id is required in a response (JSON-RPC 2.0 section 5)")
    elif request_id is not _UNSET and reply["id"] != request_id:
        problems.append(f"id {reply['id']!r} is not the request's {request_id!r} (JSON-RPC 2.0 section 5)")
    if request_id is not _UNSET and request_id is not None and isinstance(reply.get("id"), bool):
        problems.append(f"id {reply['id']!r} is a boolean, not the request's {request_id!r}")
    if problems:
        return problems
    if has_error:
        try:
            JSONRPCError.model_validate(reply)
        except pydantic.ValidationError as e:
            return [f"error response does not match the schema: {e}"]
        if reply["error"]["code"] == -32022:
            return _unsupported_version_problems(reply)
        return []
    if reply["id"] is None:
        return ["a result response must carry the request's id, not null (MCP basic/index 'Responses')"]
    try:
        JSONRPCResponse.model_validate(reply)
    except pydantic.ValidationError as e:
        return [f"result response does not match the schema: {e}"]
    if method is not None and version is not None and schema_knows(method, version):
        try:
            _methods.validate_server_result(method, version, reply["result"])
        except pydantic.ValidationError as e:
            return [f"{method} result does not match the {version} schema: {e}"]
    return []
