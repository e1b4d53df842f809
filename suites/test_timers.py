"""Timers through the guest agent: PIT periodic rate against host wall time and the guest TSC,
LAPIC one-shot accuracy, TSC monotonicity within and across vCPUs, the guest's TSC frequency
against host time, and what an idle (HLT) guest costs its VMM.

Tolerances are stated next to each check. The PIT runs at 100 Hz here: at 1 kHz a loaded
2-core host (this CI) delays vCPU threads past a period now and then and ticks merge.
"""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from pytest_vmm import Machine

RATE_TOLERANCE = 0.01  # 1%
NESTED_HALT_CPU_LIMIT = 0.60  # of a core, for a VMM nested in an emulated machine (the lane)
# Each check programs the timer it measures and stops it again: checks of one target share a
# guest, health-checked between them.
pytestmark = [pytest.mark.vmm_requires("timer"), pytest.mark.vmm_shared]


# ---------------------------------------------------------------------------- PIT
def test_pit_periodic_rate_against_host_wall_time(machine: Machine) -> None:
    agent = machine.agent
    t0 = time.monotonic()
    start = agent.pit_start(100)
    t1 = time.monotonic()
    time.sleep(2.0)
    t2 = time.monotonic()
    stop = agent.pit_stop()
    t3 = time.monotonic()
    rate = stop.rate_hz
    # The PIT ran between the two replies: at least t2-t1, at most t3-t0 of host time.
    low, high = (t2 - t1) * rate, (t3 - t0) * rate
    ticks = stop.ticks - start.ticks
    machine.record("pit_ticks_2s", ticks)
    assert low * (1 - RATE_TOLERANCE) - 1 <= ticks <= high * (1 + RATE_TOLERANCE) + 1, (
        f"PIT at {rate:.3f} Hz over {t2 - t1:.3f}..{t3 - t0:.3f} s of host time: expected "
        f"{low:.1f}..{high:.1f} ticks (+-1%), observed {ticks}")


def test_pit_periodic_rate_against_guest_tsc(machine: Machine) -> None:
    pit = machine.agent.pit_measure(ms=1000, hz=100)
    ticks, span_ns = pit.ticks, pit.span_ns
    assert ticks >= 2, f"PIT at 100 Hz for 1 s: expected ~100 ticks, observed {ticks}"
    period_ns = span_ns / (ticks - 1)
    expected_ns = 1e9 / pit.rate_hz
    error = period_ns / expected_ns - 1
    machine.record("pit_period_error_ppm", round(error * 1e6))
    assert abs(error) <= RATE_TOLERANCE, (
        f"PIT period by the guest TSC: expected {expected_ns:.0f} ns (+-1%), observed {period_ns:.0f} ns "
        f"({ticks} ticks over {span_ns} ns)")


def test_pit_tick_count_over_guest_second(machine: Machine) -> None:
    pit = machine.agent.pit_measure(ms=1000, hz=100)
    low, high = pit.ticks_expected()
    machine.record("pit_window_ms", round(pit.ns / 1e6, 1))
    assert low <= pit.ticks <= high, (
        f"PIT at 100 Hz over {pit.ns / 1e6:.1f} ms of guest time: expected {low}..{high} ticks, observed {pit.ticks}")


def test_pit_stops_when_masked(machine: Machine) -> None:
    agent = machine.agent
    agent.pit_start(100)
    agent.halt(50)
    stopped = agent.pit_stop().ticks
    agent.halt(100)
    later = agent.pit_read().ticks
    assert later == stopped, f"PIT line masked: expected ticks to stay at {stopped}, observed {later}"


# ---------------------------------------------------------------------------- LAPIC one-shot
@pytest.mark.parametrize("us", [1000, 10000, 50000])
def test_lapic_oneshot_never_early(machine: Machine, us: int) -> None:
    shot = machine.agent.lapic_oneshot(us)
    assert shot.fired == 1, f"LAPIC one-shot of {us} us: expected 1 interrupt, observed {shot.fired}"
    # 0.1% slack: the agent converts between the TSC and LAPIC rates it calibrated
    assert shot.elapsed_ns >= shot.requested_ns * 0.999, (
        f"LAPIC one-shot of {us} us fired early: expected >= {shot.requested_ns} ns, observed {shot.elapsed_ns} ns")


@pytest.mark.parametrize("us", [1000, 10000, 50000])
def test_lapic_oneshot_latency(machine: Machine, us: int) -> None:
    # Host scheduling only ever makes a wake-up later, so the best of 5 shots is the timer's own
    # accuracy; the bound is 2 ms + 2% of the interval (TCG on a busy 2-core host needs the 2 ms).
    shots = [machine.agent.lapic_oneshot(us) for _ in range(5)]
    late_ns = min(s.elapsed_ns - s.requested_ns for s in shots)
    machine.record(f"oneshot_{us}us_late_ns", late_ns)
    limit = 2_000_000 + us * 1000 // 50
    assert all(s.fired == 1 for s in shots) and late_ns <= limit, (
        f"LAPIC one-shot of {us} us, best of 5: expected at most {limit} ns late, observed {late_ns} ns "
        f"(shots: {[(s.elapsed_ns, s.fired) for s in shots]})")


