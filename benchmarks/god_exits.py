#!/usr/bin/env python3
"""Exit throughput, IRQ round-trip latency and boot latency: god (its own irqchip, `split`,
and KVM's, `kernel`) vs a C loop vs QEMU (-accel kvm -M microvm, kernel-irqchip split/on).

One PVH ELF guest (32-bit, built here with gcc/ld) prints 'A', does N `out` to port 0x80,
prints 'B', does N 32-bit writes to unassigned MMIO at 0xd0000000, prints 'C' and exits
through isa-debug-exit. Each VMM runs it as a subprocess; the host timestamps the marker
bytes on the VMM's stdout, so all three are measured the same way. The C VMM does the same
ioctls as god (irqchip, PIT, KVM_RUN loop) with no Python. Boot time = spawn to first
serial byte, god vs QEMU microvm on the same PVH kernel.

IRQ round trip: a second PVH guest routes COM1's IRQ 4 through the IOAPIC (edge, vector
0x24) and echoes every received byte from its interrupt handler (then EOI, HLT). The host
writes one byte to the VMM's stdin and times until the echo is back on stdout: host input
-> UART -> IRQ -> guest ISR -> port exit -> stdout, the same path for every VMM. Median
and p90 of --irqs samples. Prints figures; asserts nothing.

    python benchmarks/god_exits.py [--n 100000] [--boots 5] [--irqs 200]
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "guests" / "god" / "src"))
sys.path.insert(0, str(ROOT))
from pytest_vmm.hypervisors.god import PYTHON_FLAGS, god_python_env
from pytest_vmm.report.metrics import add_json_argument, emit, open_json

GUEST_S = r"""
.section .note.Xen, "a"
.align 4
.long 4, 4, 18
.asciz "Xen"
.long _start
.text
.code32
.globl _start
_start:
    mov $0x3f8, %dx
    mov $'A', %al
    out %al, %dx
    mov $N, %ecx
    mov $0x80, %dx
1:  out %al, %dx
    dec %ecx
    jnz 1b
    mov $0x3f8, %dx
    mov $'B', %al
    out %al, %dx
    mov $N, %ecx
    mov $0xd0000000, %edi
2:  movl %eax, (%edi)
    dec %ecx
    jnz 2b
    mov $0x3f8, %dx
    mov $'C', %al
    out %al, %dx
    mov $0xf4, %dx
    mov $0, %al
    out %al, %dx
3:  hlt
    jmp 3b
"""

GUEST_LD = """
ENTRY(_start)
PHDRS { text PT_LOAD; note PT_NOTE; }
SECTIONS { . = 0x100000; .text : { *(.text*) } :text .note : { *(.note.Xen) } :text :note }
"""

# Echo guest: IDT (every vector -> EOI + iret; 0x24 -> echo), LAPIC enabled with LINT0
# masked, 8259 masked, IOAPIC pin 4 -> vector 0x24 edge to APIC 0, UART RX interrupt on.
IRQ_GUEST_S = r"""
.section .note.Xen, "a"
.align 4
.long 4, 4, 18
.asciz "Xen"
.long _start
.text
.code32
.globl _start
_start:
    mov $0x9f000, %esp
    mov %cs, %bx
    xor %ecx, %ecx
1:  lea default_isr, %eax
    cmp $0x24, %ecx
    jne 2f
    lea echo_isr, %eax
2:  mov %ax, idt(,%ecx,8)
    mov %bx, idt+2(,%ecx,8)
    movw $0x8e00, idt+4(,%ecx,8)
    shr $16, %eax
    mov %ax, idt+6(,%ecx,8)
    inc %ecx
    cmp $256, %ecx
    jne 1b
    lidt idtr
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    movl $0x1ff, 0xfee000f0
    movl $0x10000, 0xfee00350
    movl $0x18, 0xfec00000
    movl $0x24, 0xfec00010
    movl $0x19, 0xfec00000
    movl $0, 0xfec00010
    mov $0x3f9, %dx
    mov $1, %al
    out %al, %dx
    mov $0x3f8, %dx
    mov $'R', %al
    out %al, %dx
3:  sti
    hlt
    jmp 3b
echo_isr:
4:  mov $0x3fd, %dx
    in %dx, %al
    test $1, %al
    jz 5f
    mov $0x3f8, %dx
    in %dx, %al
    cmp $'q', %al
    je 6f
    out %al, %dx
    jmp 4b
5:  movl $0, 0xfee000b0
    mov $0x9f000, %esp      /* no iret (PVM's emulator refuses a 32-bit one): restart idle */
    jmp 3b
6:  mov $0xf4, %dx
    mov $0, %al
    out %al, %dx
    jmp 6b
default_isr:
    movl $0, 0xfee000b0
    mov $0x9f000, %esp
    jmp 3b
