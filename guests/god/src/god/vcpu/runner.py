"""The per-vCPU run loop: KVM_RUN, then dispatch the exit to the buses.

One thread per vCPU. The hot path (port I/O and MMIO exits) reads kvm_run with precompiled
structs and keeps attribute lookups in locals: at ~9 us per exit every 0.1 us counts.
Terminal exits (shutdown, internal error, ...) are turned into a VmExit with a readable
message and handed to the machine, which stops the other vCPUs.
"""

from __future__ import annotations

import fcntl
import struct
import threading
from collections.abc import Callable

from god.devices.bus import Bus
from god.kvm import ioctls as k
from god.kvm import structs as s
from god.kvm.system import KvmError, VcpuFd
from god.memory import GuestMemory, GuestMemoryError
from god.vcpu.explain import explain

# Exit statuses god itself uses: even numbers, so they never collide with the guest's
# exit-port statuses ((value << 1) | 1 is always odd).
STATUS_OK = 0
STATUS_USAGE = 2
STATUS_HOST_ERROR = 4
STATUS_GUEST_RESET = 6
STATUS_TRIPLE_FAULT = 8
STATUS_GUEST_CRASH = 10

_U32 = struct.Struct("<I")
_HEAD = struct.Struct("<I20xQQIB")  # exit_reason at 8, then 21 bytes of the exit union at 32
_INTERNAL = struct.Struct("<II")
_SIZES = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"),
          8: struct.Struct("<Q")}  # port I/O is 1, 2 or 4 bytes; KeyError = KVM bug


class VmExit:
    """Why the VM stopped: the process exit status and, for failures, a message."""
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    __slots__ = ("kind", "message", "status")

    def __init__(self, status: int, message: str = "", kind: str = "") -> None:
        self.status = status
        self.message = message
        self.kind = kind

    def __repr__(self) -> str:  # tests print it when an exit status is not the expected one
        return f"VmExit(status={self.status!r}, message={self.message!r}, kind={self.kind!r})"


