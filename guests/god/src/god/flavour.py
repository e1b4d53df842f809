"""Which KVM serves /dev/kvm, from the kernel module that provides it.

Standard library only and importing nothing else of god: pytest-vmm's host detection
(pytest_vmm/host.py) imports this module, so the table below is the one place that says which
module means which flavour, and importing it costs nothing.
"""

from __future__ import annotations

import os

# Checked in this order: a PVM host also has kvm_intel or kvm_amd loaded beside kvm_pvm.
FLAVOUR_MODULES: tuple[tuple[str, str], ...] = (
    ("kvm_pvm", "pvm"),
    ("kvm_intel", "vmx"),
    ("kvm_amd", "svm"),
)
UNKNOWN = "unknown"


def kvm_flavour(sys_module: str | os.PathLike[str] = "/sys/module") -> str:
    """'pvm' (software, kvm_pvm), 'vmx' (Intel), 'svm' (AMD), or 'unknown' (none loaded)."""
    # os.path, not pathlib: pathlib (and the urllib it imports) is ~4 ms of god's start-up.
    for module, flavour in FLAVOUR_MODULES:
        if os.path.exists(os.path.join(sys_module, module)):
            return flavour
    return UNKNOWN
