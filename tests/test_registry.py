"""Target parsing and registration, tested directly (no pytest run needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vmm.host import HostInfo, detect_kvm_flavour
from pytest_vmm.hypervisors.qemu import Qemu
from pytest_vmm.registry import Registry, RegistryError
from pytest_vmm.stack import BootSpec, Stack


def _stack(name: str, default: str = "qemu") -> Stack:
    return Stack(name=name, description=name, recipe=None, boot=lambda i, h, hv: BootSpec(kernel=Path("k")),
                 default_hypervisor=default, hypervisors=("qemu",), capabilities=frozenset({"serial"}))


@pytest.fixture
def registry() -> Registry:
    reg = Registry(HostInfo.detect())
    reg.add_hypervisor(Qemu())
    reg.add_stack(_stack("a"))
    reg.add_stack(_stack("b"))
    return reg


def test_resolve_names_all_and_explicit_hypervisor(registry: Registry) -> None:
    assert [t.id for t in registry.resolve("a")] == ["a"]
    assert [t.id for t in registry.resolve("all")] == ["a", "b"]
    assert [t.id for t in registry.resolve("a@qemu,b,a")] == ["a@qemu", "b", "a"]
    assert [t.id for t in registry.resolve("a, a")] == ["a"]


def test_resolve_errors_name_the_valid_choices(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=r"unknown stack 'c'.*valid stacks: a, b, all"):
        registry.resolve("c")
    with pytest.raises(RegistryError, match="names no stack"):
        registry.resolve(" , ")


def test_reserved_names_are_refused(registry: Registry) -> None:
    for bad in ("all", "x@y", "x,y"):
        with pytest.raises(RegistryError, match="invalid stack name"):
            registry.add_stack(_stack(bad))


def test_entry_points_register_the_four_in_repo_stacks() -> None:
    reg = Registry(HostInfo.detect())
    reg.load_entry_points()
    assert reg.load_errors == []
    assert {"god", "zigu", "microkernelia", "zosia"} <= set(reg.stacks)
    assert {"god", "qemu", "firecracker"} <= set(reg.hypervisors)


def test_kvm_flavour_detection(tmp_path: Path) -> None:
    assert detect_kvm_flavour(tmp_path) == "none"
    for module, flavour in (("kvm_amd", "svm"), ("kvm_intel", "vmx"), ("kvm_pvm", "pvm")):
        (tmp_path / module).mkdir()
        assert detect_kvm_flavour(tmp_path) == flavour


def test_missing_dev_kvm_is_reported_with_the_reason(tmp_path: Path) -> None:
    host = HostInfo.probe(tmp_path / "kvm", tmp_path)
    assert not host.kvm_usable
    assert "does not exist" in host.kvm_problem
