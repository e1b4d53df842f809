"""The multiboot v1 command line (multiboot spec 0.6.96 section 3.3, `cmdline`): god passes
the kernel image's path, a space, then the user's arguments — the exact string QEMU builds
("%s %s" of -kernel and -append, hw/i386/multiboot.c) and GRUB's "multiboot PATH ARGS" gives."""

from __future__ import annotations

import struct

from god.boot import BootInputs
from god.boot import layout as L
from god.boot.multiboot import BOOTLOADER_MAGIC, HEADER_MAGIC, load_multiboot
from god.memory import GuestMemory

LOAD = 0x100000


def aout_kernel() -> bytes:
    """A multiboot image with the a.out kludge (flag 16): header at 0, loaded at 1 MiB."""
    flags = 1 << 16
    hdr = struct.pack("<3I5I", HEADER_MAGIC, flags, (-(HEADER_MAGIC + flags)) & 0xFFFFFFFF,
                      LOAD, LOAD, 0, 0, LOAD + 32)
    return hdr + b"\xf4" * 32


def boot(cmdline: str, path: str) -> str:
    mem = GuestMemory(L.ram_layout(8 << 20))
    try:
        entry = load_multiboot(mem, BootInputs(aout_kernel(), cmdline, kernel_path=path,
                                               mem_bytes=8 << 20))
        assert entry.regs["rax"] == BOOTLOADER_MAGIC
        info = entry.regs["rbx"]
        flags, = struct.unpack("<I", mem.read(info, 4))
        assert flags & (1 << 2), "multiboot info flags bit 2: cmdline is valid"
        ptr, = struct.unpack("<I", mem.read(info + 16, 4))
        return mem.read_cstring(ptr).decode()
    finally:
        mem.close()


def test_cmdline_is_path_space_arguments() -> None:
    assert boot("console=ttyS0 x=1", "/boot/kernel.elf") == "/boot/kernel.elf console=ttyS0 x=1"


def test_empty_arguments_keep_qemus_trailing_space() -> None:
    """QEMU formats "%s %s" even for an empty -append."""
    assert boot("", "kern") == "kern "


def test_relative_path_is_passed_as_given() -> None:
    assert boot("a", "build/k.elf").split(" ")[0] == "build/k.elf"
