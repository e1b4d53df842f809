"""ABI capability rules of the zigu stack (docs/zigu-abi.md, "Calls", "Errors", "Rules" 1-9),
checked host-side and in the guest.

The checks live in guests/zigu/adapter/python-3.12/abi_checks.py and run unchanged against
  * the host library (libzigu_abi.so: the kernel's own abi.zig built for the host), and
  * the running kernel, through the in-guest ABI channel (`@abi` lines on the console).
Rules: nothing active at start; every gated call denied until its kind is entered;
policy-denied kinds; stale and forged handles; table exhaustion and recovery; bad
pointers/lengths; io_poll timeouts and readiness (each check's id names its rule). The constants those checks use (``UK.*``, exported by the library)
are first held to the document by an independent model (suites/zigu_abi_spec.py), so the rules
are judged by the spec's numbers, not by the implementation's own.
"""
from __future__ import annotations

import pytest

from pytest_vmm.stacks import zigu

from . import zigu_abi_spec as spec

abi_checks = zigu.adapter("abi_checks")

CHECKS = abi_checks.ALL
IDS = [c.__name__.removeprefix("check_") for c in CHECKS]


@pytest.fixture(scope="module")
def host_abi_lib():
    return spec.load_host_abi()  # builds guests/zigu with `zig build` if needed; a failed build errors


@pytest.fixture
def host_abi(vmm_stack, host_abi_lib):
    """The host library for the host-side checks. They are zigu's checks (its abi.zig built for
    the host), so they run when zigu is among the selected targets (vmm_stacks below), and
    `--vmm=god` neither builds zigu nor runs them."""
    return host_abi_lib


@pytest.mark.vmm_stacks("zigu")
def test_abi_constants_match_the_spec(host_abi) -> None:
    """docs/zigu-abi.md, "Calls" (call numbers, kinds), "Errors" (codes), rules 3 (table size,
    handle layout) and 9 (workload policies): every constant the library exports under a name
    the document fixes has the document's value."""
    constants = zigu.adapter("ukernel_abi").constants
    exported = {name.removeprefix("UK_"): value for name, value in constants(host_abi.lib).items()}
    expected = spec.spec_constants()
    missing = sorted(set(expected) - set(exported))
    wrong = {k: (exported[k], v) for k, v in expected.items() if k in exported and exported[k] != v}
    assert not missing and not wrong, (
        f"libzigu_abi.so against docs/zigu-abi.md: missing {missing}, (exported, documented) differ {wrong}")


def test_abi_gates_match_the_spec() -> None:
    """docs/zigu-abi.md, "Calls", gate column: the table the rule checks iterate over names the
    same calls and kinds as the document."""
    assert abi_checks.GATED == spec.GATES, f"abi_checks.GATED {abi_checks.GATED} vs the document {spec.GATES}"


@pytest.mark.vmm_stacks("zigu")
@pytest.mark.parametrize("check", CHECKS, ids=IDS)
def test_abi_rule_host(host_abi, check) -> None:
    """docs/zigu-abi.md, "Rules": the rule the check's id names, on the host library."""
    check(host_abi)


@pytest.fixture
def guest_abi(shared_machine):
    return shared_machine.channel("abi")


@pytest.mark.vmm_requires("abi")
@pytest.mark.parametrize("check", CHECKS, ids=IDS)
def test_abi_rule_in_guest(guest_abi, check) -> None:
    """docs/zigu-abi.md, "Rules" and "In the guest": the rule named by ``check``, through the
    running kernel's ABI channel; the kernel still answers afterwards."""
    check(guest_abi)
    assert guest_abi.call("ping") == "pong", "the kernel must still answer after the check"
