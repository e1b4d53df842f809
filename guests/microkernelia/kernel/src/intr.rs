//! Interrupt controllers, programmed from ring 3: the 8259 (remapped, fully masked), the LAPIC
//! and IOAPIC (xAPIC MMIO through the user-accessible identity map), the MP table (which IOAPIC
//! pin each ISA IRQ reaches), and the counters `boot.S`'s interrupt stubs keep.
//!
//! Vectors (docs/agent-protocol.md): IOAPIC line L -> 0x40 + L, the console UART (line 4) ->
//! 0xe4, LAPIC timer 0xef, spurious 0xff, 8259 at 0x20..0x2f. Ring 3 runs with IF=1; `cli`,
//! `sti` and `hlt` are emulated by the #GP handler (see boot.S).
use crate::serial::{inb, outb, COM1};
use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

pub const VEC_LINE_BASE: u32 = 0x40;
pub const VEC_UART: u32 = 0xE4;
pub const VEC_TIMER: u32 = 0xEF;
/// Virtio-mmio transports' lines, unmasked only while the scheduler sleeps (sched.rs).
pub const VEC_VIRTIO: u32 = 0xE5;
/// The LAPIC one-shot that bounds one idle sleep of the scheduler: kept off VEC_TIMER so the
/// agent's timer counts see only the timers it armed.
pub const VEC_IDLE: u32 = 0xEE;
pub const VEC_SPURIOUS: u32 = 0xFF;
pub const VEC_PIC_BASE: u8 = 0x20;
pub const UART_LINE: u32 = 4;
pub const NLINES: u32 = 24;
const LAPIC: u64 = 0xFEE0_0000;
const IOAPIC: u64 = 0xFEC0_0000;
const RING: u32 = 4096;

extern "C" {
    static mut irq_counts: [u32; 256];
    static mut irq_first_tsc: [u64; 256];
    static mut irq_last_tsc: [u64; 256];
    static mut irq_manual: [u8; 256];
    static mut irq_held: u32;
    static mut irq_total: u64;
    static mut uart_ring: [u8; 4096];
    static mut uart_head: u32;
    static mut uart_tail: u32;
    static mut uart_rx_bytes: u32;
    static mut uart_rx_irqs: u32;
    static mut uart_overruns: u32;
    static mut uart_dropped: u32;
    fn g_rd8(addr: u64, out: *mut u64) -> u64;
    fn g_rd16(addr: u64, out: *mut u64) -> u64;
    fn g_rd32(addr: u64, out: *mut u64) -> u64;
    fn g_rd64(addr: u64, out: *mut u64) -> u64;
    fn g_wr8(addr: u64, value: u64) -> u64;
    fn g_wr16(addr: u64, value: u64) -> u64;
    fn g_wr32(addr: u64, value: u64) -> u64;
    fn g_wr64(addr: u64, value: u64) -> u64;
}

struct State {
    line_pins: [u8; NLINES as usize],
    line_routed: [bool; NLINES as usize],
    apic_id: u8,
    mptable: bool,
}

static mut STATE: State = State { line_pins: [0; NLINES as usize], line_routed: [false; NLINES as usize], apic_id: 0, mptable: false };

fn st() -> &'static mut State {
    // Single vCPU; only ring-3 code (never the interrupt stubs) touches it.
    unsafe { &mut *addr_of_mut!(STATE) }
}

// ------------------------------------------------------------------------- CPU
/// `cli` at CPL3: one #GP trap, emulated by clearing ring 3's saved IF.
#[inline(always)]
pub fn cli() {
    unsafe { asm!("cli", options(nostack)) }
}
#[inline(always)]
pub fn sti() {
    unsafe { asm!("sti", options(nostack)) }
}

/// Interrupts taken so far (all vectors); pass it to `wait` to close the check-then-sleep race.
pub fn generation() -> u64 {
    unsafe { read_volatile(addr_of!(irq_total)) }
}

/// Sleep in HLT (ring 0, interrupts on) until the next interrupt, unless one came since
/// `generation()` returned `gen`.
pub fn wait(gen: u64) {
    unsafe { asm!("hlt", in("rax") gen, options(nostack)) }
}

