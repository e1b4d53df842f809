"""Which KVM serves /dev/kvm, from the kernel module that provides it.

Standard library only and importing nothing else of god: pytest-vmm's host detection
(pytest_vmm/host.py) imports this module, so the table below is the one place that says which
module means which flavour, and importing it costs nothing.
"""

from __future__ import annotations

from pathlib import Path

# Checked in this order: a PVM host also has kvm_intel or kvm_amd loaded beside kvm_pvm.
FLAVOUR_MODULES: tuple[tuple[str, str], ...] = (
    ("kvm_pvm", "pvm"),
    ("kvm_intel", "vmx"),
    ("kvm_amd", "svm"),
)
UNKNOWN = "unknown"


def kvm_flavour(sys_module: Path = Path("/sys/module")) -> str:
    """'pvm' (software, kvm_pvm), 'vmx' (Intel), 'svm' (AMD), or 'unknown' (none loaded)."""
    for module, flavour in FLAVOUR_MODULES:
        if (sys_module / module).exists():
            return flavour
    return UNKNOWN
