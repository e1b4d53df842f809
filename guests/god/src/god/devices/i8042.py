"""The i8042 keyboard controller at 0x60 (data) / 0x64 (status on read, command on write),
modelled as far as Linux's i8042 driver probes it and as the PC's reset line.

No keyboard or mouse is attached: the controller self-test, interface tests, command byte
and the AUX loopback test answer as on real hardware, bytes sent to the keyboard are
answered with nothing (Linux then reports no keyboard), and pulsing output line 0 (command
0xFE, or writing the output port with bit 0 clear) asserts CPU reset, which god reports as a
guest reset (not a clean shutdown).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from god.devices.irq import IrqLine

DATA_PORT, STATUS_PORT = 0x60, 0x64
KBD_IRQ, AUX_IRQ = 1, 12

ST_OBF, ST_IBF, ST_SYS, ST_CMD, ST_UNLOCKED, ST_AUXDATA = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
CTR_KBDINT, CTR_AUXINT, CTR_SYS, CTR_KBDDIS, CTR_AUXDIS, CTR_XLATE = 1, 2, 4, 0x10, 0x20, 0x40


class I8042:
    def __init__(self, on_reset: Callable[[], None], kbd_irq: IrqLine | None = None,
                 aux_irq: IrqLine | None = None) -> None:
        self.on_reset = on_reset
        self.kbd_irq, self.aux_irq = kbd_irq, aux_irq
        self.ctr = CTR_SYS | CTR_XLATE | CTR_KBDINT
        self.outport = 0x01  # bit 0: reset line (1 = not in reset), bit 1: A20
        self.ram = bytearray(32)
        self.out: deque[tuple[int, bool]] = deque()  # (byte, from_aux)
        self.pending_cmd: int | None = None
        self.last_cmd = 0
        self.resets = 0
        self._lock = threading.Lock()

    def _push(self, byte: int, aux: bool = False) -> None:
        self.out.append((byte, aux))
        self._update_irq()

    def _update_irq(self) -> None:
        head = self.out[0] if self.out else None
        if self.kbd_irq is not None:
            self.kbd_irq.set_level(bool(head and not head[1] and self.ctr & CTR_KBDINT))
        if self.aux_irq is not None:
            self.aux_irq.set_level(bool(head and head[1] and self.ctr & CTR_AUXINT))

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset == 0:  # 0x60
                if not self.out:
                    return 0
                byte, _ = self.out.popleft()
                self._update_irq()
                return byte
            if offset == 4:  # 0x64
                st = ST_UNLOCKED | (ST_SYS if self.ctr & CTR_SYS else 0)
                st |= ST_CMD if self.last_cmd else 0
                if self.out:
                    st |= ST_OBF | (ST_AUXDATA if self.out[0][1] else 0)
                return st
            return 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        reset = False
        with self._lock:
            v = value & 0xFF
            if offset == 4:
                self.last_cmd = 1
                reset = self._command(v)
            elif offset == 0:
                self.last_cmd = 0
                reset = self._data(v)
        if reset:
            self.resets += 1
            self.on_reset()  # outside the lock: it stops the VM

    def _command(self, c: int) -> bool:
        self.pending_cmd = None
        if c == 0x20 or 0x21 <= c <= 0x3F:  # read controller RAM (0x20 = command byte)
            self._push(self.ctr if c == 0x20 else self.ram[c & 0x1F])
        elif 0x60 <= c <= 0x7F or c in (0xD1, 0xD2, 0xD3, 0xD4):
            self.pending_cmd = c  # the next byte on 0x60 is this command's argument
        elif c == 0xA7:
            self.ctr |= CTR_AUXDIS
        elif c == 0xA8:
            self.ctr &= ~CTR_AUXDIS
        elif c == 0xA9:
            self._push(0x00)  # AUX interface test: OK
        elif c == 0xAA:
            self._push(0x55)  # controller self-test passed
        elif c == 0xAB:
            self._push(0x00)  # keyboard interface test: OK
        elif c == 0xAD:
            self.ctr |= CTR_KBDDIS
        elif c == 0xAE:
            self.ctr &= ~CTR_KBDDIS
        elif c == 0xC0:
            self._push(0x00)  # input port
        elif c == 0xD0:
            self._push(self.outport)
        elif 0xF0 <= c <= 0xFF:
            return not c & 0x01  # pulse output lines: bit 0 low pulses CPU reset (0xFE)
        return False

    def _data(self, v: int) -> bool:
        cmd, self.pending_cmd = self.pending_cmd, None
        if cmd is None:
            return False  # to the keyboard, and none is attached: no answer
        if cmd == 0x60:
            self.ctr = v
            self._update_irq()
        elif 0x61 <= cmd <= 0x7F:
            self.ram[cmd & 0x1F] = v
        elif cmd == 0xD1:
            self.outport = v
            return not v & 0x01  # reset line driven low
        elif cmd == 0xD2:
            self._push(v)  # keyboard output buffer loopback
        elif cmd == 0xD3:
            self._push(v, aux=True)  # AUX loopback (Linux's i8042_check_aux uses it)
        # 0xD4: a byte for the mouse; none attached, so no answer
        return False
