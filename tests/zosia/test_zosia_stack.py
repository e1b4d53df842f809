"""The zosia stack definition reads zosia.json and switches boot modes (no VM booted)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_vmm.agent.protocol import READY_REGEX
from pytest_vmm.errors import LaunchError
from pytest_vmm.host import HostInfo
from pytest_vmm.stack import BuiltImage
from pytest_vmm.stacks import zosia
from pytest_vmm.stacks._common import GUESTS


def fake_image(tmp_path: Path) -> BuiltImage:
    for rel in ("linux/vmlinux", "initramfs.cpio", "model.ext2"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "zosia.json").write_text(json.dumps({
        "kernel": "linux/vmlinux", "initrd": "initramfs.cpio", "disk": "model.ext2",
        "disk_readonly": True, "append": "console=ttyS0 panic=-1", "memory_mib": 512,
        "cpus_tcg": 1, "cpus_kvm": 2, "qemu": {"machine": "microvm", "append_extra": "pci=off"},
    }))
    return BuiltImage.load("zosia", tmp_path)  # no image.json: the stack reads zosia.json


def host(flavour: str) -> HostInfo:
    return HostInfo(kvm_flavour=flavour, kvm_device=True, kvm_usable=True, kvm_problem="",  # type: ignore[arg-type]
                    cpu_khz=2_600_000)


def test_boot_spec_comes_from_zosia_json(tmp_path: Path) -> None:
    spec = zosia.boot(fake_image(tmp_path), host("pvm"), "qemu")
    assert spec.kernel == tmp_path / "linux/vmlinux" and spec.initrd == tmp_path / "initramfs.cpio"
    assert [d.path for d in spec.disks] == [tmp_path / "model.ext2"] and spec.disks[0].read_only
    assert spec.mem_mib == 512 and spec.cpus == 1
    words = spec.cmdline.split()
    assert words[:2] == ["console=ttyS0", "panic=-1"]
    assert {"pci=off", "tsc_early_khz=2600000", "zosia.agent=1", "iomem=relaxed"} <= set(words)
    assert spec.ready == READY_REGEX.encode()  # the default boot is the agent
    assert zosia.boot(fake_image(tmp_path), host("svm"), "qemu").cpus == 2


def test_set_mode_switches_to_a_llama_mode(tmp_path: Path) -> None:
    spec = zosia.boot(fake_image(tmp_path), host("pvm"), "qemu")
    zosia.set_mode(spec, "zosia.perf=1 zosia.perf.tokens=32", zosia.BOOT_OK, disks=[])
    words = spec.cmdline.split()
    assert "zosia.agent=1" not in words and "iomem=relaxed" not in words
    assert words[-2:] == ["zosia.perf=1", "zosia.perf.tokens=32"]
    assert spec.ready == zosia.BOOT_OK and spec.disks == []
    assert re.search(zosia.READY, b"zosia: prompt ready t=1.78")


def test_accel_and_recipe() -> None:
    assert zosia.preferred_accel(host("pvm"), "qemu") == "tcg"
    assert zosia.preferred_accel(host("vmx"), "qemu") is None
    assert GUESTS / "linux" in zosia.stack.recipe.extra_inputs
    assert {"agent", "llm", "mmio"} <= zosia.stack.capabilities
    assert not {"irq", "timer"} & zosia.stack.capabilities


def fake_aarch64_image(tmp_path: Path) -> BuiltImage:
    for rel in ("linux/Image", "initramfs.cpio", "model.ext2"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "zosia.json").write_text(json.dumps({
        "arch": "aarch64", "kernel": "linux/Image", "initrd": "initramfs.cpio", "disk": "model.ext2",
        "disk_readonly": True, "append": "console=ttyAMA0 panic=-1", "memory_mib": 512,
        "cpus_tcg": 1, "cpus_kvm": 2, "qemu": {"machine": "virt,gic-version=3"},
    }))
    return BuiltImage.load("zosia-aarch64", tmp_path)


def test_aarch64_boot_spec_is_virt_without_x86_knobs(tmp_path: Path) -> None:
    spec = zosia.boot(fake_aarch64_image(tmp_path), host("pvm"), "qemu-virt")
    assert spec.kernel == tmp_path / "linux/Image" and spec.qemu_machine == "virt,gic-version=3"
    words = spec.cmdline.split()
    assert words[:2] == ["console=ttyAMA0", "panic=-1"] and "zosia.agent=1" in words
    assert not [w for w in words if w.startswith(("tsc", "pci="))]  # x86-only
    assert spec.firmware is None  # direct kernel boot by default
    assert zosia.preferred_accel(host("pvm"), "qemu-virt") is None  # qemu-virt decides


def test_uefi_variant_from_the_option(tmp_path: Path) -> None:
    spec = zosia.boot(fake_aarch64_image(tmp_path), host("pvm"), "qemu-virt")
    base_timeout = spec.boot_timeout_s
    assert zosia.option_variant(lambda name: False, "qemu-virt") is None
    assert zosia.option_variant(lambda name: name == "vmm_zosia_uefi", "qemu") is None  # x86: no UEFI
    variant = zosia.option_variant(lambda name: name == "vmm_zosia_uefi", "qemu-virt")
    assert variant is not None
    firmware = tmp_path / "QEMU_EFI.fd"
    firmware.write_bytes(b"fd")
    spec = zosia.set_uefi(spec, firmware)
    assert spec.firmware == firmware and spec.boot_timeout_s > base_timeout


def test_uefi_without_firmware_is_a_clear_error(tmp_path: Path) -> None:
    spec = zosia.boot(fake_aarch64_image(tmp_path), host("pvm"), "qemu-virt")
    with pytest.raises(LaunchError, match="qemu-efi-aarch64"):
        zosia.set_uefi(spec, tmp_path / "missing.fd")


def test_aarch64_recipe_is_its_own_cache_entry() -> None:
    recipe = zosia.aarch64_recipe(zosia.RECIPE)
    assert recipe.name == "zosia-aarch64" and recipe.name != zosia.stack.recipe.name
    assert recipe.command[-2:] == ("--arch", "aarch64") and recipe.sources == zosia.RECIPE.sources
    assert "qemu-virt" in zosia.stack.hypervisors


def test_run_sh_output_folders_are_not_sources() -> None:
    for recipe in (zosia.stack.recipe, zosia.aarch64_recipe(zosia.RECIPE)):
        assert {"out", "out-aarch64"} <= set(recipe.exclude)


def test_x86_image_ships_avx2_only_where_hardware_kvm_runs_it() -> None:
    """Without hardware KVM the x86_64 image runs only under TCG, where /init takes sse42: the
    avx2 build is not made (and its choice is in the command, so in the cache key)."""
    assert zosia.x86_llama_variants(host("pvm")) == "sse42"
    assert zosia.x86_llama_variants(host("none")) == "sse42"
    assert zosia.x86_llama_variants(host("vmx")).split(",") == ["avx2", "sse42"]
    assert zosia.RECIPE.command[-2] == "--llama-variants"
    assert "--llama-variants" not in zosia.aarch64_recipe(zosia.RECIPE).command
