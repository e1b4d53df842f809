"""The Linux x86 boot protocol (Documentation/arch/x86/boot.rst) for bzImage files.

god plays the boot loader: it copies the setup header into a zero page (struct boot_params),
fills in the e820 map, command line and initrd, loads the protected-mode kernel, and enters
it directly - at the 64-bit entry (load address + 0x200, RSI = zero page) when the header's
xloadflags say the kernel has one, else at the 32-bit entry (ESI = zero page). The 16-bit
real-mode setup code never runs. ELF vmlinux files boot through their PVH note instead.
"""

from __future__ import annotations

import struct

from god.boot import layout as L
from god.boot.common import BootInputs, place_top, write_cmdline
from god.boot.cpu import EntryState
from god.boot.errors import LoaderError
from god.memory import GuestMemory, GuestMemoryError

HDRS_MAGIC = b"HdrS"
LOADED_HIGH, CAN_USE_HEAP = 0x01, 0x80
XLF_KERNEL_64 = 0x01
E820_MAX = 128
ZP_E820_ENTRIES, ZP_E820_TABLE = 0x1E8, 0x2D0
ZP_EXT_RAMDISK_IMAGE, ZP_EXT_RAMDISK_SIZE, ZP_EXT_CMD_LINE_PTR = 0x0C0, 0x0C4, 0x0C8


class SetupHeader:
    """The setup header fields god reads or writes (offsets are from the file start)."""
    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    __slots__ = ("cmdline_size", "code32_start", "header_end", "init_size", "initrd_addr_max",
                 "kernel_alignment", "loadflags", "payload_length", "payload_offset",
                 "pref_address", "relocatable", "setup_sects", "version", "xloadflags")

    def __init__(self, setup_sects: int, version: int, loadflags: int, code32_start: int,
                 initrd_addr_max: int, kernel_alignment: int, relocatable: bool,
                 xloadflags: int, cmdline_size: int, payload_offset: int, payload_length: int,
                 pref_address: int, init_size: int, header_end: int) -> None:
        self.setup_sects = setup_sects
        self.version = version
        self.loadflags = loadflags
        self.code32_start = code32_start
        self.initrd_addr_max = initrd_addr_max
        self.kernel_alignment = kernel_alignment
        self.relocatable = relocatable
        self.xloadflags = xloadflags
        self.cmdline_size = cmdline_size
        self.payload_offset = payload_offset
        self.payload_length = payload_length
        self.pref_address = pref_address
        self.init_size = init_size
        self.header_end = header_end

    @property
    def setup_size(self) -> int:
        return (self.setup_sects + 1) * 512


def is_bzimage(data: bytes) -> bool:
    return len(data) >= 0x250 and data[0x202:0x206] == HDRS_MAGIC and data[0x1FE:0x200] == b"\x55\xaa"


def parse_header(data: bytes) -> SetupHeader:
    if not is_bzimage(data):
        raise LoaderError("not a Linux bzImage (no 'HdrS' setup header)")
    version = struct.unpack_from("<H", data, 0x206)[0]
    if version < 0x0206:
        raise LoaderError(f"boot protocol {version >> 8}.{version & 0xFF} is too old (need 2.06+)")
    u32 = lambda off: struct.unpack_from("<I", data, off)[0]
    hdr = SetupHeader(
        setup_sects=data[0x1F1] or 4,
        version=version,
        loadflags=data[0x211],
        code32_start=u32(0x214),
        initrd_addr_max=u32(0x22C),
        kernel_alignment=u32(0x230),
        relocatable=bool(data[0x234]),
        xloadflags=struct.unpack_from("<H", data, 0x236)[0] if version >= 0x020C else 0,
        cmdline_size=u32(0x238),
        payload_offset=u32(0x248) if version >= 0x0208 else 0,
        payload_length=u32(0x24C) if version >= 0x0208 else 0,
        pref_address=struct.unpack_from("<Q", data, 0x258)[0] if version >= 0x020A else 0,
        init_size=u32(0x260) if version >= 0x020A else 0,
        header_end=0x202 + data[0x201],
    )
    if not hdr.loadflags & LOADED_HIGH:
        raise LoaderError("zImage (loaded low) kernels are not supported; use a bzImage")
    if hdr.setup_size >= len(data):
        raise LoaderError("bzImage is shorter than its setup code")
    return hdr


def load_linux(mem: GuestMemory, inp: BootInputs) -> EntryState:
    data = inp.kernel
    hdr = parse_header(data)
    kernel = data[hdr.setup_size:]
    low_end = mem.regions[0].end
    load = L.KERNEL_ADDR
    need = max(hdr.init_size, len(kernel))
    if hdr.relocatable and hdr.pref_address and hdr.pref_address + need <= low_end:
        load = hdr.pref_address  # where the kernel runs without relocating itself
    if load + need > low_end:
        raise LoaderError(f"kernel needs {need >> 20} MiB at {load:#x}; give more --mem")
    try:
        mem.write(load, kernel)
    except GuestMemoryError as e:
        raise LoaderError(str(e)) from e

    zp = bytearray(L.BOOT_INFO_SIZE)
    zp[0x1F1:hdr.header_end] = data[0x1F1:hdr.header_end]
    struct.pack_into("<H", zp, 0x1FA, 0xFFFF)          # vid_mode: "normal"
    zp[0x210] = 0xFF                                    # type_of_loader: undefined loader
    zp[0x211] = hdr.loadflags | CAN_USE_HEAP
    struct.pack_into("<I", zp, 0x214, load)             # code32_start
    struct.pack_into("<H", zp, 0x224, 0xFE00)           # heap_end_ptr

    limit = hdr.cmdline_size + 1 if hdr.cmdline_size else 256
    cmdline = write_cmdline(mem, inp.cmdline, min(limit, L.CMDLINE_MAX))
    struct.pack_into("<I", zp, 0x228, cmdline)

    if inp.modules:
        initrd = b"".join(m.data for m in inp.modules)  # several initrds concatenate (cpio)
        ceiling = min(low_end, (hdr.initrd_addr_max or 0x37FFFFFF) + 1)
        addr = place_top(mem, initrd, L.align_up(load + need, L.PAGE), ceiling)
        struct.pack_into("<II", zp, 0x218, addr, len(initrd))
        struct.pack_into("<II", zp, ZP_EXT_RAMDISK_IMAGE, addr >> 32, len(initrd) >> 32)

    mmap = L.memory_map(inp.mem_bytes)[:E820_MAX]
    zp[ZP_E820_ENTRIES] = len(mmap)
    for i, (addr, size, typ) in enumerate(mmap):
        struct.pack_into("<QQI", zp, ZP_E820_TABLE + 20 * i, addr, size, typ)
    mem.write(L.BOOT_INFO_ADDR, bytes(zp))

    if hdr.xloadflags & XLF_KERNEL_64:
        return EntryState("long64", load + 0x200, {"rsi": L.BOOT_INFO_ADDR})
    return EntryState("prot32", load, {"rsi": L.BOOT_INFO_ADDR})