// ------------------------------------------------------------------------- counters
pub fn count(vector: u32) -> u32 {
    unsafe { read_volatile(addr_of!(irq_counts[vector as usize & 255])) }
}
pub fn first_tsc(vector: u32) -> u64 {
    unsafe { read_volatile(addr_of!(irq_first_tsc[vector as usize & 255])) }
}
pub fn last_tsc(vector: u32) -> u64 {
    unsafe { read_volatile(addr_of!(irq_last_tsc[vector as usize & 255])) }
}
/// Zero one vector's count and first/last TSC (interrupts off).
pub fn reset_vector(vector: u32) {
    cli();
    let v = vector as usize & 255;
    unsafe {
        write_volatile(addr_of_mut!(irq_counts[v]), 0);
        write_volatile(addr_of_mut!(irq_first_tsc[v]), 0);
        write_volatile(addr_of_mut!(irq_last_tsc[v]), 0);
    }
    sti();
}
pub fn reset_all() {
    cli();
    for v in 0..256 {
        unsafe {
            write_volatile(addr_of_mut!(irq_counts[v]), 0);
            write_volatile(addr_of_mut!(irq_first_tsc[v]), 0);
            write_volatile(addr_of_mut!(irq_last_tsc[v]), 0);
        }
    }
    sti();
}

/// Send the EOIs held back by manual-EOI lines; returns how many.
pub fn eoi_held() -> u32 {
    cli();
    let n = unsafe { read_volatile(addr_of!(irq_held)) };
    unsafe { write_volatile(addr_of_mut!(irq_held), 0) };
    for _ in 0..n {
        lapic_eoi();
    }
    sti();
    n
}

// ------------------------------------------------------------------------- console RX ring
pub fn rx_available() -> bool {
    unsafe { read_volatile(addr_of!(uart_head)) != read_volatile(addr_of!(uart_tail)) }
}

pub fn rx_getc() -> Option<u8> {
    unsafe {
        let t = read_volatile(addr_of!(uart_tail));
        if t == read_volatile(addr_of!(uart_head)) {
            return None;
        }
        let c = read_volatile(addr_of!(uart_ring[(t & (RING - 1)) as usize]));
        write_volatile(addr_of_mut!(uart_tail), t.wrapping_add(1));
        Some(c)
    }
}

pub fn rx_flush() {
    while rx_getc().is_some() {}
}

/// Drain the UART from ring 3 (interrupts off) into the ring, as the interrupt handler does:
/// the console's safety net when its line is masked or an edge was lost.
pub fn uart_poll() {
    if inb(COM1 + 5) & 1 == 0 {
        return;
    }
    cli();
    drain();
    sti();
}

/// Move what the UART's FIFO holds into the ring (call with interrupts off).
fn drain() {
    for _ in 0..RING {
        let lsr = inb(COM1 + 5);
        if lsr & 2 != 0 {
            unsafe { write_volatile(addr_of_mut!(uart_overruns), read_volatile(addr_of!(uart_overruns)) + 1) };
        }
        if lsr & 1 == 0 {
            break;
        }
        let c = inb(COM1);
        unsafe {
            write_volatile(addr_of_mut!(uart_rx_bytes), read_volatile(addr_of!(uart_rx_bytes)).wrapping_add(1));
            let h = read_volatile(addr_of!(uart_head));
            if h.wrapping_sub(read_volatile(addr_of!(uart_tail))) >= RING {
                write_volatile(addr_of_mut!(uart_dropped), read_volatile(addr_of!(uart_dropped)) + 1);
                continue;
            }
            write_volatile(addr_of_mut!(uart_ring[(h & (RING - 1)) as usize]), c);
            write_volatile(addr_of_mut!(uart_head), h.wrapping_add(1));
        }
    }
}

/// (rx_bytes, rx_irqs, overruns, dropped)
pub fn uart_stats() -> (u32, u32, u32, u32) {
    unsafe {
        (
            read_volatile(addr_of!(uart_rx_bytes)),
            read_volatile(addr_of!(uart_rx_irqs)),
            read_volatile(addr_of!(uart_overruns)),
            read_volatile(addr_of!(uart_dropped)),
        )
    }
}

