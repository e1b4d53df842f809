//! Time: the TSC clock and the LAPIC timer rate, calibrated at boot against PIT channel 0
//! (latched reads, as the probe kernel does: microvm has no port 0x61 gate for channel 2);
//! idling in HLT bounded by the LAPIC timer; the LAPIC one-shot; the PIT in periodic mode.
use crate::intr;
use crate::serial::{inb, outb};
use core::sync::atomic::{AtomicU64, Ordering};

pub const PIT_HZ: u64 = 1_193_182;

static TSC_BOOT: AtomicU64 = AtomicU64::new(0);
static TSC_KHZ: AtomicU64 = AtomicU64::new(1_000_000);
static LAPIC_KHZ: AtomicU64 = AtomicU64::new(62_500);
static CALIBRATED_BY: AtomicU64 = AtomicU64::new(0); // 0 default, 1 PIT, 2 CPUID

#[inline(always)]
pub fn rdtsc() -> u64 {
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// One calibration sample: PIT channel 0 latched and the LAPIC timer's current count,
/// bracketed by two TSC reads (a wide bracket = the vCPU was preempted: not trusted).
#[derive(Clone, Copy)]
struct Sample {
    tsc: u64,
    width: u64,
    pit: u32,
    lapic: u32,
}

fn sample() -> Sample {
    let a = rdtsc();
    outb(0x43, 0x00); // latch channel 0
    let lapic = intr::lapic_read(0x390);
    let lo = inb(0x40) as u32;
    let hi = inb(0x40) as u32;
    let b = rdtsc();
    Sample { tsc: a + (b - a) / 2, width: b - a, pit: lo | hi << 8, lapic }
}

/// TSC and LAPIC-timer rates over >= 40 ms of PIT channel 0 counting down in mode 0 (its
/// IOAPIC pin and the 8259 are masked). Falls back to CPUID 0x15 / 0x40000010, then 1 GHz.
/// Needs `intr::init` first (the LAPIC timer divider).
pub fn init() {
    TSC_BOOT.store(rdtsc(), Ordering::Relaxed);
    const WANT: u32 = 47_727; // PIT ticks: 40 ms
    const LIMIT: u32 = 60_000; // mode 0 from 0xffff: stop well before the counter wraps
    outb(0x43, 0x30); // channel 0, lo/hi, mode 0
    outb(0x40, 0xFF);
    outb(0x40, 0xFF);
    intr::lapic_write(0x380, 0xFFFF_FFFF); // LAPIC timer free-running (its LVT is masked)
    let mut s0 = sample();
    for _ in 0..4 {
        let t = sample();
        if t.width < s0.width {
            s0 = t;
        }
    }
    let mut best: Option<Sample> = None;
    let mut polls = 0u64;
    loop {
        let s1 = sample();
        polls += 1;
        if s1.pit > s0.pit || polls > 2_000_000 {
            break; // wrapped or stuck: keep the best so far
        }
        let ticks = s0.pit - s1.pit;
        if ticks >= WANT && best.map_or(true, |b| s1.width < b.width) {
            best = Some(s1);
        }
        if ticks >= WANT && s1.width <= 2 * s0.width + 64 {
            break;
        }
        if ticks >= LIMIT {
            break;
        }
    }
    intr::lapic_write(0x380, 0);
    let mut tsc_khz = 0u64;
    let mut lapic_khz = 0u64;
    if let Some(b) = best {
        let ticks = (s0.pit - b.pit) as u64;
        tsc_khz = (b.tsc - s0.tsc) * PIT_HZ / ticks / 1000;
        lapic_khz = (s0.lapic.wrapping_sub(b.lapic)) as u64 * PIT_HZ / ticks / 1000;
    }
    let mut by = 1;
    if !(100_000..=20_000_000).contains(&tsc_khz) {
        by = 2;
        tsc_khz = 0;
        let max = cpuid(0, 0).0;
        if max >= 0x15 {
            let (den, num, hz, _) = cpuid(0x15, 0);
            if den != 0 && num != 0 {
                tsc_khz = hz as u64 * num as u64 / den as u64 / 1000;
            }
        }
        if tsc_khz < 100_000 && cpuid(0x4000_0000, 0).0 >= 0x4000_0010 {
            let (khz, bus_khz, _, _) = cpuid(0x4000_0010, 0);
            tsc_khz = khz as u64;
            lapic_khz = bus_khz as u64 / 16;
        }
        if tsc_khz < 100_000 {
            by = 0;
            tsc_khz = 1_000_000;
        }
    }
    if lapic_khz == 0 {
        lapic_khz = 62_500; // 1 GHz bus / 16, what KVM and QEMU emulate
    }
    TSC_KHZ.store(tsc_khz, Ordering::Relaxed);
    LAPIC_KHZ.store(lapic_khz, Ordering::Relaxed);
    CALIBRATED_BY.store(by, Ordering::Relaxed);
}

pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}
pub fn lapic_khz() -> u64 {
    LAPIC_KHZ.load(Ordering::Relaxed)
}
pub fn calibrated_by() -> &'static str {
    ["default", "pit", "cpuid"][CALIBRATED_BY.load(Ordering::Relaxed) as usize]
}

pub fn tsc_to_ns(delta: u64) -> u64 {
    (delta as u128 * 1_000_000 / tsc_khz() as u128) as u64
}
pub fn ns_to_tsc(ns: u64) -> u64 {
    (ns as u128 * tsc_khz() as u128 / 1_000_000) as u64
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    tsc_to_ns(rdtsc().wrapping_sub(TSC_BOOT.load(Ordering::Relaxed)))
}

