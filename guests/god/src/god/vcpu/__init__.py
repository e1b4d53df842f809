"""vCPU threads: the run loop and exit decoding."""

from god.vcpu.runner import VcpuRunner, VmExit

__all__ = ["VcpuRunner", "VmExit"]