// ------------------------------------------------------------------------- guarded access
/// Read `width` bytes at `addr`; Err(vector) if the access faulted (13 #GP, 14 #PF).
pub fn guarded_read(addr: u64, width: u64) -> Result<u64, u64> {
    let mut v = 0u64;
    let r = unsafe {
        match width {
            1 => g_rd8(addr, &mut v),
            2 => g_rd16(addr, &mut v),
            4 => g_rd32(addr, &mut v),
            _ => g_rd64(addr, &mut v),
        }
    };
    if r == 0 { Ok(v) } else { Err(r) }
}

pub fn guarded_write(addr: u64, width: u64, value: u64) -> Result<(), u64> {
    let r = unsafe {
        match width {
            1 => g_wr8(addr, value),
            2 => g_wr16(addr, value),
            4 => g_wr32(addr, value),
            _ => g_wr64(addr, value),
        }
    };
    if r == 0 { Ok(()) } else { Err(r) }
}

// ------------------------------------------------------------------------- LAPIC
pub fn lapic_read(reg: u32) -> u32 {
    unsafe { read_volatile((LAPIC + reg as u64) as *const u32) }
}
pub fn lapic_write(reg: u32, v: u32) {
    unsafe { write_volatile((LAPIC + reg as u64) as *mut u32, v) }
}
pub fn lapic_eoi() {
    lapic_write(0xB0, 0);
}
pub fn apic_id() -> u8 {
    st().apic_id
}