pub fn boot_tsc() -> u64 {
    TSC_BOOT.load(Ordering::Relaxed)
}

// ------------------------------------------------------------------------- LAPIC timer
/// One-shot after about `ns` (never early: rounded up, +2 timer ticks).
pub fn lapic_arm_ns(ns: u64) {
    lapic_arm_vector_ns(intr::VEC_TIMER, ns)
}

/// `lapic_arm_ns` delivering on `vector`.
pub fn lapic_arm_vector_ns(vector: u32, ns: u64) {
    let n = (ns as u128 * lapic_khz() as u128 / 1_000_000 + 2).min(0xFFFF_FFFF) as u32;
    intr::lapic_write(0x320, vector); // one-shot, unmasked
    intr::lapic_write(0x380, n);
}

pub fn lapic_disarm() {
    intr::lapic_write(0x380, 0);
}

/// Idle in HLT until `cond()` or the TSC reaches `end`; the LAPIC timer bounds each HLT.
/// Returns the number of wake-ups.
pub fn wait_until(end: u64, cond: impl FnMut() -> bool) -> u64 {
    let wakeups = wait_until_cli(end, cond);
    intr::sti();
    wakeups
}

/// `wait_until`, done as the probe kernel does it: each check runs with interrupts off and
/// interrupts are only taken inside the HLT (ring 0: `sti; hlt; cli`), so the check sees one
/// delivery at a time. Returns with interrupts OFF: the caller samples, then `intr::sti()`.
pub fn wait_until_cli(end: u64, mut cond: impl FnMut() -> bool) -> u64 {
    let mut wakeups = 0;
    let mut armed_at: Option<u32> = None;
    loop {
        intr::cli();
        let gen = intr::generation();
        let now = rdtsc();
        if cond() || now >= end {
            break;
        }
        // Re-arm only once the timer fired: other wake-ups leave it running.
        let fired = intr::count(intr::VEC_TIMER);
        if armed_at != Some(fired) {
            lapic_arm_ns(tsc_to_ns(end - now));
            armed_at = Some(fired);
        }
        intr::wait(gen);
        wakeups += 1;
    }
    lapic_disarm();
    wakeups
}

/// `lapic_oneshot`: (requested_ns, elapsed_ns, fired, count). Polls (interrupts arrive in
/// ring 3), so it answers even if the timer never fires.
pub fn lapic_oneshot(us: u64) -> Option<(u64, u64, u32, u64)> {
    let n = us * lapic_khz() / 1000;
    if n == 0 || n > 0xFFFF_FFFF {
        return None;
    }
    let fired0 = intr::count(intr::VEC_TIMER);
    intr::lapic_write(0x320, intr::VEC_TIMER);
    let t0 = rdtsc();
    intr::lapic_write(0x380, n as u32);
    let end = t0 + ns_to_tsc(us * 2000 + 200_000_000);
    while intr::count(intr::VEC_TIMER) == fired0 && rdtsc() < end {
        core::hint::spin_loop();
    }
    let fired = intr::count(intr::VEC_TIMER) - fired0;
    let elapsed = if fired > 0 { tsc_to_ns(intr::last_tsc(intr::VEC_TIMER).wrapping_sub(t0)) } else { 0 };
    Some((us * 1000, elapsed, fired, n))
}

// ------------------------------------------------------------------------- PIT periodic
pub struct Pit {
    pub hz: u64,
    pub divisor: u64,
    pub pin: u32,
    pub start_tsc: u64,
}

pub static mut PIT: Pit = Pit { hz: 0, divisor: 0, pin: 2, start_tsc: 0 };

pub fn pit() -> &'static mut Pit {
    unsafe { &mut *core::ptr::addr_of_mut!(PIT) }
}

fn pit_vector() -> u32 {
    intr::line_vector(0)
}

pub fn pit_start(hz: u64, pin: u32) -> bool {
    if !(19..=100_000).contains(&hz) || pin >= intr::NLINES {
        return false;
    }
    let p = pit();
    p.divisor = (PIT_HZ + hz / 2) / hz;
    p.hz = hz;
    p.pin = pin;
    intr::line_route(0, pin, false, true);
    intr::reset_vector(pit_vector());
    outb(0x43, 0x34); // channel 0, lo/hi, mode 2 (rate generator)
    outb(0x40, p.divisor as u8);
    p.start_tsc = rdtsc(); // counting starts with the count's last byte
    outb(0x40, (p.divisor >> 8) as u8);
    intr::line_set_mask(0, false);
    true
}

pub fn pit_stop() {
    intr::line_set_mask(0, true);
    outb(0x43, 0x30); // channel 0 mode 0 with no count written: stops counting
    // A tick the LAPIC accepted before the mask is counted now, not after the report.
    let end = rdtsc() + ns_to_tsc(2_000_000);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// (ticks, ns since start, hz, divisor, span_ns first to last tick, pin)
pub fn pit_report() -> (u32, u64, u64, u64, u64, u32) {
    let p = pit();
    let v = pit_vector();
    let ticks = intr::count(v);
    let span = if ticks > 1 { tsc_to_ns(intr::last_tsc(v) - intr::first_tsc(v)) } else { 0 };
    (ticks, tsc_to_ns(rdtsc().wrapping_sub(p.start_tsc)), p.hz, p.divisor, span, p.pin)
}
