//! COM1 (16550) at 0x3f8 and port I/O for ring 3 (trap-and-emulate at CPL3, see boot.S).
//! Transmit is polled (in boot.S's `rep outsb` emulation); receive is interrupt-driven (intr.rs).
use core::arch::asm;

pub const COM1: u16 = 0x3f8;

// Plain in/out: at CPL3 they raise #GP and boot.S's handler performs them (trap-and-emulate;
// PVM ignores IOPL). The same code would run unchanged where IOPL works.
#[inline(always)]
pub fn outb(port: u16, value: u8) {
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}
#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    unsafe { asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags)) }
    v
}
#[inline(always)]
pub fn outw(port: u16, value: u16) {
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
}
#[inline(always)]
pub fn inw(port: u16) -> u16 {
    let v: u16;
    unsafe { asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags)) }
    v
}
#[inline(always)]
pub fn outl(port: u16, value: u32) {
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}
#[inline(always)]
pub fn inl(port: u16) -> u32 {
    let v: u32;
    unsafe { asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags)) }
    v
}

pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 0x01); // 115200
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0x07); // FIFO on, both cleared, RX trigger at 1 byte
    outb(COM1 + 4, 0x0B); // DTR, RTS, OUT2 (OUT2 gates the IRQ line on a PC)
}

/// Write bytes to COM1 with one `rep outsb` (one trap for the whole buffer at CPL3).
pub fn write(data: &[u8]) {
    if !data.is_empty() {
        unsafe {
            asm!("rep outsb", inout("rsi") data.as_ptr() => _, inout("rcx") data.len() => _, in("dx") COM1,
                 options(nostack, readonly, preserves_flags))
        }
    }
}

/// isa-debug-exit (QEMU and god): the VMM exits with `(status << 1) | 1`.
pub fn exit(status: u32) -> ! {
    outl(0xf4, status);
    loop {
        core::hint::spin_loop();
    }
}