/// Send a fixed IPI; false if the ICR stays busy.
pub fn ipi_send(apic_id: u8, icr_low: u32) -> bool {
    lapic_write(0x310, (apic_id as u32) << 24);
    lapic_write(0x300, icr_low);
    for _ in 0..100_000 {
        if lapic_read(0x300) & (1 << 12) == 0 {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

fn lapic_init() {
    // The APIC base MSR cannot be touched from ring 3; reset leaves it globally enabled.
    lapic_write(0xF0, 0x100 | VEC_SPURIOUS); // software enable + spurious vector
    lapic_write(0x80, 0); // TPR: accept everything
    lapic_write(0x3E0, 0x3); // timer divide by 16
    lapic_write(0x320, 0x10000 | VEC_TIMER); // timer masked until armed
    lapic_write(0x350, 0x10000); // LINT0 masked: the 8259 is not used
    lapic_write(0x360, 0x400); // LINT1: NMI
    lapic_write(0x370, 0x10000); // error LVT masked
    st().apic_id = (lapic_read(0x20) >> 24) as u8;
}

// ------------------------------------------------------------------------- 8259
fn pic_disable() {
    // Remap away from the exception vectors first, so a spurious IRQ7/15 is recognisable.
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, VEC_PIC_BASE);
    outb(0xA1, VEC_PIC_BASE + 8);
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}

// ------------------------------------------------------------------------- IOAPIC
pub fn ioapic_read(reg: u32) -> u32 {
    ioapic_at_read(IOAPIC, reg)
}
pub fn ioapic_write(reg: u32, v: u32) {
    ioapic_at_write(IOAPIC, reg, v)
}

// QEMU microvm's second IOAPIC (GSI 24..47, its virtio-mmio lines when ACPI is on). Found by
// its version register: god leaves the address unassigned (reads all ones), QEMU without it
// reads zeros.
const IOAPIC2: u64 = 0xFEC1_0000;
const IOAPIC2_GSI_BASE: u32 = 24;

fn ioapic_at_read(base: u64, reg: u32) -> u32 {
    unsafe {
        write_volatile(base as *mut u32, reg);
        read_volatile((base + 0x10) as *const u32)
    }
}
fn ioapic_at_write(base: u64, reg: u32, v: u32) {
    unsafe {
        write_volatile(base as *mut u32, reg);
        write_volatile((base + 0x10) as *mut u32, v);
    }
}

pub fn second_ioapic_present() -> bool {
    let version = ioapic_at_read(IOAPIC2, 1);
    matches!(version & 0xFF, 0x11 | 0x20) && (version >> 16) & 0xFF == 23
}

/// GSI of the first slot of microvm's default virtio-mmio window (see drivers_virtio::probe).
pub fn virtio_window_irq_base() -> u32 {
    if second_ioapic_present() { IOAPIC2_GSI_BASE } else { 5 }
}

/// (IOAPIC base, pin) of a GSI.
fn gsi_pin(gsi: u32) -> (u64, u32) {
    if gsi >= IOAPIC2_GSI_BASE { (IOAPIC2, gsi - IOAPIC2_GSI_BASE) } else { (IOAPIC, gsi) }
}

pub fn line_vector(line: u32) -> u32 {
    if line == UART_LINE { VEC_UART } else { VEC_LINE_BASE + line }
}
pub fn line_pin(line: u32) -> u32 {
    st().line_pins[line as usize] as u32
}
pub fn mptable_found() -> bool {
    st().mptable
}

/// Route `line` to IOAPIC `pin` (fixed, physical, to this CPU).
/// The IOAPIC is only ever touched from ring 3 (never by the interrupt stubs): no `cli`.
pub fn line_route(line: u32, pin: u32, level: bool, masked: bool) {
    let s = st();
    let l = line as usize;
    if s.line_routed[l] && s.line_pins[l] as u32 != pin {
        ioapic_write(0x10 + 2 * s.line_pins[l] as u32, 0x10000); // retire the old pin
    }
    s.line_pins[l] = pin as u8;
    s.line_routed[l] = true;
    let lo = line_vector(line) | if level { 1 << 15 } else { 0 } | if masked { 0x10000 } else { 0 };
    ioapic_write(0x11 + 2 * pin, (s.apic_id as u32) << 24);
    ioapic_write(0x10 + 2 * pin, lo);
}

pub fn line_set_mask(line: u32, masked: bool) {
    let reg = 0x10 + 2 * line_pin(line);
    let lo = ioapic_read(reg);
    ioapic_write(reg, if masked { lo | 0x10000 } else { lo & !0x10000 });
}

pub fn line_masked(line: u32) -> bool {
    (ioapic_read(0x10 + 2 * line_pin(line)) >> 16) & 1 != 0
}

pub fn line_set_manual_eoi(line: u32, manual: bool) {
    let v = line_vector(line) as usize;
    unsafe { write_volatile(addr_of_mut!(irq_manual[v]), manual as u8) };
}

pub fn line_count(line: u32) -> u32 {
    count(line_vector(line))
}

/// Route `gsi` (as `virtio_mmio.device=...:<gsi>` names it) to `vector`: edge, fixed, to this
/// CPU, masked. Edge because the scheduler acknowledges the device before it unmasks and
/// sleeps, so each new event raises the line again.
pub fn gsi_route(gsi: u32, vector: u32) {
    let (ioapic, pin) = gsi_pin(gsi);
    keeping_ioregsel(ioapic, || {
        ioapic_at_write(ioapic, 0x11 + 2 * pin, (st().apic_id as u32) << 24);
        ioapic_at_write(ioapic, 0x10 + 2 * pin, vector | 0x10000);
    })
}

pub fn gsi_set_mask(gsi: u32, masked: bool) {
    let (ioapic, pin) = gsi_pin(gsi);
    let reg = 0x10 + 2 * pin;
    keeping_ioregsel(ioapic, || {
        let lo = ioapic_at_read(ioapic, reg);
        ioapic_at_write(ioapic, reg, if masked { lo | 0x10000 } else { lo & !0x10000 });
    })
}

/// The scheduler touches the IOAPIC on its own, between agent requests: a test that selects a
/// register with one `wr` and writes it with the next must still find its selection.
fn keeping_ioregsel(ioapic: u64, f: impl FnOnce()) {
    let selected = unsafe { read_volatile(ioapic as *const u32) };
    f();
    unsafe { write_volatile(ioapic as *mut u32, selected) };
}

fn ioapic_init() {
    let pins = (((ioapic_read(1) >> 16) & 0xFF) + 1).min(NLINES);
    for p in 0..pins {
        ioapic_write(0x10 + 2 * p, 0x10000);
        ioapic_write(0x11 + 2 * p, 0);
    }
    let s = st();
    for l in 0..NLINES as usize {
        s.line_pins[l] = l as u8;
    }
    s.line_pins[0] = 2; // without an MP table: ISA IRQ0 (the PIT) on pin 2, the PC convention
    if let Some(isa) = mp_parse() {
        s.mptable = true;
        for (l, &p) in isa.iter().enumerate() {
            if (p as u32) < NLINES {
                s.line_pins[l] = p;
            }
        }
    }
}

// ------------------------------------------------------------------------- MP table
fn rd8(a: u64) -> u8 {
    unsafe { read_volatile(a as *const u8) }
}
fn rd16(a: u64) -> u16 {
    rd8(a) as u16 | (rd8(a + 1) as u16) << 8
}
fn rd32(a: u64) -> u32 {
    rd16(a) as u32 | (rd16(a + 2) as u32) << 16
}

fn mp_scan(base: u64, len: u64) -> Option<u64> {
    let mut a = base;
    while a + 16 <= base + len {
        if rd32(a) == 0x5F50_4D5F && (0..16).fold(0u8, |s, i| s.wrapping_add(rd8(a + i))) == 0 {
            return Some(a);
        }
        a += 16;
    }
    None
}

/// Intel MP 1.4 tables (as the probe kernel reads them): the IOAPIC pin of each ISA IRQ
/// (0xff where the table says nothing), or None without a usable table.
fn mp_parse() -> Option<[u8; 16]> {
    let ebda = (rd16(0x40E) as u64) << 4;
    let f = (if (0x80000..0xA0000).contains(&ebda) { mp_scan(ebda, 1024) } else { None })
        .or_else(|| mp_scan(0x9FC00, 1024))
        .or_else(|| mp_scan(0xF0000, 0x10000))?;
    let cfg = rd32(f + 4) as u64;
    if cfg == 0 || rd8(f + 11) != 0 || cfg >= 0x100000 || rd32(cfg) != 0x504D_4350 {
        return None;
    }
    let len = rd16(cfg + 4) as u64;
    let count = rd16(cfg + 0x22) as u32;
    let end = cfg + len;
    let mut isa_bus: i32 = -1;
    let mut isa = [0xFFu8; 16];
    for pass in 0..2 {
        let mut e = cfg + 0x2C;
        let mut i = 0;
        // qboot (QEMU microvm) leaves the entry count 0: the table length bounds the walk
        while (count == 0 || i < count) && e + 8 <= end {
            let ty = rd8(e);
            i += 1;
            if ty == 0 {
                e += 20;
                continue;
            }
            if ty > 4 {
                return None;
            }
            if pass == 0 && ty == 1 && rd8(e + 2) == b'I' && rd8(e + 3) == b'S' && rd8(e + 4) == b'A' {
                isa_bus = rd8(e + 1) as i32;
            }
            let irq = rd8(e + 5) as usize;
            if pass == 1 && ty == 3 && rd8(e + 1) == 0 && rd8(e + 4) as i32 == isa_bus && irq < 16 && isa[irq] == 0xFF {
                isa[irq] = rd8(e + 7);
            }
            e += 8;
        }
    }
    Some(isa)
}

// ------------------------------------------------------------------------- boot
/// Controllers to a known state: everything masked. Interrupts stay off (IF=0) until `enable`.
pub fn init() {
    pic_disable();
    lapic_init();
    ioapic_init();
}

/// The console UART's receive interrupt (line 4, edge, vector 0xe4), then IF=1 in ring 3.
pub fn enable() {
    // Keep what already arrived (the host may send as soon as it sees "mcp ready") and start
    // with an empty FIFO: an edge-triggered line must start low.
    line_route(UART_LINE, line_pin(UART_LINE), false, false);
    outb(COM1 + 1, 0x01); // IER: received-data-available
    drain();
    sti();
}
