from __future__ import annotations

import pytest

from tests.fake_stack import conftest_source


@pytest.fixture
def fake_project(pytester: pytest.Pytester):
    """A pytester project whose conftest registers the test-double stacks."""

    def make(modes: dict[str, str] | None = None, timeout: float = 10.0) -> pytest.Pytester:
        pytester.makeconftest(conftest_source(modes, timeout))
        return pytester

    return make
