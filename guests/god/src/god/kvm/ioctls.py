"""KVM ioctl request numbers, computed from <linux/ioctl.h>'s _IOC encoding and the ctypes
sizes in structs.py, so each number is derived in one place rather than typed as hex."""

from __future__ import annotations

import ctypes

from god.kvm import structs as s

_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _iow(nr: int, t: type) -> int:
    return _ioc(_IOC_WRITE, nr, ctypes.sizeof(t))


def _ior(nr: int, t: type) -> int:
    return _ioc(_IOC_READ, nr, ctypes.sizeof(t))


def _iowr(nr: int, t: type) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, ctypes.sizeof(t))


# /dev/kvm
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, s.KvmCpuid2Header)
# VM fd
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, s.KvmUserspaceMemoryRegion)
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, ctypes.c_uint64)
KVM_CREATE_IRQCHIP = _io(0x60)
KVM_IRQ_LINE = _iow(0x61, s.KvmIrqLevel)
KVM_GET_IRQCHIP = _iowr(0x62, s.KvmIrqchip)
KVM_SET_GSI_ROUTING = _iow(0x6A, s.KvmIrqRoutingHeader)
KVM_IRQFD = _iow(0x76, s.KvmIrqfd)
KVM_CREATE_PIT2 = _iow(0x77, s.KvmPitConfig)
KVM_IOEVENTFD = _iow(0x79, s.KvmIoeventfd)
KVM_GET_PIT2 = _ior(0x9F, s.KvmPitState2)
KVM_SET_PIT2 = _iow(0xA0, s.KvmPitState2)
KVM_ENABLE_CAP = _iow(0xA3, s.KvmEnableCap)
KVM_SIGNAL_MSI = _iow(0xA5, s.KvmMsi)
# vCPU fd
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, s.KvmRegs)
KVM_SET_REGS = _iow(0x82, s.KvmRegs)
KVM_GET_SREGS = _ior(0x83, s.KvmSregs)
KVM_SET_SREGS = _iow(0x84, s.KvmSregs)
KVM_TRANSLATE = _iowr(0x85, s.KvmTranslation)
KVM_INTERRUPT = _iow(0x86, s.KvmInterrupt)
KVM_SET_CPUID2 = _iow(0x90, s.KvmCpuid2Header)
KVM_GET_MP_STATE = _ior(0x98, s.KvmMpState)
KVM_SET_MP_STATE = _iow(0x99, s.KvmMpState)
# arm64 (numbers from include/uapi/linux/kvm.h; the same encoding on every architecture)
KVM_GET_ONE_REG = _iow(0xAB, s.KvmOneReg)
KVM_SET_ONE_REG = _iow(0xAC, s.KvmOneReg)
KVM_ARM_VCPU_INIT = _iow(0xAE, s.KvmVcpuInit)
KVM_ARM_PREFERRED_TARGET = _ior(0xAF, s.KvmVcpuInit)   # VM fd
KVM_CREATE_DEVICE = _iowr(0xE0, s.KvmCreateDevice)    # VM fd
KVM_SET_DEVICE_ATTR = _iow(0xE1, s.KvmDeviceAttr)      # device fd
KVM_GET_DEVICE_ATTR = _iow(0xE2, s.KvmDeviceAttr)
KVM_HAS_DEVICE_ATTR = _iow(0xE3, s.KvmDeviceAttr)

# Exit reasons (kvm_run.exit_reason)
EXIT_UNKNOWN = 0
EXIT_EXCEPTION = 1
EXIT_IO = 2
EXIT_HYPERCALL = 3
EXIT_DEBUG = 4
EXIT_HLT = 5
EXIT_MMIO = 6
EXIT_IRQ_WINDOW_OPEN = 7
EXIT_SHUTDOWN = 8
EXIT_FAIL_ENTRY = 9
EXIT_INTR = 10
EXIT_INTERNAL_ERROR = 17
EXIT_SYSTEM_EVENT = 24
EXIT_IOAPIC_EOI = 26
EXIT_ARM_NISV = 28
EXIT_NAMES = {
    0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT", 6: "MMIO",
    7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR", 17: "INTERNAL_ERROR",
    24: "SYSTEM_EVENT", 26: "IOAPIC_EOI", 28: "ARM_NISV",
}
IO_IN, IO_OUT = 0, 1
SYSTEM_EVENT_SHUTDOWN, SYSTEM_EVENT_RESET, SYSTEM_EVENT_CRASH = 1, 2, 3
SYSTEM_EVENT_WAKEUP, SYSTEM_EVENT_SUSPEND = 4, 5
INTERNAL_ERROR_NAMES = {
    1: "instruction emulation failed",
    2: "exception while delivering an exception (simultaneous exceptions)",
    3: "failed to deliver an event (interrupt/exception) to the guest",
    4: "unexpected exit reason from hardware",
}
IRQ_ROUTING_MSI = 2
PIT_SPEAKER_DUMMY = 1            # KVM_PIT_SPEAKER_DUMMY: KVM also answers port 0x61
MP_STATE_RUNNABLE = 0
MP_STATE_UNINITIALIZED = 1
