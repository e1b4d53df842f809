"""The agent wire format and client, against a scripted fake console (no VM, fast)."""

from __future__ import annotations

import re

import pytest
from agent_fakes import FakeConsole  # tests/agent is on sys.path (rootdir-less test dir)

from pytest_vmm.agent.client import AgentClient, AgentError, AgentTimeout, ExitIgnored
from pytest_vmm.agent.protocol import (
    READY_RE,
    ErrorCode,
    FrameError,
    checksum,
    encode_reply,
    encode_request,
    fnv1a32,
    parse_reply,
)

REQ = re.compile(rb"@>(\d+) (\S+)((?: \S+=\S+)*) \*([0-9a-f]{2})\n")


def parse_request(raw: bytes) -> tuple[int, str, dict[str, str]]:
    m = REQ.fullmatch(raw)
    assert m, f"request {raw!r} does not match the documented frame"
    assert checksum(raw[: raw.rindex(b" *")]) == int(m.group(4), 16), f"bad request checksum in {raw!r}"
    args = dict(w.split("=", 1) for w in m.group(3).decode().split())
    return int(m.group(1)), m.group(2).decode(), args


def hello_guest(raw: bytes) -> bytes:
    rid, cmd, _ = parse_request(raw)
    assert cmd == "hello"
    return encode_reply(rid, "ok", "name=probe arch=x86_64 proto=1 cpus=2 tsc_khz=2994000 caps=port,mmio,irq")


def test_request_frame_and_checksum() -> None:
    line = encode_request(7, "rd", {"addr": 0xFEE00030, "width": 4})
    assert line == b"@>7 rd addr=0xfee00030 width=4 *%02x\n" % checksum(b"@>7 rd addr=0xfee00030 width=4")
    assert encode_request(1, "hello") == b"@>1 hello *%02x\n" % checksum(b"@>1 hello")


def test_request_rejects_what_the_guest_could_not_parse() -> None:
    with pytest.raises(ValueError):
        encode_request(1, "rd", {"addr": -1})
    with pytest.raises(ValueError):
        encode_request(1, "bad cmd")
    with pytest.raises(ValueError):
        encode_request(0, "hello")


def test_reply_parsing_ok_err_go() -> None:
    ok = parse_reply(encode_reply(3, "ok", "value=0xff width=1 fresh"))
    assert (ok.req_id, ok.status, ok.int("value"), ok.fields["width"], ok.text) == (3, "ok", 255, "1", "fresh")
    bare = parse_reply(encode_reply(4, "ok"))
    assert bare.fields == {} and bare.status == "ok"
    err = parse_reply(encode_reply(5, "err", "4 unsupported width 3"))
    assert (err.code, err.text) == (4, "unsupported width 3")
    go = parse_reply(encode_reply(6, "go", "before=2"))
    assert go.status == "go" and go.int("before") == 2


def test_reply_with_bad_checksum_is_rejected() -> None:
    raw = bytearray(encode_reply(3, "ok", "value=0x10"))
    raw[raw.index(b"0x10") + 3] = ord("1")  # value=0x11, checksum unchanged
    with pytest.raises(FrameError):
        parse_reply(bytes(raw))


def test_fnv1a32_reference_values() -> None:
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_ready_banner_regex() -> None:
    m = READY_RE.search("log\r\n@@ready proto=1 name=probe *00\r\n")
    assert m and m.group(1) == "1" and m.group(2) == "probe"
    assert READY_RE.search("@@ready proto=1 name=pr") is None, "a half-received banner must not match"


def test_pty_line_endings_are_tolerated() -> None:
    """A pty with ONLCR turns the guest's \\r\\n into \\r\\r\\n; a bare \\n must work too."""
    for ending in (b"\r\r\n", b"\n"):
        agent = AgentClient(FakeConsole(lambda raw, e=ending: hello_guest(raw).replace(b"\r\n", e)))
        assert agent.hello().name == "probe"


def test_wait_ready_returns_protocol_and_name() -> None:
    console = FakeConsole(lambda raw: b"", initial=b"probe: booting\r\n@@ready proto=1 name=probe *6d\r\n")
    assert AgentClient(console).wait_ready(1) == (1, "probe")


def test_wait_ready_times_out_with_tail() -> None:
    console = FakeConsole(lambda raw: b"", initial=b"probe: exception vec=0xd\r\n")
    with pytest.raises(AgentTimeout) as info:
        AgentClient(console).wait_ready(0.01)
    assert "exception vec=0xd" in str(info.value)


def test_hello_through_log_lines_and_garbage() -> None:
    def guest(raw: bytes) -> bytes:
        return b"[ 0.1] probe: log line @ 42\r\n\x00\xff\xfegarbage @@ and more\r\n" + hello_guest(raw) + b"after\r\n"

    agent = AgentClient(FakeConsole(guest))
    hello = agent.hello()
    assert (hello.name, hello.arch, hello.cpus, hello.tsc_khz) == ("probe", "x86_64", 2, 2994000)
    assert hello.caps == {"port", "mmio", "irq"}


