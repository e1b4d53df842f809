"""zigu's capability ABI as its specification states it (docs/zigu-abi.md), written out here
independently of the implementation, so the ABI suites judge ``libzigu_abi.so`` and the guest
against the document rather than against constants the library exports about itself.

Also: loading the host library, where a failing ``zig build`` is an error with its log, and
only a missing Zig toolchain is a skip (a capability the machine lacks).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Any

import pytest

from pytest_vmm.stacks import zigu

BUILD_LOG_TAIL = 6000

# docs/zigu-abi.md, "Calls": kinds LOG=1 ... RANDOM=6; 0 and > 6 are ERR_BAD_KIND.
KINDS = {"CAP_LOG": 1, "CAP_TIME": 2, "CAP_TASK": 3, "CAP_IO": 4, "CAP_NET": 5, "CAP_RANDOM": 6}
KIND_MIN, KIND_MAX = 1, 6
# docs/zigu-abi.md, "Calls": the call numbers of the table.
CALLS = {"SYS_CAP_ACQUIRE": 1, "SYS_CAP_RELEASE": 2, "SYS_CAP_ENTER": 3, "SYS_CAP_ACTIVE": 4,
         "SYS_CAP_KIND": 5, "SYS_CAP_POLICY": 6, "SYS_LOG_WRITE": 16, "SYS_TIME_NOW": 17,
         "SYS_TIME_SLEEP": 18, "SYS_TASK_YIELD": 19, "SYS_TASK_ID": 20, "SYS_IO_PIPE": 21,
         "SYS_IO_READ": 22, "SYS_IO_WRITE": 23, "SYS_IO_CLOSE": 24, "SYS_IO_POLL": 25,
         "SYS_NET_OPEN": 26, "SYS_RANDOM_GET": 27}
# docs/zigu-abi.md, "Calls": the gate column (which kind a call needs active).
GATES = {"SYS_LOG_WRITE": "CAP_LOG", "SYS_TIME_NOW": "CAP_TIME", "SYS_TIME_SLEEP": "CAP_TIME",
         "SYS_TASK_YIELD": "CAP_TASK", "SYS_TASK_ID": "CAP_TASK", "SYS_IO_PIPE": "CAP_IO",
         "SYS_IO_READ": "CAP_IO", "SYS_IO_WRITE": "CAP_IO", "SYS_IO_CLOSE": "CAP_IO",
         "SYS_IO_POLL": "CAP_IO", "SYS_NET_OPEN": "CAP_NET", "SYS_RANDOM_GET": "CAP_RANDOM"}
# docs/zigu-abi.md, "Errors".
ERRORS = {"ERR_PERMISSION": -1, "ERR_BAD_HANDLE": -2, "ERR_STALE_HANDLE": -3, "ERR_TABLE_FULL": -4,
          "ERR_BAD_POINTER": -5, "ERR_BAD_LENGTH": -6, "ERR_BAD_KIND": -7, "ERR_DENIED": -8,
          "ERR_BAD_FD": -9, "ERR_WOULD_BLOCK": -10, "ERR_NOSYS": -11, "ERR_INVALID": -12,
          "ERR_NO_DEVICE": -13, "ERR_CLOSED": -14}
# docs/zigu-abi.md, rule 3: 16 slots; handle = (generation << 8) | slot; 24-bit generations.
TABLE_SIZE = 16
HANDLE_GEN_SHIFT = 8
HANDLE_SLOT_MASK = 0xFF
HANDLE_GEN_MAX = (1 << 24) - 1


def _mask(*kinds: str) -> int:
    return sum(1 << KINDS[k] for k in kinds)


# docs/zigu-abi.md, rule 9: default = LOG TIME TASK IO RANDOM; trusted = all; minimal = LOG;
# sandbox = nothing (workload numbers WL_DEFAULT=0, TRUSTED=1, MINIMAL=2, SANDBOX=3).
WORKLOADS = {"WL_DEFAULT": 0, "WL_TRUSTED": 1, "WL_MINIMAL": 2, "WL_SANDBOX": 3}
WL_COUNT = 4
POLICIES = {
    "WL_DEFAULT": _mask("CAP_LOG", "CAP_TIME", "CAP_TASK", "CAP_IO", "CAP_RANDOM"),
    "WL_TRUSTED": _mask(*KINDS),
    "WL_MINIMAL": _mask("CAP_LOG"),
    "WL_SANDBOX": 0,
}
POLICY_BY_WORKLOAD = [POLICIES[name] for name, _ in sorted(WORKLOADS.items(), key=lambda kv: kv[1])]


def spec_constants() -> dict[str, int]:
    """Every constant the document fixes, by the library's names (``UK.<name>``)."""
    out: dict[str, int] = {**KINDS, **CALLS, **ERRORS, **WORKLOADS}
    out.update(CAP_KIND_MIN=KIND_MIN, CAP_KIND_MAX=KIND_MAX, CAP_TABLE_SIZE=TABLE_SIZE,
               HANDLE_GEN_SHIFT=HANDLE_GEN_SHIFT, HANDLE_SLOT_MASK=HANDLE_SLOT_MASK,
               HANDLE_GEN_MAX=HANDLE_GEN_MAX, WL_COUNT=WL_COUNT,
               **{"POLICY_" + name.removeprefix("WL_"): mask for name, mask in POLICIES.items()})
    return out


class SpecConstants:
    """The document's constants as attributes with the library's names (``ERR_DENIED``, ...),
    plus ``OK`` = 0, for models written against that naming."""

    OK = 0

    def __init__(self) -> None:
        for name, value in spec_constants().items():
            setattr(self, name, value)

    def __getattr__(self, name: str) -> int:
        raise AttributeError(f"docs/zigu-abi.md fixes no constant {name!r}")


def load_host_abi() -> Any:
    """``ukernel_abi.HostAbi()``, building ``libzigu_abi.so`` first if needed.

    Skips only when no Zig toolchain is installed; a failing build fails with its log, and
    any other problem loading the library propagates as the error it is.
    """
    ukernel_abi = zigu.adapter("ukernel_abi")

    if not os.environ.get("ZIGU_ABI_LIB") and not ukernel_abi.DEFAULT_LIB.exists():
        if importlib.util.find_spec("ziglang") is None:
            pytest.skip("needs the Zig toolchain (Python package ziglang) to build libzigu_abi.so")
        build = subprocess.run([sys.executable, "-m", "ziglang", "build"], cwd=ukernel_abi.ZIGU_DIR,
                               capture_output=True, text=True, check=False)
        if build.returncode != 0 or not ukernel_abi.DEFAULT_LIB.exists():
            log = (build.stdout + build.stderr)[-BUILD_LOG_TAIL:]
            pytest.fail(f"`zig build` in {ukernel_abi.ZIGU_DIR} failed (status {build.returncode}):\n{log}",
                        pytrace=False)
    return ukernel_abi.HostAbi()
