"""The BusyBox shell agent (guests/zosia/rootfs/agent.sh) speaks the agent protocol.

Run on the host under `busybox sh` with requests on stdin: framing, checksums, errors. The
hardware commands (ports, devmem, the exit port) are checked in the guest by the suites.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_vmm.agent.protocol import READY_RE, REPLY_RE, encode_request, parse_reply

AGENT = Path(__file__).resolve().parents[2] / "guests" / "zosia" / "rootfs" / "agent.sh"
BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")


def run_agent(data: bytes) -> bytes:
    r = subprocess.run([BUSYBOX, "sh", str(AGENT)], input=data, capture_output=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def replies(out: bytes) -> dict[int, object]:
    return {reply.req_id: reply for reply in (parse_reply(m.group(0)) for m in REPLY_RE.finditer(out))}


def test_banner_and_hello() -> None:
    out = run_agent(encode_request(1, "hello") + encode_request(2, "ping"))
    assert READY_RE.search(out.decode()), out
    got = replies(out)
    hello = got[1]
    assert hello.status == "ok" and hello.fields["name"] == "zosia", hello
    assert hello.fields["proto"] == "1" and int(hello.fields["cpus"]) >= 1, hello
    assert "port" in hello.fields["caps"].split(","), hello
    assert got[2].status == "ok" and got[2].fields["cpu"] == "0"


def test_errors_unknown_bad_checksum_unsupported() -> None:
    bad = encode_request(3, "hello").replace(b"*", b"*0")[:-2] + b"\n"  # wrong checksum
    out = run_agent(b"\x1b[2J garbage @>xx\n" + encode_request(1, "frobnicate") + bad
                    + b"noise before it " + encode_request(4, "cpuid", {"leaf": 0})
                    + encode_request(5, "in", {"port": 0x3F8, "width": 4})
                    + encode_request(6, "rd", {"addr": 0x1000, "width": 3})
                    + encode_request(7, "ping", {"cpu": 1})
                    + encode_request(8, "in", {"port": 0x3F9, "width": 1})
                    + encode_request(9, "irq_arm", {"line": 4}))
    got = replies(out)
    assert (got[1].status, got[1].code) == ("err", 2), got[1]
    assert (got[3].status, got[3].code) == ("err", 1), got[3]
    assert (got[4].status, got[4].code) == ("err", 8), got[4]
    assert (got[5].status, got[5].code) == ("err", 8), got[5]
    assert (got[6].status, got[6].code) == ("err", 4), got[6]
    assert (got[7].status, got[7].code) == ("err", 8), got[7]
    assert (got[8].status, got[8].code) == ("err", 8) and "8250" in got[8].text, got[8]  # Linux owns IER
    assert (got[9].status, got[9].code) == ("err", 8), got[9]


def test_clock_and_halt_use_uptime() -> None:
    out = run_agent(encode_request(1, "clock") + encode_request(2, "halt", {"ms": 120})
                    + encode_request(3, "clock"))
    got = replies(out)
    assert got[1].int("ns") > 0 and got[3].int("ns") >= got[1].int("ns") + 100_000_000, (got[1], got[3])
    assert got[2].int("ns") >= 100_000_000, got[2]
