"""god's ACPI tables (boot/acpi.py) against ACPI 6.5, read back by a parser written here from
the spec (not from god's encoder), and by ACPICA's disassembler (`iasl -d`) when installed.

RSDP 5.2.5.3, SDT header 5.2.6, RSDT 5.2.7, XSDT 5.2.8, FADT 5.2.9, FACS 5.2.10, DSDT 5.2.11.1,
MADT 5.2.12; AML 20.2; resource descriptors 6.4.
"""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from god.boot import acpi, mptable
from god.boot import layout as L

BASE = 0xF0000
DEVICES = [acpi.MmioDevice(0xD0000000, 0x200, 5), acpi.MmioDevice(0xD0001000, 0x200, 6)]


class Image:
    """The ACPI area as guest memory at BASE."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def at(self, addr: int, n: int) -> bytes:
        off = addr - BASE
        assert 0 <= off and off + n <= len(self.blob), f"{addr:#x}+{n} outside the ACPI area"
        return self.blob[off:off + n]

    def table(self, addr: int) -> bytes:
        length = struct.unpack("<I", self.at(addr + 4, 4))[0]
        return self.at(addr, length)


def find_rsdp(mem: bytes, base: int) -> int:
    """5.2.5.1: scan the BIOS area on 16-byte boundaries for a valid 'RSD PTR '."""
    for off in range(0, len(mem) - 20, 16):
        if mem[off:off + 8] == b"RSD PTR " and sum(mem[off:off + 20]) & 0xFF == 0:
            return base + off
    raise AssertionError("no RSDP")


def tables(img: Image) -> dict[bytes, bytes]:
    rsdp = img.at(find_rsdp(img.blob, BASE), 36)
    xsdt = img.table(struct.unpack_from("<Q", rsdp, 24)[0])
    out = {b"XSDT": xsdt}
    for (addr,) in struct.iter_unpack("<Q", xsdt[36:]):
        t = img.table(addr)
        out[t[:4]] = t
    fadt = out[b"FACP"]
    out[b"DSDT"] = img.table(struct.unpack_from("<Q", fadt, 140)[0])
    out[b"FACS"] = img.at(struct.unpack_from("<Q", fadt, 132)[0], 64)
    out[b"RSDT"] = img.table(struct.unpack_from("<I", rsdp, 16)[0])
    return out


@pytest.fixture(params=[1, 2, 4])
def built(request: pytest.FixtureRequest) -> tuple[int, Image]:
    return request.param, Image(acpi.build(request.param, DEVICES, BASE))


def test_rsdp_in_bios_area_v2_with_both_checksums(built: tuple[int, Image]) -> None:
    """5.2.5.1: found on a 16-byte boundary in 0xE0000-0xFFFFF; 5.2.5.3: revision 2,
    checksum over the first 20 bytes and extended checksum over Length (36) bytes."""
    _, img = built
    addr = find_rsdp(img.blob, BASE)
    assert 0xE0000 <= addr <= 0xFFFFF - 36 and addr % 16 == 0
    rsdp = img.at(addr, 36)
    assert rsdp[15] == 2
    assert struct.unpack_from("<I", rsdp, 20)[0] == 36
    assert sum(rsdp) & 0xFF == 0
    assert L.ACPI_ADDR >= 0xE0000 and L.ACPI_ADDR + L.ACPI_SIZE <= 0x100000


def test_every_table_checksums_to_zero_and_rsdt_matches_xsdt(built: tuple[int, Image]) -> None:
    """5.2.6: the entire table, including the checksum field, sums to zero; 5.2.7/5.2.8: the
    RSDT's 32-bit and the XSDT's 64-bit entries list the same tables."""
    _, img = built
    t = tables(img)
    for sig in (b"XSDT", b"RSDT", b"FACP", b"APIC", b"DSDT"):
        assert sum(t[sig]) & 0xFF == 0, sig
        assert struct.unpack_from("<I", t[sig], 4)[0] == len(t[sig])
    rsdt = [a for (a,) in struct.iter_unpack("<I", t[b"RSDT"][36:])]
    xsdt = [a for (a,) in struct.iter_unpack("<Q", t[b"XSDT"][36:])]
    assert rsdt == xsdt


def test_madt_one_enabled_lapic_per_vcpu_ioapic_and_overrides(built: tuple[int, Image]) -> None:
    """5.2.12: local APIC at 0xFEE00000, PCAT_COMPAT; 5.2.12.2 one enabled Processor Local
    APIC per vCPU; 5.2.12.3 the IOAPIC at 0xFEC00000, GSI base 0, with the MP table's ID;
    5.2.12.5 ISA IRQ0 goes where the MP table routes it (edge, high) and the SCI is level."""
    n, img = built
    madt = tables(img)[b"APIC"]
    lapic_addr, flags = struct.unpack_from("<II", madt, 36)
    assert lapic_addr == 0xFEE00000 and flags & 1
    lapics, ioapics, isos = [], [], {}
    off = 44
    while off < len(madt):
        typ, ln = madt[off], madt[off + 1]
        assert ln >= 2
        if typ == 0:
            _uid, apic_id, fl = struct.unpack_from("<BBI", madt, off + 2)
            lapics.append((apic_id, fl & 1))
        elif typ == 1:
            ioapics.append(struct.unpack_from("<BxII", madt, off + 2))
        elif typ == 2:
            bus, src, gsi, fl = struct.unpack_from("<BBIH", madt, off + 2)
            assert bus == 0
            isos[src] = (gsi, fl)
        off += ln
    assert off == len(madt)
    assert lapics == [(i, 1) for i in range(n)]
    assert ioapics == [(mptable.ioapic_id(n), 0xFEC00000, 0)]
    # MPS INTI flags: polarity bits 1:0 (01 active high), trigger bits 3:2 (01 edge, 11 level)
    mp_irq0_pin = _mp_table_irq0_pin(n)
    assert isos[0] == (mp_irq0_pin, 0b0101)
    assert isos[acpi.SCI_IRQ] == (acpi.SCI_IRQ, 0b1101)


def _mp_table_irq0_pin(ncpus: int) -> int:
    """MP spec 1.4 section 4.3.4: the I/O interrupt entry (type 3) for ISA source IRQ 0."""
    _, table = mptable.build(ncpus)
    off = 44
    while off < len(table):
        typ = table[off]
        if typ == 0:
            off += 20
            continue
        if typ == 3 and table[off + 5] == 0:  # source bus IRQ 0
            return table[off + 7]
        off += 8
    raise AssertionError("no IRQ0 entry in the MP table")


def test_madt_uses_x2apic_entries_above_apic_id_254() -> None:
    """5.2.12.12: processors with APIC IDs of 255 and above are Processor Local x2APIC."""
    img = Image(acpi.build(300, DEVICES, BASE))
    madt = tables(img)[b"APIC"]
    x2, xa, off = [], 0, 44
    while off < len(madt):
        if madt[off] == 9:
            x2.append(struct.unpack_from("<I", madt, off + 4)[0])
        elif madt[off] == 0:
            xa += 1
        off += madt[off + 1]
    assert xa == 255 and x2 == list(range(255, 300))


def test_fadt_pm_timer_reset_register_and_pointers(built: tuple[int, Image]) -> None:
    """5.2.9: PM_TMR_BLK with PM_TMR_LEN 4, PM1a blocks, SCI_INT; RESET_REG_SUP (flag bit 10)
    with RESET_REG a SystemIO GAS and RESET_VALUE; HW_REDUCED_ACPI (bit 20) clear; FACS and
    DSDT pointers in both the 32- and 64-bit fields; FACS 64-byte aligned (5.2.10)."""
    _, img = built
    t = tables(img)
    f = t[b"FACP"]
    assert f[8] == 6 and len(f) == 276
    facs32, dsdt32 = struct.unpack_from("<II", f, 36)
    facs64, dsdt64 = struct.unpack_from("<QQ", f, 132)
    assert (facs32, dsdt32) == (facs64, dsdt64) and facs32 % 64 == 0
    assert struct.unpack_from("<H", f, 46)[0] == 9
    assert struct.unpack_from("<I", f, 76)[0] == 0x608 and f[91] == 4
    assert struct.unpack_from("<I", f, 56)[0] == 0x600 and f[88] == 4
    assert struct.unpack_from("<I", f, 64)[0] == 0x604 and f[89] == 2
    flags = struct.unpack_from("<I", f, 112)[0]
    assert flags & (1 << 10) and not flags & (1 << 20) and not flags & (1 << 8)
    space, width, _, _access, addr = struct.unpack_from("<BBBBQ", f, 116)
    assert (space, width, addr, f[128]) == (1, 8, 0xCF9, 0x06)
    x_tmr = struct.unpack_from("<BBBBQ", f, 208)
    assert x_tmr[0] == 1 and x_tmr[1] == 32 and x_tmr[4] == 0x608
    facs = t[b"FACS"]
    assert facs[:4] == b"FACS" and struct.unpack_from("<I", facs, 4)[0] == 64


# --- an independent AML reader (ACPI 6.5 chapter 20) -------------------------------------------

def _pkg_length(b: bytes, i: int) -> tuple[int, int]:
    """(PkgLength value, bytes it took) at b[i] (20.2.4)."""
    lead = b[i]
    n = lead >> 6
    if n == 0:
        return lead & 0x3F, 1
    v = lead & 0x0F
    for k in range(n):
        v |= b[i + 1 + k] << (4 + 8 * k)
    return v, n + 1


def _name_string(b: bytes, i: int) -> tuple[str, int]:
    out, j = "", i
    if b[j] == 0x5C:
        out, j = "\\", j + 1
    if b[j] == 0x2E:
        segs, j = 2, j + 1
    elif b[j] == 0x2F:
        segs, j = b[j + 1], j + 2
    elif b[j] == 0:
        return out, j + 1 - i
    else:
        segs = 1
    names = [b[j + 4 * k:j + 4 * k + 4].decode() for k in range(segs)]
    return out + ".".join(names), j + 4 * segs - i


def _data(b: bytes, i: int) -> tuple[object, int]:
    op = b[i]
    if op in (0, 1):
        return op, 1
    if op == 0x0A:
        return b[i + 1], 2
    if op == 0x0B:
        return struct.unpack_from("<H", b, i + 1)[0], 3
    if op == 0x0C:
        return struct.unpack_from("<I", b, i + 1)[0], 5
    if op == 0x0D:
        end = b.index(0, i + 1)
        return b[i + 1:end].decode(), end + 1 - i
    if op in (0x11, 0x12):  # Buffer / Package: skip the body, keep the raw bytes
        ln, lb = _pkg_length(b, i + 1)
        return ("buffer" if op == 0x11 else "package", b[i + 1 + lb:i + 1 + ln]), 1 + ln
    raise AssertionError(f"unexpected AML data op {op:#x} at {i}")


def aml_devices(b: bytes, prefix: str = "") -> dict[str, dict[str, object]]:
    """Device path -> {name: value} for the Scope/Device/Name terms in b."""
    out: dict[str, dict[str, object]] = {}
    i = 0
    while i < len(b):
        if b[i] == 0x10 or (b[i] == 0x5B and b[i + 1] == 0x82):
            is_dev = b[i] == 0x5B
            start = i + (2 if is_dev else 1)
            ln, lb = _pkg_length(b, start)
            nm, nl = _name_string(b, start + lb)
            path = nm if nm.startswith("\\") else f"{prefix}.{nm}"
            body = b[start + lb + nl:start + ln]
            if is_dev:
                out[path] = {}
            for dev, names in aml_devices(body, path).items():
                out.setdefault(dev, {}).update(names)
            i = start + ln
        elif b[i] == 0x08:
            nm, nl = _name_string(b, i + 1)
            val, vl = _data(b, i + 1 + nl)
            out.setdefault(prefix, {})[nm] = val
            i += 1 + nl + vl
        else:
            raise AssertionError(f"unexpected AML op {b[i]:#x} at {i}")
    return out


def resources(buf: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of each resource descriptor (6.4.1 small, 6.4.3 large) up to End Tag."""
    _buf_len, blen = _data(buf, 0) if buf[0] in (0x0A, 0x0B, 0x0C) else (buf[0], 1)
    data = buf[blen:]
    out, i = [], 0
    while i < len(data):
        tag = data[i]
        if tag & 0x80:
            ln = struct.unpack_from("<H", data, i + 1)[0]
            out.append((tag, data[i + 3:i + 3 + ln]))
            i += 3 + ln
        else:
            ln = tag & 7
            out.append((tag & 0x78, data[i + 1:i + 1 + ln]))
            if tag & 0x78 == 0x78:
                break
            i += 1 + ln
    return out


