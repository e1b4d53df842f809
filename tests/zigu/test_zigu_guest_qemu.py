"""Boot zigu.elf on QEMU microvm, reach the ready line, drive ABI sequences in-guest."""
import re
import subprocess

import abi_checks
import pytest


def test_kernel_image_is_pvh_and_sse_free(zigu_build):
    elf = zigu_build / "zigu.elf"
    notes = subprocess.run(["readelf", "-n", str(elf)], capture_output=True, text=True).stdout
    assert "Xen" in notes and "0x00000012" in notes, notes
    dis = subprocess.run(["objdump", "-d", str(elf)], capture_output=True, text=True).stdout
    assert not re.search(r"%[xy]mm\d", dis), "ring-0 code must not use SSE"


def test_boot_ready_and_abi_sequence(zigu_guest):
    g = zigu_guest
    assert g.ready_match.group(1) == b"1"
    line = g.ready_match.group(0).decode()
    assert "gate=ud2" in line and "denied=-1" in line, line  # LOG refused before any cap_enter
    abi = g.abi()
    toks = abi.request("ping", "reset 0", "active", "acquire 1", "acquire 5", "acquire 99")
    assert toks[0] == "pong" and toks[1:3] == ["0", "0"]
    h = int(toks[3])
    assert h > 0 and toks[4:] == ["-8", "-7"]  # NET denied by policy, kind 99 bad
    toks = abi.request("log 6869", f"enter {h}", "log 6869", "active", f"release {h}", f"release {h}", "log 6869")
    assert toks == ["-1", "2", "2", "2", "0", "-3", "-1"]
    g._log.flush()
    assert re.search(rb"zigu: log\[default\] hi\r*\n", open(g._log.name, "rb").read())  # the LOG capability's output
    st = abi.stats()
    assert st["calls"] > 0 and st["denied"] >= 2


def test_guest_bench_and_exit(zigu_guest):
    abi = zigu_guest.abi()
    from ukernel_abi import UK

    last, ns = abi.bench(500, UK.SYS_CAP_ACTIVE)
    assert last == 0 and ns > 0
    rate = 500 / (ns / 1e9)
    assert rate > 500, f"in-guest ABI rate {rate:.0f}/s"
    abi.exit(3)
    assert zigu_guest.exit_status(10) == (3 << 1) | 1


@pytest.mark.parametrize("check", [abi_checks.check_stale_and_forged_handles, abi_checks.check_bad_pointers_and_lengths,
                                   abi_checks.check_io_poll], ids=lambda c: c.__name__.removeprefix("check_"))
def test_rules_in_guest(zigu_guest, check):
    check(zigu_guest.abi())