class VcpuRunner:
    def __init__(self, vcpu: VcpuFd, pio: Bus, mmio: Bus, mem: GuestMemory,
                 on_exit: Callable[[VmExit], None], flavour: str) -> None:
        self.vcpu = vcpu
        self.pio = pio
        self.mmio = mmio
        self.mem = mem
        self.on_exit = on_exit
        self.flavour = flavour
        self.stopping = False
        # Where the guest was when god stopped this vCPU ("" if it stopped by itself): with
        # `god run --stats` it tells a guest that hung from one that was merely slow.
        self.stopped_at = ""
        self.exits = 0
        self.thread: threading.Thread | None = None
        # Split irqchip: EOIs of level-triggered vectors go to god's IOAPIC; on the BSP the
        # 8259's INT is injected with KVM_INTERRUPT (irq_request mirrors that INT line).
        self.on_eoi: Callable[[int], None] | None = None
        self.pic_ack: Callable[[], int] | None = None
        self.irq_request = False
        self.kick: Callable[[], None] | None = None

    # --- control from other threads ------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._thread_main,
                                       name=f"god-vcpu{self.vcpu.index}", daemon=True)
        self.thread.start()

    def request_stop(self) -> None:
        """Make KVM_RUN return soon: immediate_exit covers a vCPU about to enter, the
        caller's signal (Machine.kick) covers one already inside (HLT in the kernel)."""
        self.stopping = True
        try:
            self.vcpu.run[s.RUN_IMMEDIATE_EXIT] = 1
        except ValueError:
            pass  # run page already unmapped

    def request_extint(self, level: bool) -> None:
        """The 8259's INT changed (any thread). The vCPU thread injects on its next entry;
        kick it out of KVM_RUN so that happens now (e.g. it sits in HLT)."""
        self.irq_request = level
        if level and self.thread is not None and self.thread is not threading.current_thread():
            # immediate_exit covers a thread about to enter KVM_RUN (the signal alone would
            # be lost there), the signal one already inside; EINTR is handled in the loop.
            try:
                self.vcpu.run[s.RUN_IMMEDIATE_EXIT] = 1
            except ValueError:
                return  # run page unmapped: stopping
            if self.kick is not None:
                self.kick()

    def _inject_extint(self, run: object) -> None:
        """Before KVM_RUN with the 8259's INT high: INTA + KVM_INTERRUPT if the vCPU can take
        an interrupt now (IF=1, LINT0 accepts ExtINT, nothing queued), else ask KVM for an
        interrupt-window exit (api.rst: request_interrupt_window, KVM_EXIT_IRQ_WINDOW_OPEN)."""
        ack = self.pic_ack
        if ack is None:
            return
        if run[s.RUN_READY_FOR_INTERRUPT_INJECTION]:  # type: ignore[index]
            vector = ack()
            try:
                self.vcpu.interrupt(vector)
            except KvmError:
                pass  # EEXIST: one is still queued; the window exit brings us back
        run[s.RUN_REQUEST_INTERRUPT_WINDOW] = 1 if self.irq_request else 0  # type: ignore[index]

    # --- the loop --------------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            result = self._loop()
        except GuestMemoryError as e:
            result = VmExit(STATUS_GUEST_CRASH, f"vCPU {self.vcpu.index}: guest memory error: {e}",
                            "guest-memory")
        except Exception as e:  # a device bug must still stop the VM with a message
            result = VmExit(STATUS_GUEST_CRASH,
                            f"vCPU {self.vcpu.index}: VMM error: {type(e).__name__}: {e}",
                            "vmm-error")
        if result is not None:
            self.on_exit(result)

    def _loop(self) -> VmExit | None:
        run = self.vcpu.run
        fd = self.vcpu.fd
        ioctl = fcntl.ioctl
        KVM_RUN = k.KVM_RUN
        head = _HEAD.unpack_from
        sizes = _SIZES
        pio, mmio = self.pio, self.mmio
        pio_cache, mmio_cache = pio.cache, mmio.cache
        pio_lookup, mmio_lookup = pio.lookup, mmio.lookup
        EXIT_IO, EXIT_MMIO = k.EXIT_IO, k.EXIT_MMIO
        MMIO_DATA, MMIO_END = s.RUN_MMIO_DATA, s.RUN_MMIO_DATA + 8
        exits = 0
        out1 = pio.out_cache  # io header -> (write, offset, size, struct); see Bus.register
        try:
            # No per-iteration stop check: request_stop() sets immediate_exit, so the next
            # KVM_RUN fails with EINTR and the stop is seen there.
            while True:
                if self.irq_request:
                    self._inject_extint(run)
                try:
                    # No third argument: fcntl.ioctl then skips two failing argument
                    # parses (each builds a TypeError) - 0.7 us per exit on this host.
                    ioctl(fd, KVM_RUN)
                except InterruptedError:
                    if self.stopping:
                        self.stopped_at = self._where_stopped(self.exits + exits)
                        return None
                    run[s.RUN_IMMEDIATE_EXIT] = 0
                    continue
                except BlockingIOError:
                    continue  # EAGAIN: an AP left wait-for-SIPI; KVM wants KVM_RUN again
                except OSError as e:
                    return VmExit(STATUS_GUEST_CRASH, f"vCPU {self.vcpu.index}: KVM_RUN failed: {e}",
                                  "kvm-run")
                exits += 1
                # One unpack covers both hot exits. For IO, a = direction | size << 8 |
                # port << 16 | count << 32 and b = data_offset; for MMIO, a = phys_addr and
                # b = the 8 data bytes as a little-endian integer.
                reason, a, b, length, is_write = head(run, s.RUN_EXIT_REASON)
                if reason == EXIT_IO:
                    # The io header (direction, size, port, count) repeats from exit to exit;
                    # a single-item OUT is keyed on it directly to skip the decoding.
                    fast = out1.get(a)
                    if fast is not None:
                        fast[0](fast[1], fast[2], fast[3].unpack_from(run, b)[0])
                        continue
                    port = (a >> 16) & 0xFFFF
                    size = (a >> 8) & 0xFF
                    base, dev = pio_cache.get(port) or pio_lookup(port)
                    count = a >> 32
                    st = sizes[size]
                    if a & 0xFF:  # KVM_EXIT_IO_OUT
                        if count == 1:
                            if len(out1) >= 1024:
                                out1.clear()
                            out1[a] = (dev.write, port - base, size, st)
                        for _ in range(count):  # rep outs: count items back to back
                            dev.write(port - base, size, st.unpack_from(run, b)[0])
                            b += size
                    else:
                        mask = (1 << (8 * size)) - 1
                        for _ in range(count):
                            st.pack_into(run, b, dev.read(port - base, size) & mask)
                            b += size
                elif reason == EXIT_MMIO:
                    base, dev = mmio_cache.get(a) or mmio_lookup(a)
                    mask = (1 << (8 * length)) - 1
                    if is_write:
                        dev.write(a - base, length, b & mask)
                    else:
                        # kvm_run.mmio.data holds stale bytes (PLATFORM.md): always fill it
                        run[MMIO_DATA:MMIO_END] = (dev.read(a - base, length) & mask).to_bytes(8, "little")
                else:
                    result = self._slow_exit(reason)
                    if result is not None:
                        return result
        finally:
            self.exits += exits

    def _slow_exit(self, reason: int) -> VmExit | None:
        run = self.vcpu.run
        idx = self.vcpu.index
        if reason in (k.EXIT_INTR, k.EXIT_IRQ_WINDOW_OPEN):
            if not self.irq_request:
                run[s.RUN_REQUEST_INTERRUPT_WINDOW] = 0
            return None  # the loop injects a pending 8259 interrupt before re-entering
        if reason == k.EXIT_IOAPIC_EOI:
            if self.on_eoi is not None:
                self.on_eoi(run[s.RUN_EOI_VECTOR])
            return None
        if reason == k.EXIT_HLT:
            # Only without an in-kernel LAPIC; god always has one, so a HLT exit means
            # the vCPU can never wake: report it rather than spin.
            return VmExit(STATUS_GUEST_CRASH, f"vCPU {idx}: halted with no way to wake", "hlt")
        if reason == k.EXIT_SHUTDOWN:
            return VmExit(STATUS_TRIPLE_FAULT,
                          f"vCPU {idx}: triple fault (KVM_EXIT_SHUTDOWN) {self._where()}",
                          "triple-fault")
        if reason == k.EXIT_SYSTEM_EVENT:
            return self._system_event(u32v(run, s.RUN_SYSTEM_EVENT_TYPE))
        if reason == k.EXIT_FAIL_ENTRY:
            code = struct.unpack_from("<Q", run, s.RUN_FAIL_ENTRY_REASON)[0]
            return VmExit(STATUS_GUEST_CRASH, f"vCPU {idx}: KVM_EXIT_FAIL_ENTRY: hardware "
                          f"refused to enter the guest (reason {code:#x}) {self._where()}",
                          "fail-entry")
        if reason == k.EXIT_INTERNAL_ERROR:
            return self._internal_error()
        name = k.EXIT_NAMES.get(reason, str(reason))
        return VmExit(STATUS_GUEST_CRASH, f"vCPU {idx}: unhandled exit {name} {self._where()}",
                      "unhandled-exit")

    def _system_event(self, typ: int) -> VmExit:
        return system_event_exit(typ, self.vcpu.index)

    def _code_at_rip(self) -> tuple[int, int, bool, bytes]:
        regs = self.vcpu.get_regs()
        sregs = self.vcpu.get_sregs()
        long_mode = bool(sregs.efer & 0x400) and bool(sregs.cs.l)
        linear = regs.rip if long_mode else (sregs.cs.base + regs.rip) & 0xFFFFFFFF
        gpa = self.vcpu.translate(linear) if sregs.cr0 & 0x80000000 else linear
        code = b""
        if gpa is not None:
            for n in (16, 8, 4, 1):
                try:
                    code = self.mem.read(gpa, n)
                    break
                except GuestMemoryError:
                    continue
        return regs.rip, sregs.cs.dpl, long_mode, code

    def _where_stopped(self, exits: int) -> str:
        try:
            regs = self.vcpu.get_regs()
        except (KvmError, OSError, ValueError):  # the vCPU's fd or run page already gone
            return ""
        interrupts = "on" if regs.rflags & 0x200 else "off"
        return (f"{self._where()} rflags={regs.rflags:#x} (interrupts {interrupts}), {exits} exits"
                f"{self._registers_and_stack(regs)}")

    def _registers_and_stack(self, regs: s.KvmRegs, words: int = 64) -> str:
        """The general registers and the top stack words of a stopped vCPU: for a guest
        spinning on a lock, a register names the lock and the stack names its callers."""
        try:
            sregs = self.vcpu.get_sregs()
        except (KvmError, OSError, ValueError):
            return ""
        names = [n for n, _ in s.KvmRegs._fields_ if n not in ("rip", "rflags")]
        text = "; " + " ".join(f"{n}={getattr(regs, n):#x}" for n in names)
        paging = bool(sregs.cr0 & 0x80000000)
        stack: list[str] = []
        for i in range(words):
            linear = regs.rsp + 8 * i
            gpa = self.vcpu.translate(linear) if paging else linear
            try:
                if gpa is None:
                    raise GuestMemoryError(f"{linear:#x} not mapped")
                stack.append(f"{int.from_bytes(self.mem.read(gpa, 8), 'little'):#x}")
            except GuestMemoryError:
                stack.append("?")
                break
        return f"{text}; stack: {' '.join(stack)}"

    def _where(self) -> str:
        try:
            rip, cpl, _, code = self._code_at_rip()
        except Exception:
            return ""
        return f"at rip={rip:#x} (ring {cpl}), code: {code.hex(' ') or 'unreadable'}"

    def _internal_error(self) -> VmExit:
        run = self.vcpu.run
        sub, ndata = _INTERNAL.unpack_from(run, s.RUN_INTERNAL_SUBERROR)
        data = struct.unpack_from(f"<{min(ndata, 16)}Q", run, s.RUN_INTERNAL_DATA)
        desc = k.INTERNAL_ERROR_NAMES.get(sub, f"suberror {sub}")
        try:
            rip, cpl, long_mode, code = self._code_at_rip()
            why = explain(code, cpl, long_mode, self.flavour)
            where = f"rip={rip:#x}, instruction bytes: {code.hex(' ') or 'unreadable'}"
        except Exception as e:
            why, where = f"(could not read registers: {e})", ""
        extra = f", data: {' '.join(f'{d:#x}' for d in data)}" if data else ""
        return VmExit(STATUS_GUEST_CRASH,
                      f"vCPU {self.vcpu.index}: KVM_EXIT_INTERNAL_ERROR ({desc}) at {where}: "
                      f"{why}{extra}", "internal-error")


