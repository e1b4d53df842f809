"""File-descriptor wrappers for /dev/kvm, a VM and a vCPU.

Every ioctl god issues goes through these classes; errors become KvmError with the ioctl's
name, so a failing call reads "KVM_CREATE_PIT2 failed: [Errno 17] File exists" rather than
a bare OSError.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os

from god.flavour import kvm_flavour
from god.kvm import arm64 as A
from god.kvm import ioctls as k
from god.kvm import structs as s
from god.kvm.caps import KVM_CAP_SPLIT_IRQCHIP, Cap, caps_for

KVM_API_VERSION = 12  # the only stable KVM API version since Linux 2.6.22


class KvmError(RuntimeError):
    """A KVM ioctl failed or /dev/kvm lacks something god needs."""


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]


def _ioctl(fd: int, name: str, req: int,
           arg: int | ctypes.Structure | ctypes.Array | ctypes.c_uint64 = 0) -> int:
    try:
        if isinstance(arg, int):
            if arg > 0x7FFFFFFF:
                # fcntl.ioctl passes a C int; addresses like KVM_SET_TSS_ADDR's need a long.
                ret = _libc.ioctl(fd, req, arg)
                if ret < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
                return ret
            return fcntl.ioctl(fd, req, arg)
        return fcntl.ioctl(fd, req, arg, True)
    except OSError as e:
        raise KvmError(f"{name} failed: {e}") from e


class Kvm:
    """/dev/kvm: the system-level fd."""

    def __init__(self, path: str = "/dev/kvm") -> None:
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            hint = ""
            if e.errno in (errno.EACCES, errno.EPERM):
                hint = " (add yourself to the 'kvm' group or run as root)"
            elif e.errno == errno.ENOENT:
                hint = " (no KVM on this host: load kvm_intel/kvm_amd/kvm_pvm)"
            raise KvmError(f"cannot open {path}: {e.strerror}{hint}") from e
        self.api_version = _ioctl(self.fd, "KVM_GET_API_VERSION", k.KVM_GET_API_VERSION)
        if self.api_version != KVM_API_VERSION:
            raise KvmError(f"KVM API version {self.api_version}, god needs {KVM_API_VERSION}")
        self.vcpu_mmap_size = _ioctl(self.fd, "KVM_GET_VCPU_MMAP_SIZE", k.KVM_GET_VCPU_MMAP_SIZE)
        from god.arch import host_arch  # god.arch imports nothing of KVM at module level

        self.arch = host_arch()
        # flavour.py names the x86 modules (kvm_intel/kvm_amd/kvm_pvm); arm64's KVM is one
        # (usually built-in), so it is "arm64" there
        self.flavour = kvm_flavour() if self.arch == "x86_64" else "arm64"

    def check_extension(self, cap: int) -> int:
        return _ioctl(self.fd, "KVM_CHECK_EXTENSION", k.KVM_CHECK_EXTENSION, cap)

    def capabilities(self) -> list[tuple[Cap, int]]:
        return [(c, self.check_extension(c.number)) for c in caps_for(self.arch)]

    def require(self) -> None:
        """Fail early, naming each missing capability, instead of failing mid-setup."""
        missing = [f"{c.name} ({c.why})" for c, v in self.capabilities() if c.required and not v]
        if missing:
            raise KvmError("KVM lacks capabilities god needs: " + "; ".join(missing))

    def max_vcpus(self) -> int:
        """How many vCPUs god lets a VM have.

        KVM_CAP_MAX_VCPUS is the hard limit and KVM_CAP_NR_VCPUS only a recommendation (the
        host's CPU count; vCPUs beyond it are time-shared). PVM too runs more than its NR (2):
        QEMU boots -smp 4 there (PLATFORM.md, "KVM capabilities measured").
        """
        recommended = self.check_extension(9)
        hard = self.check_extension(66)
        return hard or recommended or 4

    def supported_cpuid(self) -> ctypes.Structure:
        n = 128
        while True:
            buf = s.cpuid2_type(n)()
            buf.nent = n
            try:
                fcntl.ioctl(self.fd, k.KVM_GET_SUPPORTED_CPUID, buf, True)
                return buf
            except OSError as e:
                if e.errno != errno.E2BIG or n > 4096:
                    raise KvmError(f"KVM_GET_SUPPORTED_CPUID failed: {e}") from e
                n *= 2

    def create_vm(self) -> VmFd:
        fd = _ioctl(self.fd, "KVM_CREATE_VM", k.KVM_CREATE_VM, 0)
        return VmFd(self, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class VmFd:
    """A VM fd: memory slots, the in-kernel irqchip and PIT, interrupt injection."""

    def __init__(self, kvm: Kvm, fd: int) -> None:
        self.kvm = kvm
        self.fd = fd

    def set_user_memory_region(self, slot: int, gpa: int, size: int, host_addr: int,
                               flags: int = 0) -> None:
        region = s.KvmUserspaceMemoryRegion(slot, flags, gpa, size, host_addr)
        _ioctl(self.fd, "KVM_SET_USER_MEMORY_REGION", k.KVM_SET_USER_MEMORY_REGION, region)

    def set_tss_addr(self, addr: int) -> None:
        _ioctl(self.fd, "KVM_SET_TSS_ADDR", k.KVM_SET_TSS_ADDR, addr)

    def set_identity_map_addr(self, addr: int) -> None:
        _ioctl(self.fd, "KVM_SET_IDENTITY_MAP_ADDR", k.KVM_SET_IDENTITY_MAP_ADDR,
               ctypes.c_uint64(addr))

    def create_irqchip(self) -> None:
        _ioctl(self.fd, "KVM_CREATE_IRQCHIP", k.KVM_CREATE_IRQCHIP, 0)

    def enable_split_irqchip(self, ioapic_pins: int) -> None:
        """LAPICs in KVM, PIC/IOAPIC/PIT in userspace; GSIs 0..ioapic_pins-1 are reserved
        for the userspace IOAPIC's MSI routes (their level-triggered vectors get EOI exits).
        Must come before any vCPU exists."""
        cap = s.KvmEnableCap(cap=KVM_CAP_SPLIT_IRQCHIP)
        cap.args[0] = ioapic_pins
        _ioctl(self.fd, "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)", k.KVM_ENABLE_CAP, cap)

    def set_msi_routes(self, routes: list[tuple[int, int, int]]) -> None:
        """KVM_SET_GSI_ROUTING with one MSI route per (gsi, address, data); replaces all."""
        table = s.irq_routing_type(len(routes))()
        table.nr = len(routes)
        for e, (gsi, address, data) in zip(table.entries, routes):
            e.gsi, e.type = gsi, k.IRQ_ROUTING_MSI
            e.msi.address_lo, e.msi.address_hi, e.msi.data = address & 0xFFFFFFFF, address >> 32, data
        _ioctl(self.fd, "KVM_SET_GSI_ROUTING", k.KVM_SET_GSI_ROUTING, table)

    def create_pit2(self, flags: int = k.PIT_SPEAKER_DUMMY) -> None:
        _ioctl(self.fd, "KVM_CREATE_PIT2", k.KVM_CREATE_PIT2, s.KvmPitConfig(flags=flags))

    def get_pit2(self) -> s.KvmPitState2:
        st = s.KvmPitState2()
        _ioctl(self.fd, "KVM_GET_PIT2", k.KVM_GET_PIT2, st)
        return st

    def set_pit2(self, st: s.KvmPitState2) -> None:
        _ioctl(self.fd, "KVM_SET_PIT2", k.KVM_SET_PIT2, st)

    def get_irqchip(self, chip_id: int) -> bytes:
        """Raw state of chip 0 (master PIC), 1 (slave PIC) or 2 (IOAPIC)."""
        st = s.KvmIrqchip(chip_id=chip_id)
        _ioctl(self.fd, "KVM_GET_IRQCHIP", k.KVM_GET_IRQCHIP, st)
        return bytes(st.chip)

    def irq_line(self, gsi: int, level: int) -> None:
        # Called from device code on every line change; keep it lean.
        fcntl.ioctl(self.fd, k.KVM_IRQ_LINE, s.KvmIrqLevel(gsi, level), True)

    def signal_msi(self, address: int, data: int) -> int:
        """Inject an MSI; returns >0 if delivered, 0 if the guest blocked it."""
        msi = s.KvmMsi(address_lo=address & 0xFFFFFFFF, address_hi=address >> 32, data=data)
        return _ioctl(self.fd, "KVM_SIGNAL_MSI", k.KVM_SIGNAL_MSI, msi)

    def irqfd(self, eventfd: int, gsi: int, deassign: bool = False) -> None:
        req = s.KvmIrqfd(fd=eventfd, gsi=gsi, flags=1 if deassign else 0)
        _ioctl(self.fd, "KVM_IRQFD", k.KVM_IRQFD, req)

    def ioeventfd(self, eventfd: int, addr: int, length: int, pio: bool = False,
                  datamatch: int | None = None, deassign: bool = False) -> None:
        flags = (1 if datamatch is not None else 0) | (2 if pio else 0) | (4 if deassign else 0)
        req = s.KvmIoeventfd(datamatch=datamatch or 0, addr=addr, len=length, fd=eventfd,
                             flags=flags)
        _ioctl(self.fd, "KVM_IOEVENTFD", k.KVM_IOEVENTFD, req)

    # --- arm64 ---------------------------------------------------------------------------
    def arm_preferred_target(self) -> s.KvmVcpuInit:
        init = s.KvmVcpuInit()
        _ioctl(self.fd, "KVM_ARM_PREFERRED_TARGET", k.KVM_ARM_PREFERRED_TARGET, init)
        return init

    def create_device(self, dev_type: int, test: bool = False) -> DeviceFd | None:
        """KVM_CREATE_DEVICE; with test=True only asks whether the type exists (None)."""
        req = s.KvmCreateDevice(type=dev_type, flags=A.KVM_CREATE_DEVICE_TEST if test else 0)
        _ioctl(self.fd, f"KVM_CREATE_DEVICE(type {dev_type})", k.KVM_CREATE_DEVICE, req)
        return None if test else DeviceFd(req.fd, dev_type)

    def create_vcpu(self, index: int) -> VcpuFd:
        fd = _ioctl(self.fd, "KVM_CREATE_VCPU", k.KVM_CREATE_VCPU, index)
        return VcpuFd(self, index, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class DeviceFd:
    """A KVM device fd (the vGICv3): attributes set by group and number."""

    def __init__(self, fd: int, dev_type: int) -> None:
        self.fd, self.type = fd, dev_type

    def set_attr(self, group: int, attr: int, value: int | None = None, what: str = "") -> None:
        """KVM_SET_DEVICE_ATTR; value (if any) is passed through a u64 (addresses) or u32
        (NR_IRQS) the kernel reads from addr."""
        buf: ctypes.c_uint64 | ctypes.c_uint32 | None = None
        if value is not None:
            buf = ctypes.c_uint32(value) if group == A.VGIC_GRP_NR_IRQS else ctypes.c_uint64(value)
        req = s.KvmDeviceAttr(group=group, attr=attr,
                              addr=ctypes.addressof(buf) if buf is not None else 0)
        _ioctl(self.fd, f"KVM_SET_DEVICE_ATTR({what or f'group {group} attr {attr}'})",
               k.KVM_SET_DEVICE_ATTR, req)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class VcpuFd:
    """A vCPU fd and its shared kvm_run page."""

    def __init__(self, vm: VmFd, index: int, fd: int) -> None:
        self.vm = vm
        self.index = index
        self.fd = fd
        size = vm.kvm.vcpu_mmap_size
        if size < s.RUN_SIZE_MIN:
            raise KvmError(f"kvm_run mmap size {size} < {s.RUN_SIZE_MIN}")
        # MAP_SHARED: KVM writes exit information here; we must see the kernel's copy.
        self.run = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def get_regs(self) -> s.KvmRegs:
        r = s.KvmRegs()
        _ioctl(self.fd, "KVM_GET_REGS", k.KVM_GET_REGS, r)
        return r

    def set_regs(self, r: s.KvmRegs) -> None:
        _ioctl(self.fd, "KVM_SET_REGS", k.KVM_SET_REGS, r)

    def get_sregs(self) -> s.KvmSregs:
        r = s.KvmSregs()
        _ioctl(self.fd, "KVM_GET_SREGS", k.KVM_GET_SREGS, r)
        return r

    def set_sregs(self, r: s.KvmSregs) -> None:
        _ioctl(self.fd, "KVM_SET_SREGS", k.KVM_SET_SREGS, r)

    def set_cpuid2(self, cpuid: ctypes.Structure) -> None:
        _ioctl(self.fd, "KVM_SET_CPUID2", k.KVM_SET_CPUID2, cpuid)

    def interrupt(self, vector: int) -> None:
        """KVM_INTERRUPT: queue an external (8259) interrupt; split irqchip only. Must be
        called on this vCPU's own thread (KVM_RUN holds the vCPU)."""
        _ioctl(self.fd, "KVM_INTERRUPT", k.KVM_INTERRUPT, s.KvmInterrupt(vector))

    def get_mp_state(self) -> int:
        st = s.KvmMpState()
        _ioctl(self.fd, "KVM_GET_MP_STATE", k.KVM_GET_MP_STATE, st)
        return st.mp_state

    def set_mp_state(self, state: int) -> None:
        _ioctl(self.fd, "KVM_SET_MP_STATE", k.KVM_SET_MP_STATE, s.KvmMpState(state))

    # --- arm64 ---------------------------------------------------------------------------
    def arm_vcpu_init(self, init: s.KvmVcpuInit) -> None:
        _ioctl(self.fd, "KVM_ARM_VCPU_INIT", k.KVM_ARM_VCPU_INIT, init)

    def get_one_reg(self, reg_id: int) -> int:
        val = ctypes.c_uint64()
        req = s.KvmOneReg(id=reg_id, addr=ctypes.addressof(val))
        _ioctl(self.fd, f"KVM_GET_ONE_REG({reg_id:#x})", k.KVM_GET_ONE_REG, req)
        return val.value

    def set_one_reg(self, reg_id: int, value: int) -> None:
        val = ctypes.c_uint64(value)
        req = s.KvmOneReg(id=reg_id, addr=ctypes.addressof(val))
        _ioctl(self.fd, f"KVM_SET_ONE_REG({reg_id:#x})", k.KVM_SET_ONE_REG, req)

    def translate(self, linear: int) -> int | None:
        """Guest-virtual to guest-physical through the vCPU's current page tables."""
        t = s.KvmTranslation(linear_address=linear)
        try:
            fcntl.ioctl(self.fd, k.KVM_TRANSLATE, t, True)
        except OSError:
            return None
        return t.physical_address if t.valid else None

    def close(self) -> None:
        if self.fd >= 0:
            self.run.close()
            os.close(self.fd)
            self.fd = -1
