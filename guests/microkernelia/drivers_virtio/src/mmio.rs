//! virtio-mmio v2 register block (virtio 1.2 §4.2.2).
use core::ptr::{read_volatile, write_volatile};

pub const MAGIC: u32 = 0x7472_6976; // "virt"
pub const REG_MAGIC: usize = 0x000;
pub const REG_VERSION: usize = 0x004;
pub const REG_DEVICE_ID: usize = 0x008;
pub const REG_VENDOR_ID: usize = 0x00c;
pub const REG_DEVICE_FEATURES: usize = 0x010;
pub const REG_DEVICE_FEATURES_SEL: usize = 0x014;
pub const REG_DRIVER_FEATURES: usize = 0x020;
pub const REG_DRIVER_FEATURES_SEL: usize = 0x024;
pub const REG_QUEUE_SEL: usize = 0x030;
pub const REG_QUEUE_NUM_MAX: usize = 0x034;
pub const REG_QUEUE_NUM: usize = 0x038;
pub const REG_QUEUE_READY: usize = 0x044;
pub const REG_QUEUE_NOTIFY: usize = 0x050;
pub const REG_INTERRUPT_STATUS: usize = 0x060;
pub const REG_INTERRUPT_ACK: usize = 0x064;
pub const REG_STATUS: usize = 0x070;
pub const REG_QUEUE_DESC_LOW: usize = 0x080;
pub const REG_QUEUE_DESC_HIGH: usize = 0x084;
pub const REG_QUEUE_DRIVER_LOW: usize = 0x090;
pub const REG_QUEUE_DRIVER_HIGH: usize = 0x094;
pub const REG_QUEUE_DEVICE_LOW: usize = 0x0a0;
pub const REG_QUEUE_DEVICE_HIGH: usize = 0x0a4;
pub const REG_CONFIG_GENERATION: usize = 0x0fc;
pub const REG_CONFIG: usize = 0x100;

pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_FAILED: u32 = 128;

pub const F_VERSION_1: u64 = 1 << 32;

pub const DEVICE_BLK: u32 = 2;
pub const DEVICE_VSOCK: u32 = 19;

#[derive(Clone, Copy, Debug)]
pub struct MmioTransport {
    pub base: usize,
    pub irq: u32,
    pub device_id: u32,
    pub version: u32,
}

impl MmioTransport {
    /// A transport at `base` if the magic is there and a device is plugged (id != 0).
    pub fn at(base: usize, irq: u32) -> Option<MmioTransport> {
        let t = MmioTransport { base, irq, device_id: 0, version: 0 };
        if t.read(REG_MAGIC) != MAGIC {
            return None;
        }
        let device_id = t.read(REG_DEVICE_ID);
        if device_id == 0 {
            return None;
        }
        Some(MmioTransport { base, irq, device_id, version: t.read(REG_VERSION) })
    }

    pub fn read(&self, reg: usize) -> u32 {
        unsafe { read_volatile((self.base + reg) as *const u32) }
    }

    pub fn write(&self, reg: usize, value: u32) {
        unsafe { write_volatile((self.base + reg) as *mut u32, value) }
    }

    pub fn config_u32(&self, off: usize) -> u32 {
        self.read(REG_CONFIG + off)
    }

    /// A 64-bit config field, read twice around the generation counter (§4.2.2.1).
    pub fn config_u64(&self, off: usize) -> u64 {
        loop {
            let gen = self.read(REG_CONFIG_GENERATION);
            let lo = self.read(REG_CONFIG + off) as u64;
            let hi = self.read(REG_CONFIG + off + 4) as u64;
            if gen == self.read(REG_CONFIG_GENERATION) {
                return lo | (hi << 32);
            }
        }
    }

