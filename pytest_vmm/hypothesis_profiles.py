"""Hypothesis profiles for conformance runs: select with --hypothesis-profile=vmm-ci|vmm-fuzz."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

VMM_CI = "vmm-ci"
VMM_FUZZ = "vmm-fuzz"


def register() -> None:
    # CI: bounded and reproducible; guests are slow, so wall-clock deadlines would only flake.
    settings.register_profile(
        VMM_CI,
        max_examples=50,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        stateful_step_count=30,
    )
    # Fuzz campaigns: many examples, failures kept in the example database for replay,
    # and a reproducer blob printed for each failure.
    settings.register_profile(
        VMM_FUZZ,
        max_examples=20_000,
        deadline=None,
        database=DirectoryBasedExampleDatabase(".hypothesis/vmm-fuzz"),
        print_blob=True,
        phases=list(Phase),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        stateful_step_count=100,
    )