def test_reply_after_unterminated_log_text() -> None:
    agent = AgentClient(FakeConsole(lambda raw: b"probe: half a line" + hello_guest(raw)))
    assert agent.hello().name == "probe"


def test_stale_ids_and_broken_frames_are_skipped() -> None:
    def guest(raw: bytes) -> bytes:
        rid, _, _ = parse_request(raw)
        stale = encode_reply(rid - 1 if rid > 1 else 99, "ok", "value=0x1")
        corrupt = encode_reply(rid, "ok", "value=0x2").replace(b"0x2", b"0x3")
        glued = b"@@" + str(rid).encode() + b" ok value=9 noise" + encode_reply(rid, "ok", "value=0x4")
        return stale + corrupt + glued

    agent = AgentClient(FakeConsole(guest), first_id=5)
    assert agent.inb(0x3F8 + 7) == 4
    assert len(agent.skipped) == 2


def test_echoed_request_is_not_a_reply() -> None:
    agent = AgentClient(FakeConsole(lambda raw: raw + hello_guest(raw)))
    assert agent.hello().cpus == 2


def test_error_reply_raises_agent_error() -> None:
    def guest(raw: bytes) -> bytes:
        rid, _, args = parse_request(raw)
        return encode_reply(rid, "err", f"{int(ErrorCode.UNSUPPORTED_WIDTH)} unsupported width {args['width']}")

    agent = AgentClient(FakeConsole(guest))
    with pytest.raises(AgentError) as info:
        agent.mmio_read(0x1000, 3)
    assert info.value.code == ErrorCode.UNSUPPORTED_WIDTH
    assert "unsupported width 3" in str(info.value) and "rd addr=0x1000 width=3" in str(info.value)


def test_timeout_names_request_and_console_tail() -> None:
    agent = AgentClient(FakeConsole(lambda raw: b"kernel panic: oops\r\n"), timeout=0.01)
    with pytest.raises(AgentTimeout) as info:
        agent.clock()
    msg = str(info.value)
    assert "@>1 clock" in msg and "kernel panic: oops" in msg and not info.value.eof


def test_console_closed_is_reported_as_eof() -> None:
    console = FakeConsole(lambda raw: b"bye\r\n")
    console.closed = True
    with pytest.raises(AgentTimeout) as info:
        AgentClient(console).ping()
    assert info.value.eof and "console closed" in str(info.value)


def test_interim_go_runs_the_host_side_then_waits_for_ok() -> None:
    state: dict[str, object] = {}

    def guest(raw: bytes) -> bytes:
        if raw.startswith(b"@>"):
            rid, cmd, args = parse_request(raw)
            assert cmd == "rx_burst"
            state.update(rid=rid, n=int(args["n"], 0), got=b"")
            return encode_reply(rid, "go")
        state["got"] = state["got"] + raw  # type: ignore[operator]
        got: bytes = state["got"]  # type: ignore[assignment]
        if len(got) == state["n"]:
            body = f"bytes={len(got)} irqs=3 fnv={fnv1a32(got):#x} overruns=0 dropped=0"
            return b"rx done\r\n" + encode_reply(state["rid"], "ok", body)  # type: ignore[arg-type]
        return b""

    data = bytes(range(32, 127)) * 11
    burst = AgentClient(FakeConsole(guest)).uart_burst(data, chunk=100)
    assert burst.intact and burst.irqs == 3 and burst.received == len(data)


def test_unexpected_go_is_an_error() -> None:
    agent = AgentClient(FakeConsole(lambda raw: encode_reply(parse_request(raw)[0], "go")))
    with pytest.raises(AgentError):
        agent.ping()


def test_exit_returns_when_the_console_closes() -> None:
    console = FakeConsole(lambda raw: b"")

    def guest(raw: bytes) -> bytes:
        _, cmd, args = parse_request(raw)
        assert (cmd, args) == ("exit", {"status": "3"})
        console.closed = True
        return b"probe: exiting\r\n"

    console.guest = guest
    AgentClient(console).exit(3)


def test_exit_reports_an_ignored_exit_port() -> None:
    def guest(raw: bytes) -> bytes:
        return encode_reply(parse_request(raw)[0], "err", "8 exit port 0xf4 did not stop the machine")

    # a failure of the exit path (an AssertionError), not an AgentError the plugin could skip
    with pytest.raises(ExitIgnored) as info:
        AgentClient(FakeConsole(guest)).exit(0)
    assert info.value.code == ErrorCode.UNSUPPORTED and not isinstance(info.value, AgentError)
