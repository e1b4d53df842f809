"""Every ABI rule, through ctypes on libzigu_abi.so (the kernel's abi.zig built for the host)."""
import abi_checks
import pytest


@pytest.mark.parametrize("check", abi_checks.ALL, ids=lambda c: c.__name__.removeprefix("check_"))
def test_rule_host(host_abi, check):
    check(host_abi)


def test_log_reaches_the_platform(host_abi):
    from ukernel_abi import UK

    host_abi.log_take()
    host_abi.reset(UK.WL_MINIMAL)
    assert host_abi.enter([host_abi.acquire(UK.CAP_LOG)]) == 1 << UK.CAP_LOG
    assert host_abi.log(b"hello zigu") == 10
    assert host_abi.log_take() == b"hello zigu"


def test_host_call_rate(host_abi):
    """Native rate of the dispatcher (the >= 5,000 calls/s goal is for the ctypes path)."""
    import time

    from ukernel_abi import UK

    host_abi.reset(UK.WL_DEFAULT)
    t = time.perf_counter()
    n = 5000
    for _ in range(n):
        host_abi.active()
    rate = n / (time.perf_counter() - t)
    assert rate > 5000, rate