def system_event_exit(typ: int, idx: int, how: str = "") -> VmExit:
    """KVM_EXIT_SYSTEM_EVENT -> why god stops, for every architecture: a shutdown (x86 ACPI
    S5 in KVM, arm64 PSCI SYSTEM_OFF) is a clean stop (0), a reset (PSCI SYSTEM_RESET, x86
    resets KVM reports) is STATUS_GUEST_RESET, a crash or anything else STATUS_GUEST_CRASH."""
    via = f" via {how}" if how else ""
    if typ == k.SYSTEM_EVENT_SHUTDOWN:
        return VmExit(STATUS_OK, "", "shutdown")
    if typ == k.SYSTEM_EVENT_RESET:
        return VmExit(STATUS_GUEST_RESET, f"vCPU {idx}: guest requested a reset{via} "
                      "(god does not reboot guests)", "reset")
    if typ == k.SYSTEM_EVENT_CRASH:
        return VmExit(STATUS_GUEST_CRASH, f"vCPU {idx}: guest reported a crash{via} "
                      "(KVM_SYSTEM_EVENT_CRASH)", "crash")
    return VmExit(STATUS_GUEST_CRASH, f"vCPU {idx}: unexpected system event {typ}{via}",
                  "crash")


def u32v(buf: object, off: int) -> int:
    return _U32.unpack_from(buf, off)[0]  # type: ignore[arg-type]