    /// Reset, ACKNOWLEDGE, DRIVER, feature negotiation (§3.1.1). `wanted` must include
    /// VERSION_1. Returns the negotiated features.
    pub fn begin_init(&self, wanted: u64) -> Result<u64, &'static str> {
        if self.version != 2 {
            return Err("legacy virtio-mmio (version 1) is not supported: use a virtio 1.x device (QEMU: -global virtio-mmio.force-legacy=false)");
        }
        self.write(REG_STATUS, 0);
        let mut spins = 0;
        while self.read(REG_STATUS) != 0 {
            spins += 1;
            if spins > 1_000_000 {
                return Err("device did not reset");
            }
        }
        self.write(REG_STATUS, STATUS_ACKNOWLEDGE);
        self.write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        self.write(REG_DEVICE_FEATURES_SEL, 0);
        let lo = self.read(REG_DEVICE_FEATURES) as u64;
        self.write(REG_DEVICE_FEATURES_SEL, 1);
        let hi = self.read(REG_DEVICE_FEATURES) as u64;
        let offered = lo | (hi << 32);
        if offered & F_VERSION_1 == 0 {
            self.fail();
            return Err("device does not offer VIRTIO_F_VERSION_1");
        }
        let features = offered & wanted;
        self.write(REG_DRIVER_FEATURES_SEL, 0);
        self.write(REG_DRIVER_FEATURES, features as u32);
        self.write(REG_DRIVER_FEATURES_SEL, 1);
        self.write(REG_DRIVER_FEATURES, (features >> 32) as u32);
        self.write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
        if self.read(REG_STATUS) & STATUS_FEATURES_OK == 0 {
            self.fail();
            return Err("device refused FEATURES_OK");
        }
        Ok(features)
    }

    pub fn driver_ok(&self) {
        self.write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    }

    pub fn fail(&self) {
        self.write(REG_STATUS, self.read(REG_STATUS) | STATUS_FAILED);
    }

    pub fn notify(&self, queue: u16) {
        self.write(REG_QUEUE_NOTIFY, queue as u32);
    }

    /// Acknowledge whatever interrupt the device raised (we poll; this keeps the line quiet).
    pub fn ack_interrupts(&self) {
        let s = self.read(REG_INTERRUPT_STATUS);
        if s != 0 {
            self.write(REG_INTERRUPT_ACK, s);
        }
    }
}

/// Where to look for transports: `virtio_mmio.device=<size>@<base>:<irq>` words of the kernel
/// command line (what god announces, and QEMU microvm for a Linux kernel), else the default
/// microvm window (0xfeb00000, 512 bytes apart, up to 24 slots) with GSI `window_irq_base` +
/// slot. QEMU's microvm wires the window to GSI 5.. without ACPI, 16.. with ACPI and one
/// IOAPIC, 24.. (the second IOAPIC) with ACPI and `ioapic2` (its default); the caller knows
/// which IOAPICs exist.
pub fn probe(cmdline: &str, window_irq_base: u32, found: &mut dyn FnMut(MmioTransport)) -> usize {
    let mut n = 0;
    let mut any_announced = false;
    for word in cmdline.split_ascii_whitespace() {
        if let Some(spec) = word.strip_prefix("virtio_mmio.device=") {
            if let Some((base, irq)) = parse_device(spec) {
                any_announced = true;
                if let Some(t) = MmioTransport::at(base, irq) {
                    found(t);
                    n += 1;
                }
            }
        }
    }
    if !any_announced {
        for slot in 0..24 {
            if let Some(t) = MmioTransport::at(0xfeb0_0000 + slot * 0x200, window_irq_base + slot as u32) {
                found(t);
                n += 1;
            }
        }
    }
    n
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1024),
        b'M' | b'm' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let v = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else {
        digits.parse().ok()?
    };
    v.checked_mul(mul)
}

/// `<size>@<base>:<irq>[:<id>]` -> (base, irq).
pub fn parse_device(spec: &str) -> Option<(usize, u32)> {
    let (_size, rest) = spec.split_once('@')?;
    let mut parts = rest.split(':');
    let base = parse_num(parts.next()?)?;
    let irq = parse_num(parts.next()?)? as u32;
    // Only addresses the identity map covers (below 4 GiB) are touched.
    if base == 0 || base >= (1 << 32) || base & 0xfff != 0 && base & 0x1ff != 0 {
        return None;
    }
    Some((base as usize, irq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs() {
        assert_eq!(parse_device("512@0xfeb00e00:12"), Some((0xfeb00e00, 12)));
        assert_eq!(parse_device("4K@0xd0000000:5:2"), Some((0xd0000000, 5)));
        assert_eq!(parse_device("512@0x1_0000_0000:5"), None);
        assert_eq!(parse_device("512@0x100000000:5"), None);
        assert_eq!(parse_device("garbage"), None);
    }
}
