"""i8042 keyboard controller, register level (IBM PC AT Technical Reference, "Keyboard
Controller": status port 0x64 -- bit 0 output buffer full, bit 1 input buffer full;
command 0xAA self-test answers 0x55, command 0x20 reads the command byte, 0x60 writes it).

The CPU-reset command (0xFE) is not sent: it would end the machine the suite is using.
"""

from __future__ import annotations

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.ioseq import PortSeq

from . import device_state

# Both checks leave the controller as they found it (the command byte is written back), so
# they share a guest.
pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("mmio", "portseq"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=device_state.i8042)]

DATA, STATUS = 0x60, 0x64
OBF, IBF = 0x01, 0x02


def controller(machine: Machine) -> None:
    (status,) = PortSeq().read(STATUS).run(machine.agent)
    if status == 0xFF:
        pytest.skip("no i8042 at port 0x64 (status reads 0xff: an empty ISA port)")


def command(seq: PortSeq, cmd: int) -> PortSeq:
    return seq.poll(STATUS, IBF, 0, 100).out(STATUS, cmd)


def test_self_test_answers_0x55(machine: Machine) -> None:
    """Command 0xAA (self-test): the controller puts 0x55 in its output buffer (OBF set)."""
    controller(machine)
    seq = command(PortSeq(), 0xAA).poll(STATUS, OBF, OBF, 500).read(DATA).read(STATUS)
    _, status, answer, after = seq.run(machine.agent)
    assert status & OBF
    assert answer == 0x55, f"self-test (0xaa): expected 0x55, read {answer:#04x}"
    assert not after & OBF, f"status after reading the answer: OBF must clear, read {after:#04x}"


def test_command_byte_round_trip(machine: Machine) -> None:
    """Commands 0x20/0x60 read and write the controller command byte; the value written
    (keyboard interrupt off, translation on: 0x44 | system flag 0x04) reads back."""
    controller(machine)
    seq = command(PortSeq(), 0x20).poll(STATUS, OBF, OBF, 500).read(DATA)
    seq = command(seq, 0x60).poll(STATUS, IBF, 0, 100).out(DATA, 0x44)
    seq = command(seq, 0x20).poll(STATUS, OBF, OBF, 500).read(DATA)
    values = seq.run(machine.agent)
    before, after = values[2], values[-1]
    restore = command(PortSeq(), 0x60).poll(STATUS, IBF, 0, 100).out(DATA, before)
    restore.run(machine.agent)
    assert after == 0x44, f"command byte: wrote 0x44, read {after:#04x}"
