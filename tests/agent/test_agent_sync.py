"""Every guest agent speaks protocol.py: the same command names and the same error codes.

The agents are written in C (guests/probe/agent.c, and the arm64 probe's
guests/probe/aarch64/agent.c, both framed by guests/probe/protocol.c), Zig (guests/zigu/kernel/agent.zig), Rust
(guests/microkernelia/kernel/src/agent.rs) and shell (guests/zosia/rootfs/agent.sh); each
defines its constants again because none can import Python. This test reads their sources
(as tests/zigu/test_header_sync.py does for the ABI header) so a drift fails here, not as a
puzzling ``err 2`` in a suite.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_vmm.agent import protocol
from pytest_vmm.agent.protocol import ARCH_COMMANDS, COMMANDS, ErrorCode

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "guests" / "probe" / "agent.c"
PROBE_ARM64 = ROOT / "guests" / "probe" / "aarch64" / "agent.c"
PROBE_PROTOCOL = ROOT / "guests" / "probe" / "protocol.h"  # both probes' error codes
ZIGU = ROOT / "guests" / "zigu" / "kernel" / "agent.zig"
MICROKERNELIA = ROOT / "guests" / "microkernelia" / "kernel" / "src" / "agent.rs"
ZOSIA = ROOT / "guests" / "zosia" / "rootfs" / "agent.sh"
CLIENT = ROOT / "pytest_vmm" / "agent" / "client.py"
DOC = ROOT / "docs" / "agent-protocol.md"

# The agents' short names for the protocol's error codes (each agent's E_<name>).
ERROR_ALIASES = {
    "FRAME": ErrorCode.BAD_FRAME, "BAD_FRAME": ErrorCode.BAD_FRAME,
    "UNKNOWN": ErrorCode.UNKNOWN_COMMAND,
    "ARG": ErrorCode.BAD_ARGUMENT,
    "WIDTH": ErrorCode.UNSUPPORTED_WIDTH,
    "FAULT": ErrorCode.FAULT,
    "TIMEOUT": ErrorCode.TIMEOUT,
    "NOCPU": ErrorCode.NO_CPU,
    "UNSUPPORTED": ErrorCode.UNSUPPORTED,
    "BUSY": ErrorCode.BUSY,
}


def probe_commands(source: Path = PROBE) -> set[str]:
    table = source.read_text()
    return set(re.findall(r'\{"([a-z_]+)",\s*h_\w+,\s*\d\}', table))


def probe_arm64_commands() -> set[str]:
    return probe_commands(PROBE_ARM64)


def zigu_commands() -> set[str]:
    return set(re.findall(r'\.name = "([a-z_]+)"', ZIGU.read_text()))


def microkernelia_commands() -> set[str]:
    src = MICROKERNELIA.read_text()
    names: set[str] = set()
    for arm in re.findall(r'^\s+((?:"[a-z_]+"\s*\|\s*)*"[a-z_]+")\s*=>', src, re.MULTILINE):
        names |= set(re.findall(r'"([a-z_]+)"', arm))
    return names


def zosia_commands() -> set[str]:
    src = ZOSIA.read_text()
    names: set[str] = set()
    for arm in re.findall(r"^    ([a-z_|]+)\)", src, re.MULTILINE):
        names |= set(arm.split("|"))
    return names


def client_commands() -> set[str]:
    """Commands the host side sends: the client, and the modules and suites that call
    ``agent.request`` directly (the virtio driver, the register suites)."""
    sources = [CLIENT, *sorted((ROOT / "pytest_vmm" / "agent").glob("*.py")),
               *sorted((ROOT / "pytest_vmm" / "virtio").glob("*.py")),
               *(p for p in sorted((ROOT / "suites").rglob("*.py")) if "mcp" not in p.name)]
    found: set[str] = set()
    for source in sources:
        text = source.read_text()
        found |= set(re.findall(r'(?:request|encode_request)\((?:req_id, )?"([a-z_]+)"', text))
        # ioseq.py picks its command by the port it drives: command = "a" if ... else "b"
        found |= {w for pair in re.findall(r'command = "([a-z_]+)" if .* else "([a-z_]+)"', text) for w in pair}
    return found


def doc_commands() -> set[str]:
    section = DOC.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for first_cell in re.findall(r"^\| ([^|]+) \|", section, re.MULTILINE):
        names |= set(re.findall(r"`([a-z_]+)`", first_cell))
    return names


def error_constants(source: Path, pattern: str) -> dict[str, int]:
    return {name: int(value) for name, value in re.findall(pattern, source.read_text(), re.MULTILINE)}


AGENT_COMMANDS = {
    "probe (C)": probe_commands,
    "probe arm64 (C)": probe_arm64_commands,
    "zigu (Zig)": zigu_commands,
    "microkernelia (Rust)": microkernelia_commands,
    "zosia (shell)": zosia_commands,
}


def test_the_probe_implements_every_command_of_the_protocol() -> None:
    """The x86 probe answers every command but the arm64-only ones; the two probes together
    answer the whole protocol."""
    assert probe_commands() == COMMANDS - ARCH_COMMANDS["aarch64"]
    assert probe_commands() | probe_arm64_commands() == COMMANDS


def test_the_arm64_probe_answers_its_architecture_and_not_the_other() -> None:
    arm = probe_arm64_commands()
    assert ARCH_COMMANDS["aarch64"] <= arm, f"arm64 probe lacks {sorted(ARCH_COMMANDS['aarch64'] - arm)}"
    assert not arm & ARCH_COMMANDS["x86_64"], f"arm64 probe names x86 commands {sorted(arm & ARCH_COMMANDS['x86_64'])}"
    assert {"hello", "ping", "rd", "wr", "irq_arm", "irq_count", "eoi", "ipi", "clock", "exit"} <= arm


@pytest.mark.parametrize("agent", sorted(AGENT_COMMANDS))
def test_agent_names_only_commands_of_the_protocol(agent: str) -> None:
    names = AGENT_COMMANDS[agent]()
    assert len(names) >= 10, f"the {agent} parser found only {sorted(names)}: did the source change shape?"
    assert names <= COMMANDS, f"{agent} answers commands protocol.py does not define: {sorted(names - COMMANDS)}"
    assert {"hello", "ping", "exit"} <= names, f"{agent} lacks a command every agent must answer"


def test_client_and_docs_use_the_protocol_commands() -> None:
    assert client_commands() == COMMANDS
    assert doc_commands() == COMMANDS


@pytest.mark.parametrize(("agent", "source", "pattern"), [
    ("probe, x86 and arm64 (C)", PROBE_PROTOCOL, r"^#define E_([A-Z_]+) (\d+)"),
    ("zigu (Zig)", ZIGU, r"^const E_([A-Z_]+) = (\d+);"),
    ("microkernelia (Rust)", MICROKERNELIA, r"^const E_([A-Z_]+): u\d+ = (\d+);"),
])
def test_agent_error_codes_match_the_protocol(agent: str, source: Path, pattern: str) -> None:
    codes = error_constants(source, pattern)
    assert len(codes) >= 8, f"found only {codes} in {source}"
    unknown = sorted(set(codes) - set(ERROR_ALIASES))
    assert not unknown, f"{agent} defines error codes with no meaning in protocol.py: {unknown}"
    wrong = {name: (value, int(ERROR_ALIASES[name])) for name, value in codes.items() if value != ERROR_ALIASES[name]}
    assert not wrong, f"{agent} error codes differ from protocol.ErrorCode (agent, protocol): {wrong}"


def test_zosia_shell_agent_fails_only_with_protocol_codes() -> None:
    used = {int(code) for code in re.findall(r"\bfail (\d+) ", ZOSIA.read_text())}
    assert used, "no 'fail N' in the shell agent: did the source change shape?"
    assert used <= {int(code) for code in ErrorCode}, f"unknown error codes {sorted(used - set(ErrorCode))}"


def test_protocol_module_names_every_command_once() -> None:
    assert all(protocol._TOKEN_RE.match(name) for name in COMMANDS)


def test_the_arm64_probe_exits_with_gods_reset2_type() -> None:
    """The arm64 probe leaves god through PSCI SYSTEM_RESET2 with god's vendor reset type: the
    C define and god's constant are one value (guests/probe/aarch64/probe.h, god.arch.aarch64)."""
    from god.arch.aarch64.runner import RESET2_GOD_EXIT

    header = (ROOT / "guests" / "probe" / "aarch64" / "probe.h").read_text()
    m = re.search(r"#define GOD_RESET2_EXIT (0x[0-9A-Fa-f]+)ULL", header)
    assert m and int(m.group(1), 16) == RESET2_GOD_EXIT


def test_memory_line_limits_match_the_probe() -> None:
    """The client's mrd/mwr chunk and mwr fill= limit are the probe's (guests/probe/agent.c):
    a larger chunk would be refused as ``err 3 hex``, a larger fill as ``err 3 fill``."""
    from pytest_vmm.agent import client

    source = PROBE.read_text()
    chunk = re.search(r"^#define MEM_CHUNK (\d+)", source, re.MULTILINE)
    dma = re.search(r"^#define DMA_AREA_SIZE (0x[0-9a-fA-F]+|\d+)", source, re.MULTILINE)
    fill = re.search(r"^#define MEM_FILL_MAX (\w+)", source, re.MULTILINE)
    assert chunk and dma and fill, "MEM_CHUNK, DMA_AREA_SIZE or MEM_FILL_MAX not found: did agent.c change shape?"
    assert client.MEM_CHUNK == int(chunk[1])
    fill_max = int(dma[1], 0) if fill[1] == "DMA_AREA_SIZE" else int(fill[1], 0)
    assert client.MEM_FILL_MAX == fill_max
