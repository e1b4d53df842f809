//! TSC clock, calibrated against PIT channel 2 (ports reached through IOPL=3).
use crate::serial::{inb, outb};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_BOOT: AtomicU64 = AtomicU64::new(0);
static TSC_KHZ: AtomicU64 = AtomicU64::new(1_000_000);

#[inline(always)]
pub fn rdtsc() -> u64 {
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Calibrate: CPUID 0x15/0x16 when they give a frequency, else 10 ms of PIT channel 2.
pub fn init() {
    TSC_BOOT.store(rdtsc(), Ordering::Relaxed);
    let max = cpuid(0, 0).0;
    if max >= 0x15 {
        let (den, num, hz, _) = cpuid(0x15, 0);
        let khz = if den != 0 && num != 0 { hz as u64 * num as u64 / den as u64 / 1000 } else { 0 };
        if khz >= 100_000 {
            TSC_KHZ.store(khz, Ordering::Relaxed);
            return;
        }
    }
    // KVM's paravirtual leaf (0x40000010: TSC kHz) when the hypervisor offers it.
    let hv_max = cpuid(0x4000_0000, 0).0;
    if hv_max >= 0x4000_0010 {
        let khz = cpuid(0x4000_0010, 0).0 as u64;
        if khz >= 100_000 {
            TSC_KHZ.store(khz, Ordering::Relaxed);
            return;
        }
    }
    // PIT channel 2, mode 0, gate via port 0x61, count 11932 (10 ms at 1.193182 MHz).
    const COUNT: u16 = 11932;
    let gate = inb(0x61);
    outb(0x61, (gate & !0x02) | 0x01);
    outb(0x43, 0xB0);
    outb(0x42, (COUNT & 0xff) as u8);
    outb(0x42, (COUNT >> 8) as u8);
    let t0 = rdtsc();
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 50_000_000 {
            break;
        }
    }
    let t1 = rdtsc();
    outb(0x61, gate);
    let khz = (t1 - t0) / 10;
    if khz > 100_000 {
        TSC_KHZ.store(khz, Ordering::Relaxed);
    }
}

pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

pub fn tsc_to_ns(delta: u64) -> u64 {
    (delta as u128 * 1_000_000 / tsc_khz() as u128) as u64
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    tsc_to_ns(rdtsc().wrapping_sub(TSC_BOOT.load(Ordering::Relaxed)))
}

pub fn boot_tsc() -> u64 {
    TSC_BOOT.load(Ordering::Relaxed)
}
