"""Integration: tiny guests under KVM (serial, exit port, MMIO exits)."""

from __future__ import annotations

from guestbuild import build_asm, build_c64, run_guest

HELLO = """
.globl _start
_start:
    lea msg(%rip), %rsi
1:  movb (%rsi), %al
    test %al, %al
    jz 2f
    mov $0x3f8, %dx
    out %al, %dx
    inc %rsi
    jmp 1b
2:  mov $0xf4, %dx
    mov $21, %al
    out %al, %dx
    hlt
msg: .asciz "hello from god\\n"
"""


def test_serial_hello_and_exit_port(kvm, gcc, tmp_path):
    r = run_guest(build_asm(tmp_path, HELLO, "hello", 0x100000))
    assert r.output == b"hello from god\n"
    assert r.result.status == (21 << 1) | 1 and r.result.kind == "exit-port"


def test_real_mode_flat_binary(kvm, gcc, tmp_path):
    src = """
.globl _start
_start:
    mov $0x3f8, %dx
    mov $'R', %al
    out %al, %dx
    mov %cs, %ax        /* god sets CS = addr >> 4 */
    mov $0xf4, %dx
    shr $8, %ax         /* 0x800 >> 8 = 8 */
    out %al, %dx
    hlt
"""
    binf = build_asm(tmp_path, src, "real", 0, code16=True)
    r = run_guest(binf, flat_addr=0x8000, flat_mode=16)
    assert r.output == b"R"
    assert r.result.status == (8 << 1) | 1


MMIO_C = r"""
#define BASE 0xd0000000UL
int main(void) {
    MMIO(u8,  BASE + 0x01) = 0x11;
    MMIO(u16, BASE + 0x02) = 0x2233;
    MMIO(u32, BASE + 0x04) = 0x44556677;
    MMIO(u64, BASE + 0x08) = 0x8899aabbccddeeffUL;
    u64 a = MMIO(u8,  BASE + 0x10);
    u64 b = MMIO(u16, BASE + 0x12);
    u64 c = MMIO(u32, BASE + 0x14);
    u64 d = MMIO(u64, BASE + 0x18);
    u64 e = MMIO(u32, 0xd0100000UL);   /* unassigned: all ones */
    MMIO(u32, 0xd0100000UL) = 5;       /* unassigned: ignored */
    puthex(a); putc(' '); puthex(b); putc(' '); puthex(c); putc(' '); puthex(d);
    putc(' '); puthex(e); putc('\n');
    return 3;
}
"""


class Recorder:
    """An MMIO device answering offset-derived values and recording every access."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        value = int.from_bytes(bytes((0xA0 + offset + i) & 0xFF for i in range(size)), "little")
        self.log.append(("r", offset, size, value))
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("w", offset, size, value))


def test_mmio_exits_all_sizes(kvm, gcc, tmp_path):
    dev = Recorder()
    r = run_guest(build_c64(tmp_path, MMIO_C), setup=lambda m: m.mmio.register(0xD0000000, 0x1000, dev))
    assert r.result.status == 7, r.result
    assert dev.log == [
        ("w", 0x01, 1, 0x11), ("w", 0x02, 2, 0x2233), ("w", 0x04, 4, 0x44556677),
        ("w", 0x08, 8, 0x8899AABBCCDDEEFF),
        ("r", 0x10, 1, 0xB0), ("r", 0x12, 2, 0xB3B2), ("r", 0x14, 4, 0xB7B6B5B4),
        ("r", 0x18, 8, 0xBFBEBDBCBBBAB9B8),
    ]
    assert r.text.split() == ["0x00000000000000b0", "0x000000000000b3b2", "0x00000000b7b6b5b4",
                              "0xbfbebdbcbbbab9b8", "0x00000000ffffffff"]
    assert r.machine is not None


REP_C = r"""
int main(void) {
    static const char msg[] = "rep-outsb\n";
    u16 buf[4];
    __asm__ volatile("rep outsb" :: "S"(msg), "c"(sizeof(msg) - 1), "d"(0x3f8) : "memory");
    __asm__ volatile("rep insw" :: "D"(buf), "c"(4), "d"(0x530) : "memory");
    u32 l = inl(0x534);
    u8 b = inb(0x537);
    outw(0x532, 0xbeef);
    outl(0x534, 0x12345678);
    return (buf[0] == 0x1000 && buf[1] == 0x1001 && buf[2] == 0x1002 && buf[3] == 0x1003
            && l == 0x2004 && b == 0x07) ? 1 : 2;
}
"""


class PortDev:
    """Reads return 0x1000 + n for offset 0 (counting), (0x2000 | offset) otherwise."""

    def __init__(self) -> None:
        self.n = 0
        self.log: list[tuple[str, int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        if offset == 0:
            v = 0x1000 + self.n
            self.n += 1
        else:
            v = 0x2000 | offset
        self.log.append(("r", offset, size, v))
        return v

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("w", offset, size, value))


def test_port_io_sizes_and_rep_string_io(kvm, gcc, tmp_path):
    dev = PortDev()
    r = run_guest(build_c64(tmp_path, REP_C, "rep"), setup=lambda m: m.pio.register(0x530, 8, dev))
    assert r.output == b"rep-outsb\n"
    assert r.result.status == 3, (r.result, dev.log)
    assert dev.log[-2:] == [("w", 2, 2, 0xBEEF), ("w", 4, 4, 0x12345678)]
    assert [e for e in dev.log if e[1] == 0] == [("r", 0, 2, 0x1000 + i) for i in range(4)]
