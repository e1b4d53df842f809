"""Platform tables agree with the machine: the Intel MultiProcessor Specification 1.4 table
(4.1 floating pointer, 4.2 configuration table header, 4.3.1 processor entries) and the ACPI
MADT (ACPI 6.5: 5.2.5 RSDP, 5.2.7/5.2.8 RSDT/XSDT, 5.2.12 MADT, 5.2.12.2 Processor Local
APIC, 5.2.12.12 x2APIC), parsed here on the host from guest memory, count the vCPUs the
machine was given."""

from __future__ import annotations

import struct

import pytest

from pytest_vmm import Machine
from pytest_vmm.agent.client import AgentClient
from pytest_vmm.virtio.access import AgentMemory

# The tables are only read: the checks share a guest (vmm_shared; --vmm-fresh boots one per check).
pytestmark = [pytest.mark.vmm_arch("x86_64"), pytest.mark.vmm_requires("dma"), pytest.mark.vmm_shared,
              pytest.mark.vmm_shared_state(probe=None, reason="the checks only read the tables")]

BDA_EBDA_SEGMENT = 0x40E


def search_areas(mem: AgentMemory) -> list[tuple[int, int]]:
    """MP 1.4 4 / ACPI 5.2.5.1: the first KiB of the EBDA, the last KiB of base memory,
    and the BIOS ROM area 0xe0000-0xfffff."""
    ebda = int.from_bytes(mem.read(BDA_EBDA_SEGMENT, 2), "little") << 4
    areas = [(0x9FC00, 0x400), (0xE0000, 0x20000)]
    if 0x80000 <= ebda < 0xA0000:
        areas.insert(0, (ebda, 0x400))
    return areas


def find(agent: AgentClient, signature: bytes, verify: int = 0) -> int | None:
    """First 16-byte-aligned ``signature`` (4 bytes searched by the agent, all checked here)."""
    mem = AgentMemory(agent)
    for start, length in search_areas(mem):
        addr, end = start, start + length
        while addr < end:
            reply = agent.request("mfind", addr=addr, len=end - addr, sig=int.from_bytes(signature[:4], "little"))
            if not reply.int("n"):
                break
            hit = reply.int("addr")
            if mem.read(hit, len(signature)) == signature and (not verify or checksum(mem.read(hit, verify)) == 0):
                return hit
            addr = hit + 16
    return None


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def cpus_configured(machine: Machine) -> int:
    return machine.spec.cpus


MP_ENTRY_SIZES = {0: 20, 1: 8, 2: 8, 3: 8, 4: 8}  # MP 1.4 4.3: processor, bus, I/O APIC, I/O and local interrupt


def mp_table(machine: Machine) -> tuple[bytes, int]:
    """(base table bytes, its header's entry count), after the floating pointer's and the
    base table's checksums (MP 1.4 4.1, 4.2: each sums to 0)."""
    agent = machine.agent
    mem = AgentMemory(agent)
    fp = find(agent, b"_MP_", verify=16)
    if fp is None:
        pytest.skip("no MP floating pointer structure found (the platform may describe CPUs by ACPI only)")
    table = int.from_bytes(mem.read(fp + 4, 4), "little")
    assert table, "MP floating pointer: configuration table address 0 (default configurations are not PC-compatible here)"
    header = mem.read(table, 44)
    assert header[:4] == b"PCMP", f"MP configuration table at {table:#x}: signature {header[:4]!r}"
    length, count = struct.unpack_from("<H", header, 4)[0], struct.unpack_from("<H", header, 34)[0]
    body = mem.read(table, length)
    assert checksum(body) == 0, "MP configuration table: base table checksum is not 0"
    return body, count


def mp_entries(body: bytes) -> list[bytes]:
    """The base entries, walked by their types' sizes up to the base table length."""
    entries, offset = [], 44
    while offset < len(body):
        kind = body[offset]
        assert kind in MP_ENTRY_SIZES, f"MP entry type {kind} at offset {offset} is not a 1.4 base entry type"
        entries.append(body[offset : offset + MP_ENTRY_SIZES[kind]])
        offset += MP_ENTRY_SIZES[kind]
    assert offset == len(body), f"MP entries end at {offset}, past the base table length {len(body)}"
    return entries


def test_mp_table_processor_count(machine: Machine) -> None:
    """MP 1.4 4.3.1: processor entries (type 0) with CPU flags EN (bit 0) set number the
    vCPUs; exactly one has BP (bit 1), the bootstrap processor."""
    body, _ = mp_table(machine)
    processors = [e for e in mp_entries(body) if e[0] == 0]
    cpus = sum(e[3] & 1 for e in processors)
    bsps = sum((e[3] >> 1) & 1 for e in processors)
    assert cpus == cpus_configured(machine), f"MP table lists {cpus} enabled processors, the machine has {cpus_configured(machine)} vCPUs"
    assert bsps == 1, f"MP table marks {bsps} processors as the bootstrap processor, expected 1"


def test_mp_table_entry_count(machine: Machine) -> None:
    """MP 1.4 4.2, base table header offset 0x22 ENTRY COUNT: the number of entries in the
    variable portion of the base table."""
    body, count = mp_table(machine)
    entries = len(mp_entries(body))
    assert count == entries, f"MP header ENTRY COUNT {count}, the base table holds {entries} entries"


def test_madt_processor_count(machine: Machine) -> None:
    """ACPI: RSDP ("RSD PTR ", checksum over 20 bytes 0) -> RSDT/XSDT -> "APIC" (checksum 0);
    Processor Local APIC (type 0) and x2APIC (type 9) entries with Enabled (flags bit 0)
    number the vCPUs."""
    agent = machine.agent
    mem = AgentMemory(agent)
    rsdp = find(agent, b"RSD PTR ", verify=20)
    if rsdp is None:
        pytest.skip("no ACPI RSDP found")
    raw = mem.read(rsdp, 36)
    revision = raw[15]
    if revision >= 2 and int.from_bytes(raw[24:32], "little"):
        root, width = int.from_bytes(raw[24:32], "little"), 8
    else:
        root, width = int.from_bytes(raw[16:20], "little"), 4
    head = mem.read(root, 36)
    length = int.from_bytes(head[4:8], "little")
    sdt = mem.read(root, length)
    assert checksum(sdt) == 0, f"{sdt[:4]!r} at {root:#x}: checksum is not 0"
    madt = None
    for off in range(36, length, width):
        addr = int.from_bytes(sdt[off : off + width], "little")
        if mem.read(addr, 4) == b"APIC":
            madt = addr
            break
    assert madt is not None, f"ACPI {sdt[:4].decode(errors='replace')} lists no MADT (\"APIC\")"
    mlen = int.from_bytes(mem.read(madt + 4, 4), "little")
    body = mem.read(madt, mlen)
    assert checksum(body) == 0, "MADT checksum is not 0"
    offset, cpus = 44, 0
    while offset + 2 <= mlen:
        kind, size = body[offset], body[offset + 1]
        assert size >= 2, f"MADT entry at offset {offset} has length {size}"
        if kind == 0:
            cpus += int.from_bytes(body[offset + 4 : offset + 8], "little") & 1
        elif kind == 9:
            cpus += int.from_bytes(body[offset + 8 : offset + 12], "little") & 1
        offset += size
    assert cpus == cpus_configured(machine), f"MADT lists {cpus} enabled processors, the machine has {cpus_configured(machine)} vCPUs"
