"""ABI capability rules of the zigu stack, checked host-side and in the guest.

The checks live in guests/zigu/adapter/python-3.12/abi_checks.py and run unchanged against
  * the host library (libzigu_abi.so: the kernel's own abi.zig built for the host), and
  * the running kernel, through the in-guest ABI channel (`@abi` lines on the console).
Rules: nothing active at start; every gated call denied until its kind is entered;
policy-denied kinds; stale and forged handles; table exhaustion and recovery; bad
pointers/lengths; io_poll timeouts and readiness.
"""
from __future__ import annotations

import sys

import pytest

from pytest_vmm.stacks._common import guest_dir

ADAPTER = guest_dir("zigu") / "adapter" / "python-3.12"
if str(ADAPTER) not in sys.path:
    sys.path.insert(0, str(ADAPTER))

import abi_checks

CHECKS = abi_checks.ALL
IDS = [c.__name__.removeprefix("check_") for c in CHECKS]


@pytest.fixture(scope="module")
def host_abi():
    try:
        import ukernel_abi

        return ukernel_abi.HostAbi()  # builds guests/zigu with `zig build` if needed
    except Exception as exc:  # no ziglang, build failure
        pytest.skip(f"zigu host ABI library unavailable: {exc}")


@pytest.mark.parametrize("check", CHECKS, ids=IDS)
def test_abi_rule_host(host_abi, check) -> None:
    check(host_abi)


@pytest.fixture
def guest_abi(shared_machine):
    from ukernel_channel import GuestAbi

    return GuestAbi(shared_machine, timeout=30.0)


@pytest.mark.vmm_requires("abi")
@pytest.mark.parametrize("check", CHECKS, ids=IDS)
def test_abi_rule_in_guest(guest_abi, check) -> None:
    check(guest_abi)
    assert guest_abi.call("ping") == "pong", "the kernel must still answer after the check"
