"""god: a Python KVM virtual machine monitor for x86_64.

Layers (one job each, like the rust-vmm crates):
  god.kvm      ioctl numbers, ctypes struct layouts, /dev/kvm, VM and vCPU file descriptors
  god.memory   guest RAM regions and bounds-checked guest-physical access
  god.devices  architecture-neutral buses and devices (UART, exit port, CMOS, i8042)
  god.vcpu     the per-vCPU run loop and exit decoding
  god.boot     kernel loaders (PVH, multiboot v1, Linux boot protocol, flat binaries)
  god.machine  wires the layers into one virtual machine
  god.cli      the `god` command
"""

__version__ = "0.1.0"
