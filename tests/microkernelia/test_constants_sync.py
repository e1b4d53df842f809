"""The host's MCP constants (pytest_vmm/mcp.py) are the guest's (microkernelia's mcp_core):
one definition per language, kept equal here, as tests/zigu/test_header_sync.py does for the
ABI header."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_vmm import mcp

MCP_CORE = Path(__file__).resolve().parents[2] / "guests" / "microkernelia" / "mcp_core" / "src" / "lib.rs"


def rust_const(name: str) -> str:
    m = re.search(rf"^pub const {name}: [^=]+= (.+);", MCP_CORE.read_text(), re.MULTILINE)
    assert m, f"no `pub const {name}` in {MCP_CORE}"
    return m.group(1).strip()


def rust_int(expr: str) -> int:
    m = re.fullmatch(r"(\d+)(?: << (\d+))?", expr)
    assert m, f"cannot read {expr!r} as an integer constant"
    return int(m.group(1)) << int(m.group(2) or 0)


def test_port_and_frame_limit() -> None:
    assert rust_int(rust_const("MCP_PORT")) == mcp.MCP_PORT
    assert rust_int(rust_const("MAX_FRAME")) == mcp.MAX_FRAME


def test_protocol_versions() -> None:
    modern = re.findall(r'"([^"]+)"', rust_const("MODERN_VERSIONS"))
    legacy = re.findall(r'"([^"]+)"', rust_const("LEGACY_VERSIONS"))
    assert mcp.MODERN_VERSION in modern
    assert legacy[0] == mcp.PROTOCOL_VERSION
    assert re.findall(r'"([^"]+)"', rust_const("PROTOCOL_VERSIONS")) == modern + legacy


def test_error_codes_and_meta_keys() -> None:
    for name in ("PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR",
                 "UNSUPPORTED_PROTOCOL_VERSION"):
        assert int(rust_const(name)) == getattr(mcp, name), name
    for name in ("META_PROTOCOL_VERSION", "META_CLIENT_CAPABILITIES", "META_CLIENT_INFO"):
        assert rust_const(name).strip('"') == getattr(mcp, name), name