def test_dsdt_describes_each_virtio_mmio_device_as_lnro0005_with_its_crs() -> None:
    """QEMU microvm / arm virt convention, ACPI 6.5 6.1.5 (_HID), 6.2.2 (_CRS): one Device
    per virtio-mmio transport with _HID "LNRO0005", a Memory32Fixed (6.4.3.4) of its window
    and an Extended Interrupt (6.4.3.6) of its GSI, consumer, level, active-high."""
    img = Image(acpi.build(1, DEVICES, BASE))
    dsdt = tables(img)[b"DSDT"]
    devs = aml_devices(dsdt[36:])
    virtio = {p: n for p, n in devs.items() if n.get("_HID") == "LNRO0005"}
    assert sorted(virtio) == ["\\_SB_.VR00", "\\_SB_.VR01"]
    for d, (path, names) in zip(DEVICES, sorted(virtio.items())):
        kind, raw = names["_CRS"]  # type: ignore[misc]
        assert kind == "buffer"
        descs = resources(raw)
        assert descs[0][0] == 0x86 and struct.unpack("<BII", descs[0][1]) == (1, d.base, d.size)
        assert descs[1][0] == 0x89
        flags, count, gsi = struct.unpack("<BBI", descs[1][1])
        assert (flags & 1, flags & 2, flags & 4, count, gsi) == (1, 0, 0, 1, d.gsi)
        assert descs[-1][0] == 0x78
    assert devs[""]["\\_S5_"] == ("package", bytes([4, 0x0A, 5, 0, 0, 0]))


