"""Hooks other plugins and conftest.py files implement to extend pytest-vmm."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_vmm.registry import Registry


@pytest.hookspec
def pytest_vmm_register(registry: Registry) -> None:
    """Add stacks and hypervisors: ``registry.add_stack(Stack(...))``,
    ``registry.add_hypervisor(MyHypervisor())``.

    Called once per process after all conftest files are loaded. Packages can instead
    (or also) publish objects under the ``pytest_vmm.stacks`` and
    ``pytest_vmm.hypervisors`` entry-point groups.
    """
