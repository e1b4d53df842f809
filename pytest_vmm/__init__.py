"""pytest-vmm: boot real guest stacks under real virtualization and check them test by test."""

from pytest_vmm.host import HostInfo
from pytest_vmm.hypervisor import Hypervisor, LaunchPlan
from pytest_vmm.machine import Machine
from pytest_vmm.stack import BootSpec, Disk, ImageRecipe, Stack, VsockSpec

__all__ = [
    "BootSpec",
    "Disk",
    "HostInfo",
    "Hypervisor",
    "ImageRecipe",
    "LaunchPlan",
    "Machine",
    "Stack",
    "VsockSpec",
]
__version__ = "0.1.0"
