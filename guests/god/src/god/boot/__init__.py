"""Kernel loaders. load_kernel() detects the format the way QEMU's -kernel does: a bzImage
("HdrS" setup header) first, then a multiboot v1 header, then an ELF with a PVH note."""

from __future__ import annotations

from god.boot import elf as E
from god.boot.common import BootInputs, Module
from god.boot.cpu import EntryState
from god.boot.errors import LoaderError
from god.boot.flat import load_flat
from god.boot.linux import is_bzimage, load_linux
from god.boot.multiboot import find_header, load_multiboot
from god.boot.pvh import load_pvh, pvh_entry
from god.memory import GuestMemory

__all__ = ["BootInputs", "EntryState", "LoaderError", "Module", "detect_format", "load_kernel"]


def detect_format(data: bytes) -> str:
    if is_bzimage(data):
        return "bzimage"
    if find_header(data) is not None:
        return "multiboot"
    if E.is_elf(data):
        if pvh_entry(E.parse(data)) is not None:
            return "pvh"
        raise LoaderError("ELF kernel without a PVH note (XEN_ELFNOTE_PHYS32_ENTRY) or "
                          "multiboot header; for a raw binary use --flat-addr")
    raise LoaderError("unknown kernel format (not a bzImage, multiboot image or PVH ELF); "
                      "for a raw binary use --flat-addr/--flat-mode")


def load_kernel(mem: GuestMemory, inp: BootInputs, flat_addr: int | None = None,
                flat_mode: int = 64) -> tuple[str, EntryState]:
    if flat_addr is not None:
        return "flat", load_flat(mem, inp, flat_addr, flat_mode)
    fmt = detect_format(inp.kernel)
    loader = {"bzimage": load_linux, "multiboot": load_multiboot, "pvh": load_pvh}[fmt]
    return fmt, loader(mem, inp)