.data
.align 8
idtr: .word 256 * 8 - 1
      .long idt
.bss
.align 8
idt: .skip 256 * 8
"""

IRQ_GUEST_LD = """
ENTRY(_start)
PHDRS { text PT_LOAD; note PT_NOTE; }
SECTIONS { . = 0x100000; .text : { *(.text*) } :text .data : { *(.data*) } :text
           .bss : { *(.bss*) } :text .note : { *(.note.Xen) } :text :note }
"""

C_VMM = r"""
/* The same KVM work as god, in C: PVH-style 32-bit entry, irqchip + PIT, a KVM_RUN loop
   that writes COM1 output to stdout, ignores other ports and answers MMIO reads 0xff. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "rb"); unsigned long load = strtoul(argv[2], 0, 0), entry = strtoul(argv[3], 0, 0);
    size_t mem_size = 128 << 20;
    int kvm = open("/dev/kvm", O_RDWR), vm = ioctl(kvm, KVM_CREATE_VM, 0);
    char *mem = mmap(0, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    fread(mem + load, 1, mem_size - load, f);
    struct kvm_userspace_memory_region r = { 0, 0, 0, mem_size, (unsigned long)mem };
    ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
    ioctl(vm, KVM_CREATE_IRQCHIP, 0);
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    ioctl(vm, KVM_CREATE_PIT2, &pit);
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    struct kvm_sregs s; ioctl(cpu, KVM_GET_SREGS, &s);
    struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 11, .present = 1, .db = 1, .s = 1, .g = 1 };
    struct kvm_segment ds = cs; ds.type = 3; ds.selector = 0x18;
    s.cs = cs; s.ds = s.es = s.fs = s.gs = s.ss = ds; s.cr0 = 0x31; s.cr4 = 0; s.efer = 0;
    s.tr.type = 11; s.tr.present = 1; s.tr.limit = 0x67;
    ioctl(cpu, KVM_SET_SREGS, &s);
    struct kvm_regs g = { .rip = entry, .rflags = 2, .rsp = 0x9f000 }; ioctl(cpu, KVM_SET_REGS, &g);
    for (;;) {
        if (ioctl(cpu, KVM_RUN, 0) < 0) { perror("KVM_RUN"); return 10; }
        char *p = (char *)run + run->io.data_offset;
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8) write(1, p, 1);
            else if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0xf4) return (p[0] << 1) | 1;
            else if (run->io.direction == KVM_EXIT_IO_IN) memset(p, 0xff, run->io.size);
            break;
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write) memset(run->mmio.data, 0xff, 8);
            break;
        default:
            fprintf(stderr, "exit %d\n", run->exit_reason); return 12;
        }
    }
}
"""


def build(tmp: Path, n: int) -> tuple[Path, Path, int, int]:
    from god.boot import elf as E
    from god.boot.pvh import pvh_entry

    (tmp / "g.S").write_text(GUEST_S.replace("$N", f"${n}"))
    (tmp / "g.ld").write_text(GUEST_LD)
    subprocess.run(["gcc", "-c", "-m32", str(tmp / "g.S"), "-o", str(tmp / "g.o")], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-T", str(tmp / "g.ld"), "--build-id=none",
                    str(tmp / "g.o"), "-o", str(tmp / "guest.elf")], check=True)
    data = (tmp / "guest.elf").read_bytes()
    elf = E.parse(data)
    seg = next(s for s in elf.segments if s.type == E.PT_LOAD)
    (tmp / "guest.flat").write_bytes(data[seg.offset:seg.offset + seg.filesz])
    (tmp / "vmm.c").write_text(C_VMM)
    subprocess.run(["gcc", "-O2", "-o", str(tmp / "cvmm"), str(tmp / "vmm.c")], check=True)
    return tmp / "guest.elf", tmp / "cvmm", seg.paddr, pvh_entry(elf) or 0


def build_irq_guest(tmp: Path) -> Path:
    (tmp / "irq.S").write_text(IRQ_GUEST_S)
    (tmp / "irq.ld").write_text(IRQ_GUEST_LD)
    subprocess.run(["gcc", "-c", "-m32", str(tmp / "irq.S"), "-o", str(tmp / "irq.o")], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-T", str(tmp / "irq.ld"), "--build-id=none",
                    str(tmp / "irq.o"), "-o", str(tmp / "irq.elf")], check=True)
    return tmp / "irq.elf"


def irq_round_trips(argv: list[str], samples: int, timeout: float = 60) -> list[float]:
    """Seconds from writing one byte to the VMM's stdin to its echo on stdout."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdin is not None and p.stdout is not None
    out = p.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(out, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout

    def read_byte() -> bytes:
        while time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                b = os.read(out, 1)
                if not b:
                    raise RuntimeError(f"{argv[0]} exited: {p.stderr.read().decode()[-300:]}")  # type: ignore[union-attr]
                return b
        raise RuntimeError(f"{argv[0]}: no answer within {timeout} s")

    try:
        while read_byte() != b"R":
            pass
        times = []
        for i in range(samples):
            c = bytes([ord("a") + i % 16])
            t0 = time.monotonic()
            os.write(p.stdin.fileno(), c)
            while read_byte() != c:
                pass
            times.append(time.monotonic() - t0)
            time.sleep(0.002)  # let the guest go back to HLT: the idle-to-IRQ path is timed
        os.write(p.stdin.fileno(), b"q")
        p.wait(timeout=10)
        return times
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sel.close()


def timed(argv: list[str], timeout: float = 120) -> dict[str, float]:
    """Spawn argv, timestamp marker bytes A/B/C on stdout; times relative to spawn."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    marks: dict[str, float] = {}
    try:
        assert p.stdout is not None
        while len(marks) < 3:
            b = p.stdout.read(1)
            if not b:
                break
            c = b.decode(errors="replace")
            if c in "ABC" and c not in marks:
                marks[c] = time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                break
        # wait4 instead of wait: the child's rusage gives CPU time, which load does not inflate
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        marks["user"], marks["sys"] = ru.ru_utime, ru.ru_stime
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if len([k for k in marks if k in "ABC"]) < 3:
        err = p.stderr.read().decode(errors="replace") if p.stderr else ""
        raise RuntimeError(f"{argv[0]}: markers {marks}, status {p.returncode}: {err[-400:]}")
    return marks


def qemu_argv(kernel: Path, irqchip: str = "on") -> list[str] | None:
    q = shutil.which("qemu-system-x86_64")
    if q is None:
        return None
    return [q, "-accel", f"kvm,kernel-irqchip={irqchip}", "-cpu", "host,arch-capabilities=off",
            "-M", "microvm",
            "-m", "128M", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-no-reboot", "-kernel", str(kernel)]


def irq_round_trip_report(tmp: Path, god_argv: Callable[[Path], list[str]], samples: int) -> None:
    """IRQ latency side by side: god split vs god kernel vs QEMU split vs QEMU on."""
    irq_elf = build_irq_guest(tmp)
    god_irq = god_argv(irq_elf)
    targets: dict[str, list[str] | None] = {
        "god split": god_irq, "god kernel": [*god_irq, "--irqchip", "kernel"],
        "qemu split": qemu_argv(irq_elf, "split"), "qemu on": qemu_argv(irq_elf, "on")}
    print(f"# host-injected IRQ round trip (byte in -> IRQ 4 via IOAPIC -> echo out), "
          f"{samples} samples; load average {os.getloadavg()[0]:.1f}")
    medians: dict[str, float] = {}
    for name, argv in targets.items():
        if argv is None:
            continue
        try:
            times = sorted(irq_round_trips(argv, samples))
        except Exception as e:
            print(f"{name:>13}: failed: {e}")
            continue
        medians[name] = statistics.median(times)
        p90 = times[int(len(times) * 0.9) - 1]
        print(f"{name:>13}: median {medians[name] * 1e6:8.0f} us   p90 {p90 * 1e6:8.0f} us   "
              f"min {times[0] * 1e6:8.0f} us")
    if "god split" in medians and "god kernel" in medians:
        print(f"IRQ latency god split / god kernel: "
              f"{medians['god split'] / medians['god kernel']:.2f}x (goal <= 2x)")
    if "qemu split" in medians and "qemu on" in medians:
        print(f"IRQ latency qemu split / qemu on: {medians['qemu split'] / medians['qemu on']:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="exits per loop")
    ap.add_argument("--boots", type=int, default=5, help="boot-time samples per VMM")
    ap.add_argument("--irqs", type=int, default=200, help="IRQ round trips per VMM")
    ap.add_argument("--only-irq", action="store_true", help="just the IRQ round trips")
    ap.add_argument("--rounds", type=int, default=3,
                    help="exit-loop runs per VMM, interleaved; the best is reported (on a "
                         "shared machine the best run is the one least disturbed)")
    add_json_argument(ap)
    a = ap.parse_args()
    open_json(a.json)
    with tempfile.TemporaryDirectory(prefix="god-bench-") as d:
        tmp = Path(d)
        elf, cvmm, load, entry = build(tmp, a.n)
        # god starts as the plugin starts it (python -S, god's package on PYTHONPATH), so the
        # boot figure is the one a suite sees.
        os.environ.update(god_python_env())

        def god_argv(kernel: Path) -> list[str]:
            return [sys.executable, *PYTHON_FLAGS, "-m", "god", "run", str(kernel),
                    "--mem", "128", "--serial", "stdio"]

        god = god_argv(elf)
        if a.only_irq:
            irq_round_trip_report(tmp, god_argv, a.irqs)
            return 0
        vmms = {"god": god, "god-kernel": [*god, "--irqchip", "kernel"],
                "c-loop": [str(cvmm), str(tmp / "guest.flat"), hex(load), hex(entry)]}
        q = qemu_argv(elf)
        if q:
            vmms["qemu-microvm"] = q
        env_note = os.environ.get("GOD_BENCH_NOTE", "")
        print(f"# god exit benchmark: {a.n} exits per loop {env_note}")
        print("# god = god run --irqchip split (its own PIC/IOAPIC/PIT, the default); "
              "god-kernel = --irqchip kernel")
        rates: dict[str, tuple[float, float]] = {}
        failed: set[str] = set()
        cpu: dict[str, tuple[float, float]] = {}
        for _ in range(a.rounds):
            for name, argv in vmms.items():
                if name in failed:
                    continue
                try:
                    m = timed(argv)
                except Exception as e:
                    print(f"{name:>13}: failed: {e}")
                    failed.add(name)
                    continue
                pio, mmio = a.n / (m["B"] - m["A"]), a.n / (m["C"] - m["B"])
                emit("exits_per_s", pio, "exits/s", name, kind="port I/O")
                emit("exits_per_s", mmio, "exits/s", name, kind="MMIO")
                old = rates.get(name, (0.0, 0.0))
                rates[name] = (max(old[0], pio), max(old[1], mmio))
                u, sy = cpu.get(name, (1e9, 1e9))
                cpu[name] = (min(u, m["user"]), min(sy, m["sys"]))
        print(f"# best of {a.rounds} interleaved runs; load average {os.getloadavg()[0]:.1f}")
        for name, (pio, mmio) in rates.items():
            print(f"{name:>13}: port I/O {pio:>9,.0f} exits/s ({1e6 / pio:5.2f} us)   "
                  f"MMIO {mmio:>9,.0f} exits/s ({1e6 / mmio:5.2f} us)")
        if "god" in rates:
            for ref in ("god-kernel", "c-loop", "qemu-microvm"):
                if ref in rates:
                    print(f"god / {ref}: port I/O {rates['god'][0] / rates[ref][0]:.2f}x, "
                          f"MMIO {rates['god'][1] / rates[ref][1]:.2f}x")
        irq_round_trip_report(tmp, god_argv, a.irqs)
        # Boot latency: a 1-exit guest, spawn to first serial byte.
        (tmp / "small").mkdir()
        small = build(tmp / "small", 1)[0]
        boots: dict[str, float] = {}
        boot_cpu: dict[str, tuple[float, float]] = {}
        boot_argvs: dict[str, list[str] | None] = {"god": god_argv(small),
                                                   "qemu-microvm": qemu_argv(small)}
        for name, boot_argv in boot_argvs.items():
            if boot_argv is None:
                continue
            samples = []
            for _ in range(a.boots):
                try:
                    bm = timed(boot_argv)
                    samples.append(bm["A"])
                    emit("boot_ms", bm["A"] * 1000, "ms", name)
                    ou, osy = boot_cpu.get(name, (1e9, 1e9))
                    boot_cpu[name] = (min(ou, bm["user"]), min(osy, bm["sys"]))
                except Exception as e:
                    print(f"boot {name}: failed: {e}")
                    break
            if samples:
                boots[name] = statistics.median(samples)
                print(f"boot to first serial byte, {name:>13}: median {boots[name] * 1000:6.1f} ms "
                      f"(min {min(samples) * 1000:.1f}, n={len(samples)})")
        if len(boots) == 2:
            print(f"boot ratio god / qemu-microvm: {boots['god'] / boots['qemu-microvm']:.2f}")
        # CPU time is what load does not inflate: (run CPU - CPU of the same VMM booting the
        # 1-exit guest) / 2N. The C loop's startup is negligible.
        print("# CPU time per exit, startup subtracted (robust to a loaded machine):")
        per: dict[str, float] = {}
        for name, (u, sy) in cpu.items():
            bu, bs = boot_cpu.get(name, (0.0, 0.0))
            pu, ps = max(u - bu, 0) / (2 * a.n) * 1e6, max(sy - bs, 0) / (2 * a.n) * 1e6
            per[name] = pu + ps
            emit("cpu_per_exit_us", pu + ps, "us", name)
            print(f"{name:>13}: user {pu:5.2f} us + sys {ps:5.2f} us = {pu + ps:5.2f} us")
        if "god" in per:
            for ref in ("god-kernel", "c-loop", "qemu-microvm"):
                if ref in per:
                    print(f"god / {ref} by CPU per exit: {per[ref] / per['god']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