@pytest.mark.vmm_requires("smp")
def test_lapic_oneshot_on_second_vcpu(machine: Machine) -> None:
    shot = machine.agent.lapic_oneshot(10000, cpu=1)
    assert shot.fired == 1 and shot.elapsed_ns >= shot.requested_ns * 0.999, (
        f"LAPIC one-shot of 10 ms on vCPU1: expected 1 interrupt after >= 10 ms, observed {shot}")


# ---------------------------------------------------------------------------- TSC
def test_tsc_monotonic_within_vcpu(machine: Machine) -> None:
    agent = machine.agent
    reads = [agent.clock().tsc for _ in range(20)]
    backwards = [(a, b) for a, b in pairwise(reads) if b <= a]
    assert not backwards, f"TSC on vCPU0: expected strictly increasing reads, observed steps back {backwards}"


@pytest.mark.vmm_requires("smp")
def test_tsc_monotonic_across_vcpus(machine: Machine) -> None:
    agent = machine.agent
    # Requests are serialised: each read happens after the previous one returned.
    reads = [(cpu, agent.clock(cpu=cpu).tsc) for _ in range(10) for cpu in (0, 1)]
    backwards = [(a, b) for a, b in pairwise(reads) if b[1] <= a[1]]
    assert not backwards, f"TSC read alternately on vCPU0/1: expected increasing, observed steps back {backwards}"


def test_tsc_frequency_consistent_with_host_time(machine: Machine) -> None:
    agent = machine.agent
    hello = agent.hello()
    t0 = time.monotonic()
    c1 = agent.clock()
    t1 = time.monotonic()
    time.sleep(1.0)
    t2 = time.monotonic()
    c2 = agent.clock()
    t3 = time.monotonic()
    guest_s = (c2.tsc - c1.tsc) / (hello.tsc_khz * 1000)
    low, high = t2 - t1, t3 - t0
    machine.record("tsc_khz", hello.tsc_khz)
    assert low * (1 - RATE_TOLERANCE) <= guest_s <= high * (1 + RATE_TOLERANCE), (
        f"TSC delta / advertised {hello.tsc_khz} kHz: expected {low:.4f}..{high:.4f} s of host time (+-1%), "
        f"observed {guest_s:.4f} s")


def test_guest_ns_clock_matches_tsc(machine: Machine) -> None:
    agent = machine.agent
    khz = agent.hello().tsc_khz
    c1 = agent.clock()
    agent.halt(100)
    c2 = agent.clock()
    from_tsc = (c2.tsc - c1.tsc) * 1_000_000 // khz
    assert abs((c2.ns - c1.ns) - from_tsc) <= 1000, (
        f"guest ns clock vs TSC/{khz} kHz: expected {from_tsc} ns (+-1 us), observed {c2.ns - c1.ns} ns")


# ---------------------------------------------------------------------------- HLT
def test_halt_lasts_as_requested(machine: Machine) -> None:
    halted = machine.agent.halt(200)
    assert 200_000_000 <= halted.ns <= 260_000_000, f"HLT for 200 ms: expected 200..260 ms, observed {halted.ns / 1e6:.1f} ms"


@pytest.mark.vmm_requires("smp")
def test_halt_on_second_vcpu(machine: Machine) -> None:
    halted = machine.agent.halt(100, cpu=1)
    assert 100_000_000 <= halted.ns <= 160_000_000, f"HLT for 100 ms on vCPU1: expected 100..160 ms, observed {halted.ns / 1e6:.1f} ms"


def test_halted_guest_costs_under_10_percent_of_a_core(machine: Machine) -> None:
    agent = machine.agent
    agent.ping()
    share = machine.cpu_share_while(lambda: agent.halt(1000))
    if share is None:
        pytest.skip("needs /proc to read the VMM's CPU time")
    machine.record("halt_cpu_percent", round(share * 100, 1))
    also = machine.config.hypervisor.process_also_runs
    if also:
        # A nested VMM's own CPU time is not visible from here: bound the whole stack instead.
        # An idle emulated Linux costs a fraction of a core; a VMM spinning on a halted vCPU
        # inside it drives the host process to a full core.
        assert share < NESTED_HALT_CPU_LIMIT, (
            f"host process ({also}) while the guest idles in HLT for 1 s: expected < "
            f"{NESTED_HALT_CPU_LIMIT:.0%} of a core (a spinning VMM costs ~100%), observed {share:.1%}")
        return
    assert share < 0.10, f"VMM CPU while the guest idles in HLT for 1 s: expected < 10% of a core, observed {share:.1%}"
