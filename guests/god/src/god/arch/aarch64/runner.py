"""The arm64 vCPU loop: god's shared VcpuRunner (MMIO exits to the bus, system events,
failures as VmExit) with arm64's own descriptions and exits.

PSCI is served by KVM (features PSCI_0_2): CPU_ON/OFF/AFFINITY_INFO/VERSION/FEATURES never
reach god, an unknown PSCI or SMCCC function returns NOT_SUPPORTED to the guest in the
kernel; SYSTEM_OFF, SYSTEM_RESET and SYSTEM_RESET2 come out as KVM_EXIT_SYSTEM_EVENT.
"""

from __future__ import annotations

import struct

from god.arch.aarch64.vcpu import describe
from god.devices.exitport import guest_status
from god.kvm import arm64 as A
from god.kvm import ioctls as k
from god.kvm import structs as s
from god.kvm.system import KvmError
from god.vcpu.runner import STATUS_GUEST_CRASH, VcpuRunner, VmExit, system_event_exit

# KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2: data[0] of a reset from PSCI SYSTEM_RESET2;
# x1 holds the reset type, x2 the cookie (PSCI 1.1, DEN0022D 5.20).
RESET_FLAG_PSCI_RESET2 = 1 << 0
# SYSTEM_RESET2 reset types with bit 31 set are vendor-specific (DEN0022D table 5.20.1):
# god's is "exit with a status", the cookie the value, as the x86 exit port's.
RESET2_VENDOR = 1 << 31
RESET2_GOD_EXIT = RESET2_VENDOR | 0x0060D  # "god"


def reset2_exit(reset_type: int, cookie: int, idx: int) -> VmExit | None:
    """The VmExit of a SYSTEM_RESET2 with god's vendor reset type, else None."""
    if reset_type & 0xFFFFFFFF == RESET2_GOD_EXIT:
        return VmExit(guest_status(cookie & 0xFFFFFFFF), "", "exit-psci")
    return None


class Arm64VcpuRunner(VcpuRunner):
    def _where(self) -> str:
        return describe(self.vcpu)

    def _system_event(self, typ: int) -> VmExit:
        run = self.vcpu.run
        ndata = struct.unpack_from("<I", run, s.RUN_SYSTEM_EVENT_TYPE + 4)[0]
        flags = struct.unpack_from("<Q", run, s.RUN_SYSTEM_EVENT_DATA)[0] if ndata else 0
        how = {k.SYSTEM_EVENT_SHUTDOWN: "PSCI SYSTEM_OFF",
               k.SYSTEM_EVENT_RESET: "PSCI SYSTEM_RESET"}.get(typ, "")
        if typ == k.SYSTEM_EVENT_RESET and flags & RESET_FLAG_PSCI_RESET2:
            try:
                rtype = self.vcpu.get_one_reg(A.x_reg(1))
                cookie = self.vcpu.get_one_reg(A.x_reg(2))
            except KvmError:
                rtype = cookie = 0
            done = reset2_exit(rtype, cookie, self.vcpu.index)
            if done is not None:
                return done
            how = f"PSCI SYSTEM_RESET2 (type {rtype:#x}, cookie {cookie:#x})"
        return system_event_exit(typ, self.vcpu.index, how)

    def _slow_exit(self, reason: int) -> VmExit | None:
        idx = self.vcpu.index
        if reason == k.EXIT_ARM_NISV:
            run = self.vcpu.run
            iss, ipa = struct.unpack_from("<QQ", run, s.RUN_ARM_NISV_ESR_ISS)
            return VmExit(STATUS_GUEST_CRASH,
                          f"vCPU {idx}: data abort KVM cannot decode (KVM_EXIT_ARM_NISV) at "
                          f"IPA {ipa:#x}, ESR ISS {iss:#x}: a load/store KVM cannot emulate "
                          f"(e.g. pair or writeback) to MMIO {self._where()}", "arm-nisv")
        if reason == k.EXIT_INTERNAL_ERROR:
            sub = struct.unpack_from("<I", self.vcpu.run, s.RUN_INTERNAL_SUBERROR)[0]
            desc = k.INTERNAL_ERROR_NAMES.get(sub, f"suberror {sub}")
            return VmExit(STATUS_GUEST_CRASH, f"vCPU {idx}: KVM_EXIT_INTERNAL_ERROR ({desc}) "
                          f"{self._where()}", "internal-error")
        if reason in (k.EXIT_IO, k.EXIT_HLT, k.EXIT_SHUTDOWN):
            name = k.EXIT_NAMES.get(reason, str(reason))
            return VmExit(STATUS_GUEST_CRASH, f"vCPU {idx}: unexpected exit {name} on arm64 "
                          f"{self._where()}", "unhandled-exit")
        return super()._slow_exit(reason)
