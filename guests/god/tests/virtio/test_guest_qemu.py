"""The same test guest under QEMU 7.2 with our vhost-user back-end serving virtio-vsock
(vhost-user-vsock-device on microvm, guest RAM shared through memfd)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import vguest

from pytest_vmm import vsock as hv

QEMU = "qemu-system-x86_64"


def qemu_argv(elf, vu_sock, append: str, mem: int = 32, accel: str = "kvm") -> list[str]:
    cpu = "host,arch-capabilities=off" if accel == "kvm" else "max"
    return [QEMU, "-M", "microvm", "-accel", accel, "-cpu", cpu, "-m", str(mem),
            "-object", f"memory-backend-memfd,id=mem,size={mem}M,share=on",
            "-machine", "memory-backend=mem",
            # microvm's virtio-mmio is legacy (version 1) unless told otherwise.
            "-global", "virtio-mmio.force-legacy=false",
            "-chardev", f"socket,id=vu,path={vu_sock}",
            "-device", "vhost-user-vsock-device,chardev=vu",
            "-kernel", str(elf), "-append", append,
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


def start_backend(run_dir, uds, cid: int) -> subprocess.Popen:
    vu = run_dir / "vu.sock"
    with (run_dir / "backend.log").open("wb") as log:
        p = subprocess.Popen([sys.executable, "-m", "god.vhost_user", "--socket", str(vu),
                              "--vsock-uds", str(uds), "--guest-cid", str(cid)],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 15
    while not vu.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise AssertionError((run_dir / "backend.log").read_text())
        time.sleep(0.02)
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@pytest.fixture(scope="module")
def qemu_guest(tmp_path_factory):
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} not installed")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm")
    if not vguest.have_toolchain():
        pytest.skip("gcc not installed")
    elf = vguest.build(tmp_path_factory.mktemp("vguest-q"))
    d = vguest.short_run_dir()
    uds = d / "v.sock"
    hello = backend = g = None
    try:
        hello = hv.listen(uds, 1234)
        backend = start_backend(d, uds, 11)
        g = vguest.Guest(qemu_argv(elf, d / "vu.sock", "hello_port=1234"), d, uds)
        g.wait_for("VGUEST READY", 60)
        g.hello = hello  # type: ignore[attr-defined]
        g.backend = backend  # type: ignore[attr-defined]
        yield g
    finally:
        if g is not None:
            g.stop()
        if backend is not None:
            stop(backend)
        if hello is not None:
            hello.close()
        shutil.rmtree(d, ignore_errors=True)
    assert backend.returncode == 0, "back-end did not exit cleanly on SIGTERM"
    assert not uds.exists()


def test_qemu_vsock_cid_from_backend_config(qemu_guest):
    assert "VSOCK cid=11 " in qemu_guest.text()


def test_qemu_vsock_echo_50_concurrent_connections(qemu_guest):
    def once(seed: int) -> bool:
        rnd = random.Random(seed)
        blob = rnd.randbytes(rnd.randrange(1, 64 * 1024))
        with hv.connect(qemu_guest.uds, 1024, timeout=20) as s:
            s.sendall(blob)
            back = hv.recv_exact(s, len(blob))
        return hashlib.sha256(blob).digest() == hashlib.sha256(back).digest()

    with ThreadPoolExecutor(50) as pool:
        ok = list(pool.map(once, range(50)))
    assert all(ok), [i for i, k in enumerate(ok) if not k]


def test_qemu_vsock_guest_initiated(qemu_guest):
    with qemu_guest.hello.accept(30) as c:
        assert hv.recv_exact(c, 6) == b"HELLO\n"
        c.sendall(b"x" * 5000)
        assert hv.recv_exact(c, 5000) == b"x" * 5000


def test_qemu_vsock_refused_port(qemu_guest):
    with pytest.raises(hv.VsockError, match="refused"):
        hv.connect(qemu_guest.uds, 4444, timeout=3, retry_until_ready=False)
