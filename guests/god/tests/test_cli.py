"""The `god run` command as the plugin uses it: serial console on a pty (pexpect), host input
raising UART RX interrupts, raw mode restored, SIGTERM, idle cost, unix/file consoles."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import termios
import time

import pexpect
import pytest
from guestbuild import build_c64
from waits import scaled

ECHO_C = r"""
static volatile u8 buf[64]; static volatile int head, tail;
static void uart_isr(u64 v) {
    while (inb(0x3fd) & 1) { buf[head % 64] = inb(0x3f8); head++; }
    pic_eoi(4);
}
int main(void) {
    idt_init(); pic_init(); pic_unmask(4);
    handlers[0x24] = uart_isr;
    outb(0x3f9, 0x01);
    puts("ECHO READY\n");
    for (;;) {
        cli();
        if (tail == head) { sti_hlt(); continue; }
        u8 c = buf[tail % 64]; tail++;
        sti();
        putc('<'); putc(c); putc('>');
        if (c == 'q') return 5;
    }
}
"""

IDLE_C = r"""
int main(void) {
    puts("IDLE\n");
    for (;;) __asm__ volatile("cli; hlt");   /* in-kernel irqchip: HLT never exits */
}
"""


def _god(*args: str) -> list[str]:
    return [sys.executable, "-m", "god", "run", *args]


@pytest.fixture
def echo_guest(gcc, tmp_path):
    return build_c64(tmp_path, ECHO_C, "echo")


def test_pexpect_console_input_reaches_uart_rx(kvm, echo_guest):
    child = pexpect.spawn(_god(str(echo_guest), "--flat-addr", "0x100000")[0],
                          _god(str(echo_guest), "--flat-addr", "0x100000")[1:], timeout=scaled(30))
    try:
        child.expect(b"ECHO READY")
        child.send(b"ab")
        child.expect(re_bytes(b"<a><b>"))
        child.send(b"q")
        child.expect(re_bytes(b"<q>"))
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == (5 << 1) | 1


def re_bytes(b: bytes) -> bytes:
    import re
    return re.escape(b)


def test_raw_mode_only_on_tty_and_restored(kvm, echo_guest):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen(_god(str(echo_guest), "--flat-addr", "0x100000"), stdin=slave,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.read(len(b"ECHO READY\n")) == b"ECHO READY\n"
        during = termios.tcgetattr(slave)
        assert not during[3] & termios.ICANON and not during[3] & termios.ECHO
        assert during[3] & termios.ISIG  # Ctrl-C still stops god, as with QEMU's stdio
        os.write(master, b"q")
        assert p.stdout.read(3) == b"<q>"
        assert p.wait(scaled(30)) == 11
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert after == before


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_halted_guest_is_idle_and_sigterm_stops_cleanly(kvm, gcc, tmp_path):
    guest = build_c64(tmp_path, IDLE_C, "idle")
    p = subprocess.Popen(_god(str(guest), "--flat-addr", "0x100000", "--cpus", "2"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.read(5) == b"IDLE\n"
        time.sleep(0.3)
        c0, t0 = _cpu_seconds(p.pid), time.monotonic()
        time.sleep(1.5)
        used = (_cpu_seconds(p.pid) - c0) / (time.monotonic() - t0)
        assert used < 0.05, f"halted guest used {used:.1%} of a core"
        p.send_signal(signal.SIGTERM)
        assert p.wait(scaled(5)) == 0
        assert b"terminating on signal 15" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigint_stops_cleanly(kvm, gcc, tmp_path):
    guest = build_c64(tmp_path, IDLE_C, "idle")
    p = subprocess.Popen(_god(str(guest), "--flat-addr", "0x100000"), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.read(5) == b"IDLE\n"
        p.send_signal(signal.SIGINT)
        assert p.wait(scaled(5)) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_file_serial(kvm, echo_guest, tmp_path):
    log = tmp_path / "console.log"
    p = subprocess.Popen(_god(str(echo_guest), "--flat-addr", "0x100000", "--serial", f"file:{log}"),
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + scaled(20)
        while time.monotonic() < deadline and b"READY" not in (log.read_bytes() if log.exists() else b""):
            time.sleep(0.05)
        assert log.read_bytes() == b"ECHO READY\n"
    finally:
        p.terminate()
        assert p.wait(scaled(5)) == 0


def test_unix_socket_serial(kvm, echo_guest, tmp_path):
    path = tmp_path / "console.sock"
    p = subprocess.Popen(_god(str(echo_guest), "--flat-addr", "0x100000", "--serial", f"unix:{path}"),
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + scaled(20)
        s = socket.socket(socket.AF_UNIX)
        while True:  # the path exists from bind(); connect works once god listen()s
            try:
                s.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        s.settimeout(scaled(20))
        got = b""
        while b"READY\n" not in got:
            got += s.recv(100)
        assert got == b"ECHO READY\n"   # output from before we connected was kept
        s.sendall(b"xq")
        while b"<q>" not in got:
            got += s.recv(100)
        assert got.endswith(b"<x><q>")
        assert p.wait(scaled(10)) == 11
        s.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not path.exists()


def test_bad_kernel_is_a_clear_error(kvm, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 4096)
    p = subprocess.run(_god(str(junk)), capture_output=True, timeout=scaled(30), stdin=subprocess.DEVNULL, check=False)
    assert p.returncode == 4
    assert p.stderr.startswith(b"god: error: unknown kernel format")
    p = subprocess.run(_god(str(tmp_path / "missing")), capture_output=True, timeout=scaled(30), check=False)
    assert p.returncode == 4 and b"No such file" in p.stderr
    p = subprocess.run(_god(str(junk), "--cpus", "100000"), capture_output=True, timeout=scaled(30), check=False)
    assert p.returncode == 4 and b"--cpus 100000" in p.stderr


@pytest.mark.parametrize("irqchip, expected", [
    ("split", b"god: stats: pit_delivered=0 pit_coalesced=0 pit_ack_timeouts=0 pit_withdrawn=0 pit_backlog=0"),
    ("kernel", b"god: stats: none"),
])
def test_stats_line_at_exit(kvm, gcc, tmp_path, irqchip, expected):
    """`god run --stats`: one line of god's own device counters after the exit reason, then
    where each vCPU god stopped was, with its registers and top stack words (a hung guest
    from a slow one, and the lock a spinning one waits for). A guest that never loads a
    PIT count gets no IRQ0 (8254 datasheet: mode 0/2/3 counting starts when the count is
    written); the kernel irqchip's counters are the host's, not god's."""
    guest = build_c64(tmp_path, IDLE_C, "idle")
    p = subprocess.Popen(_god(str(guest), "--flat-addr", "0x100000", "--irqchip", irqchip, "--stats"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.read(5) == b"IDLE\n"
        p.send_signal(signal.SIGINT)
        assert p.wait(scaled(5)) == 0
        lines = p.stderr.read().splitlines()
        at = lines.index(expected)
        assert b"terminating on signal" in lines[at - 1]
        stopped = lines[at + 1:]
        assert stopped and all(re.fullmatch(rb"god: vCPU \d+ stopped at rip=0x[0-9a-f]+ \(ring 0\), code: ([0-9a-f ]+|unreadable)"
                                            rb" rflags=0x[0-9a-f]+ \(interrupts o(n|ff)\), \d+ exits"
                                            rb"; rax=0x[0-9a-f]+( r[a-z0-9]+=0x[0-9a-f]+){15}"
                                            rb"; stack: (0x[0-9a-f]+ ){0,63}(0x[0-9a-f]+|\?)", line)
                               for line in stopped), stopped
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
