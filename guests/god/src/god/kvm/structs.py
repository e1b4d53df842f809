"""ctypes layouts of the KVM ABI structures (x86_64, and the arm64 ones at the end), defined once.

Sizes are checked against <linux/kvm.h> by tests/test_kvm_abi.py (it compiles a C program
that prints sizeof/offsetof), so a layout mistake fails a test instead of corrupting memory.
"""

from __future__ import annotations

import ctypes

u8, u16, u32, u64, s64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64


class KvmRegs(ctypes.Structure):
    _fields_ = [(n, u64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class KvmSegment(ctypes.Structure):
    _fields_ = [
        ("base", u64), ("limit", u32), ("selector", u16), ("type", u8), ("present", u8),
        ("dpl", u8), ("db", u8), ("s", u8), ("l", u8), ("g", u8), ("avl", u8),
        ("unusable", u8), ("padding", u8),
    ]


class KvmDtable(ctypes.Structure):
    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


class KvmSregs(ctypes.Structure):
    _fields_ = [
        ("cs", KvmSegment), ("ds", KvmSegment), ("es", KvmSegment), ("fs", KvmSegment),
        ("gs", KvmSegment), ("ss", KvmSegment), ("tr", KvmSegment), ("ldt", KvmSegment),
        ("gdt", KvmDtable), ("idt", KvmDtable),
        ("cr0", u64), ("cr2", u64), ("cr3", u64), ("cr4", u64), ("cr8", u64),
        ("efer", u64), ("apic_base", u64), ("interrupt_bitmap", u64 * 4),
    ]


class KvmUserspaceMemoryRegion(ctypes.Structure):
    _fields_ = [("slot", u32), ("flags", u32), ("guest_phys_addr", u64),
                ("memory_size", u64), ("userspace_addr", u64)]


class KvmPitConfig(ctypes.Structure):
    _fields_ = [("flags", u32), ("pad", u32 * 15)]


class KvmPitChannelState(ctypes.Structure):
    _fields_ = [
        ("count", u32), ("latched_count", u16), ("count_latched", u8), ("status_latched", u8),
        ("status", u8), ("read_state", u8), ("write_state", u8), ("write_latch", u8),
        ("rw_mode", u8), ("mode", u8), ("bcd", u8), ("gate", u8), ("count_load_time", s64),
    ]


class KvmPitState2(ctypes.Structure):
    _fields_ = [("channels", KvmPitChannelState * 3), ("flags", u32), ("reserved", u32 * 9)]


class KvmIrqLevel(ctypes.Structure):
    _fields_ = [("irq", u32), ("level", u32)]


class KvmMsi(ctypes.Structure):
    _fields_ = [("address_lo", u32), ("address_hi", u32), ("data", u32), ("flags", u32),
                ("devid", u32), ("pad", u8 * 12)]


class KvmCpuidEntry2(ctypes.Structure):
    _fields_ = [("function", u32), ("index", u32), ("flags", u32), ("eax", u32),
                ("ebx", u32), ("ecx", u32), ("edx", u32), ("padding", u32 * 3)]


class KvmCpuid2Header(ctypes.Structure):
    """Header of the variable-length struct kvm_cpuid2; see cpuid2_type()."""
    _fields_ = [("nent", u32), ("padding", u32)]


def cpuid2_type(n: int) -> type[ctypes.Structure]:
    """struct kvm_cpuid2 with room for n entries (a flexible array member in C)."""

    class KvmCpuid2(ctypes.Structure):
        _fields_ = [("nent", u32), ("padding", u32), ("entries", KvmCpuidEntry2 * n)]

    return KvmCpuid2


class KvmIrqfd(ctypes.Structure):
    _fields_ = [("fd", u32), ("gsi", u32), ("flags", u32), ("resamplefd", u32), ("pad", u8 * 16)]


class KvmIoeventfd(ctypes.Structure):
    _fields_ = [("datamatch", u64), ("addr", u64), ("len", u32), ("fd", ctypes.c_int32),
                ("flags", u32), ("pad", u8 * 36)]


class KvmTranslation(ctypes.Structure):
    _fields_ = [("linear_address", u64), ("physical_address", u64), ("valid", u8),
                ("writeable", u8), ("usermode", u8), ("pad", u8 * 5)]


class KvmMpState(ctypes.Structure):
    _fields_ = [("mp_state", u32)]


class KvmEnableCap(ctypes.Structure):
    _fields_ = [("cap", u32), ("flags", u32), ("args", u64 * 4), ("pad", u8 * 64)]


class KvmInterrupt(ctypes.Structure):
    """struct kvm_interrupt: the vector KVM_INTERRUPT queues as an ExtINT (split irqchip)."""
    _fields_ = [("irq", u32)]


class KvmIrqRoutingMsi(ctypes.Structure):
    _fields_ = [("address_lo", u32), ("address_hi", u32), ("data", u32), ("devid", u32),
                ("pad", u32 * 4)]  # the union in kvm_irq_routing_entry is 32 bytes


class KvmIrqRoutingEntry(ctypes.Structure):
    _fields_ = [("gsi", u32), ("type", u32), ("flags", u32), ("pad", u32),
                ("msi", KvmIrqRoutingMsi)]


class KvmIrqRoutingHeader(ctypes.Structure):
    """Header of the variable-length struct kvm_irq_routing; see irq_routing_type()."""
    _fields_ = [("nr", u32), ("flags", u32)]


def irq_routing_type(n: int) -> type[ctypes.Structure]:
    class KvmIrqRouting(ctypes.Structure):
        _fields_ = [("nr", u32), ("flags", u32), ("entries", KvmIrqRoutingEntry * n)]

    return KvmIrqRouting


class KvmIrqchip(ctypes.Structure):
    """struct kvm_irqchip: chip_id + 512 bytes of PIC or IOAPIC state."""
    _fields_ = [("chip_id", u32), ("pad", u32), ("chip", u8 * 512)]


# struct kvm_run is read with struct.unpack_from on the mmap (faster per exit than ctypes
# attribute access); these are its offsets (x86_64), checked against the C header in tests.
RUN_REQUEST_INTERRUPT_WINDOW = 0
RUN_IMMEDIATE_EXIT = 1
RUN_READY_FOR_INTERRUPT_INJECTION = 12
RUN_IF_FLAG = 13
RUN_EXIT_REASON = 8
RUN_EXIT = 32                   # start of the exit union
RUN_IO_DIRECTION = 32           # u8 direction, u8 size, u16 port, u32 count, u64 data_offset
RUN_IO_DATA_OFFSET = 40
RUN_MMIO_PHYS_ADDR = 32         # u64 phys_addr, u8 data[8], u32 len, u8 is_write
RUN_MMIO_DATA = 40
RUN_MMIO_LEN = 48
RUN_EOI_VECTOR = 32            # KVM_EXIT_IOAPIC_EOI: u8 vector
RUN_INTERNAL_SUBERROR = 32      # u32 suberror, u32 ndata, u64 data[16]
RUN_INTERNAL_DATA = 40
RUN_SYSTEM_EVENT_TYPE = 32      # u32 type, u32 ndata, u64 data[16]
RUN_SYSTEM_EVENT_DATA = 40
RUN_FAIL_ENTRY_REASON = 32      # u64 hardware_entry_failure_reason, u32 cpu
RUN_SIZE_MIN = 2352


# --- arm64 (arch/arm64/include/uapi/asm/kvm.h, include/uapi/linux/kvm.h); the sizes are
# checked against the aarch64 cross headers by tests/test_kvm_abi_arm64.py.
class KvmVcpuInit(ctypes.Structure):
    """struct kvm_vcpu_init: KVM_ARM_PREFERRED_TARGET fills it, KVM_ARM_VCPU_INIT takes it."""
    _fields_ = [("target", u32), ("features", u32 * 7)]


class KvmOneReg(ctypes.Structure):
    """struct kvm_one_reg: a register id and the user address of its value."""
    _fields_ = [("id", u64), ("addr", u64)]


class KvmCreateDevice(ctypes.Structure):
    _fields_ = [("type", u32), ("fd", u32), ("flags", u32)]


class KvmDeviceAttr(ctypes.Structure):
    _fields_ = [("flags", u32), ("group", u32), ("attr", u64), ("addr", u64)]


RUN_ARM_NISV_ESR_ISS = 32       # KVM_EXIT_ARM_NISV: u64 esr_iss, u64 fault_ipa
RUN_ARM_NISV_FAULT_IPA = 40
