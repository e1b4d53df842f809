"""Helpers shared by the shipped stack definitions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vmm.host import HostInfo
from pytest_vmm.stack import ChannelHost, ImageRecipe

if TYPE_CHECKING:
    from pytest_vmm.agent.client import AgentClient
    from pytest_vmm.mcp import McpChannel

# The guest sources travel with the distribution as the package pytest_vmm_guests (guests/ of
# a checkout, mapped by pyproject.toml): an editable install resolves to the checkout, a wheel
# to site-packages. Never a path relative to this file.
GUESTS_PACKAGE = "pytest_vmm_guests"


def package_dir(package: str) -> Path:
    """The directory of an installed package's files, via importlib.resources."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"package {package} is not installed: pytest-vmm's distribution carries it "
            f"(reinstall pytest-vmm: pip install pytest-vmm, or pip install -e . in a checkout)"
        ) from None
    if not isinstance(root, Path):
        # Stacks build from these files with real tools (gcc, cargo, zig): they must be on disk.
        raise TypeError(f"package {package} is not on the file system ({root!r}); install it unzipped")
    return root


GUESTS = package_dir(GUESTS_PACKAGE)


def guest_dir(name: str) -> Path:
    """Sources of one shipped guest (``probe``, ``zigu``, ``god``...)."""
    return GUESTS / name

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
                 extra_inputs: tuple[Path, ...] = (), cold_build_s: float = 0.0) -> ImageRecipe:
    """The build contract of docs/architecture.md: ``python guests/<name>/build.py --out OUT``."""
    sources = guest_dir(name)
    return ImageRecipe(
        name=name,
        sources=sources,
        command=(sys.executable, str(sources / "build.py"), "--out", "{out}"),
        version=version,
        extra_inputs=extra_inputs,
        requires=requires,
        cold_build_s=cold_build_s,
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
