"""A flattened device tree (DTB) writer: the Devicetree Specification v0.4, chapter 5
("Flattened Devicetree (DTB) Format"), version 17.

Layout written: header (5.2), memory reservation block (5.3, 8-byte aligned, (address,
size) u64 pairs ending with a zero pair), structure block (5.4: FDT_BEGIN_NODE name,
FDT_PROP len/nameoff/value, FDT_END_NODE, FDT_END, every token 4-byte aligned), strings
block (5.5: property names, NUL-terminated, each stored once). All big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

FDT_MAGIC = 0xD00DFEED
FDT_VERSION = 17
FDT_LAST_COMP_VERSION = 16
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
HEADER_SIZE = 40


# --- property values (Devicetree Specification 2.2.4.2) -------------------------------------
def u32(*cells: int) -> bytes:
    """A <prop-encoded-array> of 32-bit cells."""
    for c in cells:
        if not 0 <= c <= 0xFFFFFFFF:
            raise ValueError(f"cell {c:#x} does not fit 32 bits")
    return struct.pack(f">{len(cells)}I", *cells)


def u64(*values: int) -> bytes:
    """64-bit values as pairs of cells (high first), e.g. reg with #address-cells = 2."""
    return b"".join(u32(v >> 32, v & 0xFFFFFFFF) for v in values)


def string(s: str) -> bytes:
    if "\0" in s:
        raise ValueError("a devicetree string cannot contain NUL")
    return s.encode() + b"\0"


def strings(*items: str) -> bytes:
    """A <stringlist> (e.g. compatible = "arm,pl011", "arm,primecell")."""
    return b"".join(string(s) for s in items)


EMPTY = b""


class Node:
    """One node: a name (node-name@unit-address), ordered properties, ordered children."""

    def __init__(self, name: str = "") -> None:
        if "/" in name:
            raise ValueError(f"node name {name!r} contains '/'")
        self.name = name
        self.props: dict[str, bytes] = {}
        self.children: list[Node] = []

    def set(self, prop: str, value: bytes | str | int) -> Node:
        """Set a property; an int is one u32 cell, a str one string."""
        if isinstance(value, str):
            value = string(value)
        elif isinstance(value, int):
            value = u32(value)
        self.props[prop] = bytes(value)
        return self

    def add(self, name: str) -> Node:
        if any(c.name == name for c in self.children):
            raise ValueError(f"duplicate node {name!r} under {self.name or '/'!r}")
        child = Node(name)
        self.children.append(child)
        return child

    def find(self, path: str) -> Node:
        node = self
        for part in [p for p in path.split("/") if p]:
            node = next(c for c in node.children if c.name == part)
        return node


def _pad4(b: bytearray) -> None:
    b.extend(b"\0" * (-len(b) % 4))


def to_dtb(root: Node, reserved: Iterable[tuple[int, int]] = (), boot_cpuid: int = 0) -> bytes:
    """Serialize the tree rooted at root (whose name must be empty) to DTB bytes."""
    if root.name:
        raise ValueError("the root node has an empty name")
    names: dict[str, int] = {}
    strtab = bytearray()
    st = bytearray()

    def name_off(n: str) -> int:
        off = names.get(n)
        if off is None:
            off = names[n] = len(strtab)
            strtab.extend(string(n))
        return off

    def emit(node: Node) -> None:
        st.extend(struct.pack(">I", FDT_BEGIN_NODE))
        st.extend(node.name.encode() + b"\0")
        _pad4(st)
        for prop, value in node.props.items():
            st.extend(struct.pack(">III", FDT_PROP, len(value), name_off(prop)))
            st.extend(value)
            _pad4(st)
        for child in node.children:
            emit(child)
        st.extend(struct.pack(">I", FDT_END_NODE))

    emit(root)
    st.extend(struct.pack(">I", FDT_END))
    rsv = bytearray()
    for addr, size in reserved:
        rsv.extend(struct.pack(">QQ", addr, size))
    rsv.extend(struct.pack(">QQ", 0, 0))
    off_rsv = HEADER_SIZE  # already 8-byte aligned
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(st)
    total = off_strings + len(strtab)
    header = struct.pack(">10I", FDT_MAGIC, total, off_struct, off_strings, off_rsv,
                         FDT_VERSION, FDT_LAST_COMP_VERSION, boot_cpuid, len(strtab), len(st))
    return header + bytes(rsv) + bytes(st) + bytes(strtab)
