"""TickCount.ticks_expected: the tick range a measured window allows."""

from __future__ import annotations

from pytest_vmm.agent.client import PIT_INPUT_HZ, TickCount


def test_window_of_200_ms_at_100_hz_allows_19_to_21() -> None:
    divisor = round(PIT_INPUT_HZ / 100)
    assert TickCount(ticks=20, ns=200_000_000, hz=100, divisor=divisor).ticks_expected() == (19, 21)


def test_a_late_wakeup_widens_the_range_with_the_window() -> None:
    # The vCPU woke 40 ms late: the window the guest measured is 240 ms, so 24 ticks are right.
    low, high = TickCount(ticks=24, ns=240_500_000, hz=100).ticks_expected()
    assert low <= 24 <= high
    assert high < 30


def test_missing_ticks_stay_outside_the_range() -> None:
    low, _ = TickCount(ticks=10, ns=200_000_000, hz=100).ticks_expected()
    assert low > 10


def test_the_reload_value_sets_the_rate_when_known() -> None:
    # divisor 11932 gives 99.998 Hz, hz=1000 is ignored when the divisor is reported
    assert TickCount(ticks=100, ns=1_000_000_000, hz=1000, divisor=11932).ticks_expected() == (99, 101)