@pytest.mark.skipif(shutil.which("iasl") is None, reason="ACPICA's iasl not installed "
                    "(Debian package acpica-tools)")
def test_acpica_disassembles_dsdt_madt_fadt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ACPICA, an independent decoder, reads god's tables without complaint."""
    t = tables(Image(acpi.build(2, DEVICES, BASE)))
    for sig, name in ((b"DSDT", "dsdt"), (b"APIC", "apic"), (b"FACP", "facp")):
        (tmp_path / f"{name}.dat").write_bytes(t[sig])
        r = subprocess.run(["iasl", "-d", f"{name}.dat"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        dsl = (tmp_path / f"{name}.dsl").read_text()
        assert "Error" not in dsl and "**** Invalid" not in dsl, dsl
    dsl = (tmp_path / "dsdt.dsl").read_text()
    assert 'Name (_HID, "LNRO0005")' in dsl
    assert "Memory32Fixed (ReadWrite,\n                    0xD0000000," in dsl
    assert "Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, )" in dsl
    madt = (tmp_path / "apic.dsl").read_text()
    assert madt.count("[Processor Local APIC]") == 2


def test_tables_land_in_guest_memory_at_the_layout_address() -> None:
    """write() puts the RSDP at layout.ACPI_ADDR, inside the reserved 0xF0000 map entry."""
    from god.memory import GuestMemory

    mem = GuestMemory(L.ram_layout(8 << 20))
    try:
        rsdp = acpi.write(mem, 1, DEVICES)
        assert rsdp == L.ACPI_ADDR
        assert mem.read(rsdp, 8) == b"RSD PTR "
        reserved = [(a, s) for a, s, t in L.memory_map(8 << 20) if t == L.E820_RESERVED]
        assert any(a <= rsdp and rsdp + L.ACPI_SIZE <= a + s for a, s in reserved)
    finally:
        mem.close()


# --- the fixed hardware the FADT points at (devices/pmtimer.py) ------------------------------

def test_pm_timer_counts_at_3_579545_mhz_and_wraps_at_24_bits() -> None:
    """4.8.3.3: the PM timer is a 24-bit (TMR_VAL_EXT clear) counter at 3.579545 MHz."""
    from god.devices.pmtimer import AcpiPm

    now = [0]
    pm = AcpiPm(lambda t: None, acpi.SLP_TYP_S5, clock_ns=lambda: now[0])
    now[0] = 1_000_000_000
    assert pm.read(8, 4) == 3_579_545 & 0xFFFFFF
    now[0] = 2_000_000_000
    assert pm.read(8, 4) == 7_159_090 & 0xFFFFFF
    assert pm.read(8, 4) < 1 << 24


def test_pm_timer_is_monotonic_on_the_host_clock() -> None:
    """4.8.3.3: the counter runs freely; two reads in a row never go back (before a wrap)."""
    from god.devices.pmtimer import AcpiPm

    pm = AcpiPm(lambda t: None, acpi.SLP_TYP_S5)
    a = pm.read(8, 4)
    b = pm.read(8, 4)
    assert (b - a) & 0xFFFFFF < 1 << 23


def test_pm1_control_sci_en_set_and_s5_powers_off() -> None:
    """4.8.3.2.1: SCI_EN (bit 0) reads 1 on a machine always in ACPI mode (SMI_CMD 0);
    writing SLP_TYP (bits 12:10) = the \\_S5 value with SLP_EN (bit 13) enters S5; SLP_EN
    reads as 0."""
    from god.devices.pmtimer import AcpiPm

    slept: list[int] = []
    pm = AcpiPm(slept.append, acpi.SLP_TYP_S5)
    assert pm.read(4, 2) & 1
    pm.write(4, 2, acpi.SLP_TYP_S5 << 10)
    assert slept == []
    pm.write(4, 2, (acpi.SLP_TYP_S5 << 10) | (1 << 13))
    assert slept == [acpi.SLP_TYP_S5]
    assert not pm.read(4, 2) & (1 << 13)


# --- from inside a real KVM guest: the PC conventions as a test kernel sees them -------------

PC_C = r"""
static u32 cfg_read(u32 bdf_reg) { outl(0xcf8, 0x80000000u | bdf_reg); return inl(0xcfc); }
static u8 fw_byte(void) { return inb(0x511); }
static u32 fw_u32(u16 key) {
    outw(0x510, key);
    u32 v = 0;
    for (int i = 0; i < 4; i++) v |= (u32)fw_byte() << (8 * i);
    return v;
}
int main(void) {
    u32 sig = fw_u32(0x0000);
    u32 ncpus = fw_u32(0x0005) & 0xffff;
    u32 host = cfg_read(0);
    u32 absent = cfg_read(1 << 11);
    u32 eax = 1, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    const char *rsdp = (const char *)0xf0000;
    int rsdp_ok = 1;
    for (int i = 0; i < 8; i++) rsdp_ok &= rsdp[i] == "RSD PTR "[i];
    puts("sig="); puthex(sig); puts(" ncpus="); puthex(ncpus); puts(" host="); puthex(host);
    puts(" absent="); puthex(absent); puts(" cpuid_count="); puthex((ebx >> 16) & 0xff);
    puts(" rsdp="); puthex(rsdp_ok); putc('\n');
    return 1;
}
"""


@pytest.mark.parametrize("cpus", [1, 4])
def test_guest_sees_fw_cfg_pci_cpuid_and_rsdp(kvm, gcc, tmp_path, cpus: int) -> None:  # type: ignore[no-untyped-def]
    """A 64-bit guest on god reads fw_cfg's signature "QEMU" and NB_CPUS (fw_cfg.rst),
    the host bridge's IDs and all ones for 00:01.0 through 0xcf8/0xcfc (PCI 3.0
    3.2.2.3.2), CPUID.1:EBX[23:16] = --cpus (SDM vol. 2A, CPUID), and the RSDP signature in
    the BIOS area (ACPI 6.5 5.2.5.1). 4 vCPUs: more than PVM's recommended NR_VCPUS (2)."""
    from guestbuild import build_c64, run_guest

    r = run_guest(build_c64(tmp_path, PC_C, "pc"), cpus=cpus, timeout=30)
    assert r.result.status == 3, (r.result, r.text)
    fields = dict(kv.split("=") for kv in r.text.split())
    assert int(fields["sig"], 16) == int.from_bytes(b"QEMU", "little")
    assert int(fields["ncpus"], 16) == cpus
    assert int(fields["host"], 16) == 0x29C08086
    assert int(fields["absent"], 16) == 0xFFFFFFFF
    assert int(fields["cpuid_count"], 16) == cpus
    assert int(fields["rsdp"], 16) == 1


def test_dsdt_names_fw_cfg_ports_as_qemu0002() -> None:
    """fw_cfg.rst "ACPI Interface": the device is QEMU0002; its _CRS is an I/O Port
    descriptor (ACPI 6.5 6.4.2.5: 16-bit decode, min = max = 0x510) over god's two ports."""
    devs = aml_devices(tables(Image(acpi.build(1, DEVICES, BASE)))[b"DSDT"][36:])
    fw = devs["\\_SB_.FWCF"]
    assert fw["_HID"] == "QEMU0002" and fw["_STA"] == 0x0B
    descs = resources(fw["_CRS"][1])  # type: ignore[index]
    assert descs[0] == (0x40, struct.pack("<BHHBB", 1, 0x510, 0x510, 1, 2))


def _machine_tables(machine) -> dict[bytes, bytes]:  # type: ignore[no-untyped-def]
    return tables(Image(machine.mem.read(L.ACPI_ADDR, L.ACPI_SIZE)))


def test_machine_describes_attached_virtio_devices_as_the_tokens_do(kvm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The DSDT and the virtio_mmio.device= token describe the same window and GSI for each
    attached device (docs/virtio.md), and the MADT has --cpus Local APICs."""
    from god.boot import BootInputs
    from god.machine import Machine, MachineConfig
    from god.virtio.attach import attach
    from god.virtio.blk import VirtioBlk

    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(4096))
    with Machine(MachineConfig(mem_mib=16, cpus=2)) as m:
        tokens = [attach(m, VirtioBlk(disk, read_only=True))[1] for _ in range(2)]
        m.load(BootInputs(b"\xf4"), flat_addr=0x100000)
        t = _machine_tables(m)
        devs = aml_devices(t[b"DSDT"][36:])
        for i, tok in enumerate(tokens):
            size, rest = tok.removeprefix("virtio_mmio.device=").split("@")
            base, gsi = rest.split(":")
            descs = resources(devs[f"\\_SB_.VR{i:02d}"]["_CRS"][1])  # type: ignore[index]
            assert struct.unpack("<BII", descs[0][1])[1:] == (int(base, 16), int(size))
            assert struct.unpack("<BBI", descs[1][1])[2] == int(gsi)
        madt = t[b"APIC"]
        assert sum(1 for off in _madt_offsets(madt) if madt[off] == 0) == 2


def _madt_offsets(madt: bytes) -> list[int]:
    out, off = [], 44
    while off < len(madt):
        out.append(off)
        off += madt[off + 1]
    return out


def test_no_acpi_leaves_no_rsdp(kvm) -> None:  # type: ignore[no-untyped-def]
    """`god run --no-acpi`: nothing in the BIOS area an OS would take for an RSDP."""
    from god.boot import BootInputs
    from god.machine import Machine, MachineConfig

    with Machine(MachineConfig(mem_mib=16, acpi=False)) as m:
        m.load(BootInputs(b"\xf4"), flat_addr=0x100000)
        area = m.mem.read(0xE0000, 0x20000)
        assert b"RSD PTR " not in area


def test_machine_fw_cfg_cpu_counts_follow_cpus(kvm) -> None:  # type: ignore[no-untyped-def]
    """QEMU sets FW_CFG_NB_CPUS to the boot CPUs and FW_CFG_MAX_CPUS to -smp maxcpus, which
    is the CPU count when nothing is hot-pluggable (god has no CPU hotplug)."""
    from god.machine import Machine, MachineConfig

    with Machine(MachineConfig(mem_mib=16, cpus=3)) as m:
        for key in (0x05, 0x0F):
            m.fwcfg.write(0, 2, key)
            assert m.fwcfg.read(1, 1) | m.fwcfg.read(1, 1) << 8 == 3
