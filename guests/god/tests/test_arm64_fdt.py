"""god.boot.fdt against the Devicetree Specification v0.4 chapter 5 (the DTB format), with
dtc (Debian's device-tree-compiler) as the independent decoder."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest
from god.boot import fdt


def dtc_dts(blob: bytes, tmp_path) -> str:
    if shutil.which("dtc") is None:
        pytest.skip("dtc not installed")
    f = tmp_path / "t.dtb"
    f.write_bytes(blob)
    p = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(f)], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout


def sample() -> fdt.Node:
    root = fdt.Node()
    root.set("#address-cells", 2).set("#size-cells", 2).set("model", "t")
    a = root.add("a@1000")
    a.set("reg", fdt.u64(0x1000, 0x20)).set("compatible", fdt.strings("x,y", "x,z"))
    a.set("flag", fdt.EMPTY).set("model", "again")  # "model" twice: one strings entry
    a.add("child").set("v", fdt.u32(1, 2, 3))
    root.add("b")
    return root


def test_header_fields_spec_5_2():
    """5.2: magic 0xd00dfeed, totalsize, offsets, version 17, last_comp_version 16,
    size_dt_strings/size_dt_struct; blocks in order rsvmap, struct, strings."""
    blob = fdt.to_dtb(sample(), boot_cpuid=3)
    (magic, total, off_struct, off_strings, off_rsv, version, last, cpuid, size_strings,
     size_struct) = struct.unpack_from(">10I", blob)
    assert magic == 0xD00DFEED and total == len(blob)
    assert (version, last, cpuid) == (17, 16, 3)
    assert off_rsv % 8 == 0 and off_rsv >= 40  # 5.3: the reservation block is 8-aligned
    assert off_rsv < off_struct and off_struct % 4 == 0
    assert off_struct + size_struct == off_strings and off_strings + size_strings == total
    # 5.4.1: the structure block ends with FDT_END after the root's FDT_END_NODE
    assert blob[off_strings - 8:off_strings] == struct.pack(">II", 2, 9)
    # 5.5: each property name once
    names = blob[off_strings:].split(b"\0")[:-1]
    assert len(names) == len(set(names)) and b"model" in names


def test_memory_reservation_block_5_3(tmp_path):
    blob = fdt.to_dtb(sample(), reserved=[(0x4000_0000, 0x1000)])
    off_rsv = struct.unpack_from(">I", blob, 16)[0]
    assert struct.unpack_from(">4Q", blob, off_rsv) == (0x4000_0000, 0x1000, 0, 0)
    assert re.search(r"/memreserve/\s+0x0*40000000 0x0*1000;", dtc_dts(blob, tmp_path))


def test_dtc_reads_nodes_and_values(tmp_path):
    dts = dtc_dts(fdt.to_dtb(sample()), tmp_path)
    assert "a@1000 {" in dts and "child {" in dts and "b {" in dts
    assert "reg = <0x00 0x1000 0x00 0x20>;" in dts
    assert 'compatible = "x,y\\0x,z";' in dts
    assert "flag;" in dts and 'model = "again";' in dts and "v = <0x01 0x02 0x03>;" in dts


def test_round_trip_through_dtc_is_identical(tmp_path):
    """dtc re-encoding god's tree gives the same structure and strings (dtc -O dtb)."""
    blob = fdt.to_dtb(sample())
    dts = tmp_path / "t.dts"
    dts.write_text(dtc_dts(blob, tmp_path))
    out = subprocess.run(["dtc", "-I", "dts", "-O", "dtb", str(dts)], capture_output=True,
                         check=True).stdout
    assert dtc_dts(out, tmp_path) == dtc_dts(blob, tmp_path)


@pytest.mark.parametrize("bad", [lambda: fdt.u32(1 << 32), lambda: fdt.string("a\0b"),
                                 lambda: fdt.Node("a/b")])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_duplicate_node_refused():
    root = fdt.Node()
    root.add("x")
    with pytest.raises(ValueError, match="duplicate"):
        root.add("x")
