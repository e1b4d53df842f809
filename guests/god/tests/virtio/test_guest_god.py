"""The virtio test guest under god (`python -m god run`, real KVM): virtio-blk with checksums,
a vsock echo service with 50 concurrent host connections, guest-initiated connections."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import vguest

from pytest_vmm import vsock as hv

pytestmark = pytest.mark.usefixtures("kvm")


def fnv(data: bytes, h: int = 2166136261) -> int:
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def pattern(seed: int) -> bytes:
    return bytes((seed + i * 7 + (i >> 9)) & 0xFF for i in range(4096))


@pytest.fixture(scope="module")
def elf(tmp_path_factory) -> Path:
    if not vguest.have_toolchain():
        pytest.skip("gcc not installed")
    return vguest.build(tmp_path_factory.mktemp("vguest"))


@pytest.fixture
def run_dir():
    d = vguest.short_run_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _disk(path: Path, extra: int = 1 << 20) -> bytes:
    first = bytes(random.Random(5).randrange(256) for _ in range(4096))
    path.write_bytes(first + bytes(extra))
    return first


@pytest.mark.parametrize("ro", [False, True], ids=["rw", "ro"])
def test_blk_read_write_flush_id(elf, run_dir, ro):
    img = run_dir / "disk.img"
    first = _disk(img)
    spec = f"{img},ro" if ro else str(img)
    with vguest.Guest(vguest.god_argv(elf, None, disks=[spec], append="blk_seed=9"),
                      run_dir, run_dir / "none") as g:
        text = g.wait_for("VGUEST DONE", 60)
    line = next(ln for ln in text.splitlines() if ln.startswith("BLK "))
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    assert int(f["capacity"]) == (4096 + (1 << 20)) // 512
    assert int(f["read"]) == 0 and int(f["readsum"], 16) == fnv(first), line
    assert int(f["writesum"], 16) == fnv(pattern(9))
    assert f["id"] == "disk.img" and int(f["flush"]) == 0
    assert int(f["past_end"]) == 1                      # VIRTIO_BLK_S_IOERR
    on_disk = img.read_bytes()[8 * 512:16 * 512]
    if ro:
        assert " ro " in line and int(f["write"]) == 1 and on_disk == bytes(4096)
    else:
        assert int(f["write"]) == 0 and "match" in line and on_disk == pattern(9)


def test_blk_size_not_whole_sectors_rejected(elf, run_dir):
    img = run_dir / "odd.img"
    img.write_bytes(bytes(1000))
    p = subprocess.run(vguest.god_argv(elf, None, disks=[str(img)]), capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 4 and "not a multiple of 512" in p.stderr, p.stderr


@pytest.fixture(scope="module")
def echo_guest(elf):
    d = vguest.short_run_dir()
    uds = d / "v.sock"
    hello = hv.listen(uds, 1234)     # before boot: the guest dials it at startup
    try:
        g = vguest.Guest(vguest.god_argv(elf, uds, cid=7, append="hello_port=1234"), d, uds)
    except BaseException:
        hello.close()
        shutil.rmtree(d, ignore_errors=True)
        raise
    try:
        g.wait_for("VGUEST READY", 60)
        g.hello = hello  # type: ignore[attr-defined]
        yield g
    finally:
        g.stop()
        hello.close()
        shutil.rmtree(d, ignore_errors=True)
    assert not uds.exists()


def _echo_once(uds: Path, seed: int) -> tuple[str, str]:
    rnd = random.Random(seed)
    blob = rnd.randbytes(rnd.randrange(1, 96 * 1024))
    with hv.connect(uds, 1024, timeout=20) as s:
        s.sendall(blob)
        back = hv.recv_exact(s, len(blob))
    return hashlib.sha256(blob).hexdigest(), hashlib.sha256(back).hexdigest()


def test_vsock_cid_reaches_guest(echo_guest):
    assert "VSOCK cid=7 " in echo_guest.text()


def test_vsock_echo_50_concurrent_connections(echo_guest):
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: _echo_once(echo_guest.uds, i), range(50)))
    bad = [i for i, (a, b) in enumerate(results) if a != b]
    assert not bad, f"hash mismatch on connections {bad}"


def test_vsock_port_nobody_listens_on_is_refused(echo_guest):
    with pytest.raises(hv.VsockError, match="refused"):
        hv.connect(echo_guest.uds, 4444, timeout=3, retry_until_ready=False)


def test_vsock_guest_initiated_reaches_path_port(echo_guest):
    c = echo_guest.hello.accept(30)
    with c:
        assert hv.recv_exact(c, 6) == b"HELLO\n"
        blob = os.urandom(20000)
        c.sendall(blob)                       # the guest echoes on its own connection too
        assert hv.recv_exact(c, len(blob)) == blob


def test_vsock_guest_initiated_without_listener_gets_rst(elf, run_dir):
    uds = run_dir / "v.sock"
    with vguest.Guest(vguest.god_argv(elf, uds, append="hello_port=999"), run_dir, uds) as g:
        g.wait_for("VSOCK hello refused", 60)


def test_vsock_orderly_shutdown_from_host(echo_guest):
    """Host half-closes after sending: every byte still comes back, then EOF (the guest
    answers the device's SHUTDOWN with RST once its echoes are out)."""
    import socket as so
    blob = os.urandom(300_000)
    with hv.connect(echo_guest.uds, 1024, timeout=20) as s:
        s.sendall(blob)
        s.shutdown(so.SHUT_WR)
        back = bytearray()
        s.settimeout(30)
        while chunk := s.recv(1 << 16):
            back += chunk
    assert bytes(back) == blob


def test_god_uses_ioeventfd_for_notifications(echo_guest):
    err = echo_guest.err_log.read_text()
    assert "no ioeventfd" not in err, err


def test_vsock_back_pressure_end_to_end(echo_guest):
    """The host sends 3 MiB and reads nothing for a while: the device's host-bound buffer
    fills, the guest runs out of credit and holds its echoes, the device stops reading the
    host socket, and the sender blocks. Then the host reads: every byte comes back in order."""
    import threading
    import time
    blob = random.Random(77).randbytes(3 << 20)
    with hv.connect(echo_guest.uds, 1024, timeout=20) as s:
        sender = threading.Thread(target=s.sendall, args=(blob,), daemon=True)
        sender.start()
        time.sleep(1.0)
        assert sender.is_alive(), "3 MiB went through with nobody reading: no back-pressure"
        back = hv.recv_exact(s, len(blob))
        sender.join(10)
    assert hashlib.sha256(back).digest() == hashlib.sha256(blob).digest()


@pytest.mark.parametrize(("args", "message"), [
    (["--vsock-uds", "{d}/v.sock", "--vsock-cid", "2"], "must be 3.."),
    (["--disk", "{d}/missing.img"], "No such file"),
    (["--disk", "{d}/x.img,bogus"], "expected PATH[,ro]"),
])
def test_god_rejects_bad_device_flags(elf, run_dir, args, message):
    argv = vguest.god_argv(elf, None) + [a.format(d=run_dir) for a in args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 4 and message in p.stderr, p.stderr
    assert not (run_dir / "v.sock").exists()
