"""The KVM layer: ioctl numbers, struct layouts and fd wrappers, defined once."""

from god.kvm.system import Kvm, KvmError, VcpuFd, VmFd, kvm_flavour

__all__ = ["Kvm", "KvmError", "VcpuFd", "VmFd", "kvm_flavour"]
