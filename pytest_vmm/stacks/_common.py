"""Helpers shared by the in-repo stack definitions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import ChannelHost, ImageRecipe

if TYPE_CHECKING:
    from pytest_vmm.agent.client import AgentClient
    from pytest_vmm.mcp import McpChannel

# pytest_vmm/stacks/_common.py -> repository root (the in-repo stacks build from its guests/).
REPO_ROOT = Path(__file__).resolve().parents[2]
GUESTS = REPO_ROOT / "guests"

Requirement = Callable[[HostInfo], str]


def needs_tool(name: str, package: str) -> Requirement:
    def check(host: HostInfo) -> str:
        return "" if host.tool(name) else f"{name} not found on PATH (apt-get install {package})"
    return check


def needs_python_module(module: str, pip_name: str) -> Requirement:
    def check(host: HostInfo) -> str:
        return "" if host.python_module(module) else f"python module {module} missing (pip install {pip_name})"
    return check


def guest_recipe(name: str, *requires: Requirement, version: str = "1",
                 extra_inputs: tuple[Path, ...] = ()) -> ImageRecipe:
    """The build contract of docs/architecture.md: ``python guests/<name>/build.py --out OUT``."""
    sources = GUESTS / name
    return ImageRecipe(
        name=name,
        sources=sources,
        command=(sys.executable, str(sources / "build.py"), "--out", "{out}"),
        version=version,
        extra_inputs=extra_inputs,
        requires=requires,
    )


def agent_channel(machine: ChannelHost) -> AgentClient:
    from pytest_vmm.agent.client import DEFAULT_TIMEOUT, AgentClient

    # A guest under TCG (or nested in the lane) answers several times slower than under KVM.
    return AgentClient(machine.console, timeout=DEFAULT_TIMEOUT * machine.timeout_factor)


def mcp_channel(machine: ChannelHost) -> McpChannel:
    """``machine.channel("mcp")``: MCP connections over the guest's vsock."""
    from pytest_vmm.mcp import McpChannel

    return McpChannel.of(machine)


def agent_ready_pattern() -> bytes:
    from pytest_vmm.agent.protocol import READY_REGEX

    return READY_REGEX.encode()


# Console lines that mean a guest died, whatever the stack.
COMMON_FAIL_PATTERNS: list[bytes] = [
    rb"Kernel panic - not syncing",
    rb"\bPANIC\b",
    rb"god: guest crashed",
]
