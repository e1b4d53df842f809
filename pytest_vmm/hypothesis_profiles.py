"""Hypothesis profiles for conformance runs: select with --hypothesis-profile=vmm-ci|vmm-fuzz."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

VMM_CI = "vmm-ci"
VMM_FUZZ = "vmm-fuzz"


# What every property test against a guest needs whatever the profile (including Hypothesis'
# default when no --hypothesis-profile is given): one machine serves all examples on purpose
# (shared_machine), and a guest's response time is no deadline.
GUEST_TEST_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


def guest_settings() -> settings:
    """``@guest_settings()`` on a ``@given`` test that talks to a guest: the active profile,
    plus GUEST_TEST_SETTINGS."""
    return settings(**GUEST_TEST_SETTINGS)  # type: ignore[arg-type]


def register() -> None:
    # CI: bounded and reproducible; guests are slow, so wall-clock deadlines would only flake.
    settings.register_profile(
        VMM_CI,
        max_examples=50,
        derandomize=True,
        database=None,
        print_blob=True,
        stateful_step_count=30,
        **GUEST_TEST_SETTINGS,  # type: ignore[arg-type]
    )
    # Fuzz campaigns: many examples, failures kept in the example database for replay,
    # and a reproducer blob printed for each failure.
    settings.register_profile(
        VMM_FUZZ,
        max_examples=20_000,
        database=DirectoryBasedExampleDatabase(".hypothesis/vmm-fuzz"),
        print_blob=True,
        phases=list(Phase),
        stateful_step_count=100,
        **GUEST_TEST_SETTINGS,  # type: ignore[arg-type]
    )
