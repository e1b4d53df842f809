"""A small AML (ACPI Machine Language) encoder: just what god's DSDT needs.

ACPI 6.5 chapter 20 ("ACPI Machine Language Specification"): names (20.2.2), package length
(20.2.4), data objects (20.2.3), Scope/Device/Name (20.2.5); resource descriptors from
chapter 6.4 (Memory32Fixed 6.4.3.4, Extended Interrupt 6.4.3.6, End Tag 6.4.2.9).
Every function returns the encoded bytes of one term.
"""

from __future__ import annotations

import struct

ZERO_OP, ONE_OP = 0x00, 0x01
BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX, STRING_PREFIX, QWORD_PREFIX = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E
NAME_OP, SCOPE_OP, BUFFER_OP, PACKAGE_OP = 0x08, 0x10, 0x11, 0x12
EXT_OP_PREFIX, DEVICE_OP = 0x5B, 0x82
ROOT_CHAR, DUAL_NAME_PREFIX, MULTI_NAME_PREFIX = 0x5C, 0x2E, 0x2F

# Resource descriptor tags (ACPI 6.5 section 6.4)
IO_PORT_TAG = 0x47  # small item 0x08, length 7
MEMORY32_FIXED_TAG = 0x86
EXTENDED_IRQ_TAG = 0x89
END_TAG = 0x79
# Extended Interrupt flags (6.4.3.6, byte 3)
IRQ_CONSUMER, IRQ_EDGE, IRQ_ACTIVE_LOW, IRQ_SHARED = 1 << 0, 1 << 1, 1 << 2, 1 << 3


def pkg_length(body_len: int) -> bytes:
    """PkgLength for a body of body_len bytes; the encoded length counts itself (20.2.4)."""
    if body_len + 1 < 0x40:
        return bytes([body_len + 1])
    for extra in (1, 2, 3):
        total = body_len + 1 + extra
        if total < 1 << (4 + 8 * extra):
            out = [(extra << 6) | (total & 0x0F)]
            total >>= 4
            for _ in range(extra):
                out.append(total & 0xFF)
                total >>= 8
            return bytes(out)
    raise ValueError(f"AML package of {body_len} bytes is too long")


def name_seg(seg: str) -> bytes:
    """A 4-character NameSeg: a lead letter or '_', then letters, digits or '_', padded
    with '_' (20.2.2)."""
    if not 1 <= len(seg) <= 4 or not (seg[0].isupper() or seg[0] == "_") \
            or not all(c.isupper() or c.isdigit() or c == "_" for c in seg):
        raise ValueError(f"bad AML NameSeg {seg!r}")
    return seg.ljust(4, "_").encode()


def name_string(path: str) -> bytes:
    """'\\_SB.VR00' -> root prefix + DualNamePath; 'VR00' -> one NameSeg (20.2.2)."""
    prefix = b""
    if path.startswith("\\"):
        prefix, path = bytes([ROOT_CHAR]), path[1:]
    segs = [name_seg(s) for s in path.split(".")] if path else []
    if not segs:
        return prefix + b"\0"  # NullName
    if len(segs) == 1:
        return prefix + segs[0]
    if len(segs) == 2:
        return prefix + bytes([DUAL_NAME_PREFIX]) + b"".join(segs)
    return prefix + bytes([MULTI_NAME_PREFIX, len(segs)]) + b"".join(segs)


def integer(v: int) -> bytes:
    """The shortest ComputationalData for v (20.2.3)."""
    if v == 0:
        return bytes([ZERO_OP])
    if v == 1:
        return bytes([ONE_OP])
    for prefix, fmt, limit in ((BYTE_PREFIX, "<B", 1 << 8), (WORD_PREFIX, "<H", 1 << 16),
                               (DWORD_PREFIX, "<I", 1 << 32), (QWORD_PREFIX, "<Q", 1 << 64)):
        if 0 <= v < limit:
            return bytes([prefix]) + struct.pack(fmt, v)
    raise ValueError(f"AML integer {v} out of range")


def string(s: str) -> bytes:
    return bytes([STRING_PREFIX]) + s.encode("ascii") + b"\0"


def name(path: str, value: bytes) -> bytes:
    """Name(path, value): DefName := NameOp NameString DataRefObject."""
    return bytes([NAME_OP]) + name_string(path) + value


def scope(path: str, *terms: bytes) -> bytes:
    body = name_string(path) + b"".join(terms)
    return bytes([SCOPE_OP]) + pkg_length(len(body)) + body


def device(path: str, *terms: bytes) -> bytes:
    body = name_string(path) + b"".join(terms)
    return bytes([EXT_OP_PREFIX, DEVICE_OP]) + pkg_length(len(body)) + body


def buffer(data: bytes) -> bytes:
    body = integer(len(data)) + data
    return bytes([BUFFER_OP]) + pkg_length(len(body)) + body


def package(*elements: bytes) -> bytes:
    body = bytes([len(elements)]) + b"".join(elements)
    return bytes([PACKAGE_OP]) + pkg_length(len(body)) + body


# --- resource descriptors (ACPI 6.5 section 6.4) -----------------------------------------------

def memory32_fixed(base: int, size: int, writable: bool = True) -> bytes:
    """Memory32Fixed (6.4.3.4): tag, length 9, info (bit 0 = read-write), base, length."""
    return struct.pack("<BHBII", MEMORY32_FIXED_TAG, 9, 1 if writable else 0, base, size)


def io_port(base: int, length: int, alignment: int = 1) -> bytes:
    """I/O Port (6.4.2.5), 16-bit decode: min = max = base, alignment, length."""
    return struct.pack("<BBHHBB", IO_PORT_TAG, 1, base, base, alignment, length)


def extended_interrupt(gsi: int, *, edge: bool, active_low: bool, shared: bool = False) -> bytes:
    """Extended Interrupt (6.4.3.6) of one interrupt, as ResourceConsumer."""
    flags = IRQ_CONSUMER | (IRQ_EDGE if edge else 0) | (IRQ_ACTIVE_LOW if active_low else 0) \
        | (IRQ_SHARED if shared else 0)
    return struct.pack("<BHBBI", EXTENDED_IRQ_TAG, 6, flags, 1, gsi)


def resource_template(*descriptors: bytes) -> bytes:
    """ResourceTemplate(): a Buffer of descriptors closed by an End Tag whose checksum byte
    is 0 ("treated as if the checksum operation yielded 0", 6.4.2.9)."""
    return buffer(b"".join(descriptors) + bytes([END_TAG, 0]))
