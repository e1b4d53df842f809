//! virtio-blk (virtio 1.2 §5.2): synchronous, polled sector reads for the model disk.
use crate::mmio::*;
use crate::queue::{dma_alloc, Virtqueue};
use alloc::format;
use alloc::string::String;
use core::ptr::{read_volatile, write_volatile};

const T_IN: u32 = 0;
const MAX_REQ: usize = 64 * 1024;

pub struct Blk {
    t: MmioTransport,
    q: Virtqueue,
    pub capacity: u64,
    hdr: *mut u8,
    data: *mut u8,
    status: *mut u8,
}

impl Blk {
    pub fn init(t: MmioTransport) -> Result<Blk, &'static str> {
        t.begin_init(F_VERSION_1)?;
        let q = Virtqueue::new(&t, 0, 16)?;
        t.driver_ok();
        let capacity = t.config_u64(0);
        Ok(Blk { t, q, capacity, hdr: dma_alloc(16), data: dma_alloc(MAX_REQ), status: dma_alloc(16) })
    }

    fn read_chunk(&mut self, sector: u64, out: &mut [u8]) -> Result<(), String> {
        unsafe {
            write_volatile(self.hdr as *mut u32, T_IN);
            write_volatile(self.hdr.add(4) as *mut u32, 0);
            write_volatile(self.hdr.add(8) as *mut u64, sector);
            write_volatile(self.status, 0xff);
        }
        self.q
            .add(&[(self.hdr as u64, 16, false), (self.data as u64, out.len() as u32, true), (self.status as u64, 1, true)])
            .ok_or("virtio-blk queue full")?;
        self.t.notify(0);
        let mut spins: u64 = 0;
        loop {
            if self.q.pop_used().is_some() {
                break;
            }
            spins += 1;
            if spins > 2_000_000_000 {
                return Err("virtio-blk request timed out".into());
            }
            core::hint::spin_loop();
        }
        self.t.ack_interrupts();
        let status = unsafe { read_volatile(self.status) };
        if status != 0 {
            return Err(format!("virtio-blk read of sector {sector} failed with status {status}"));
        }
        unsafe { core::ptr::copy_nonoverlapping(self.data, out.as_mut_ptr(), out.len()) };
        Ok(())
    }
}

impl Blk {
    /// Read `buf.len() / 512` sectors from `sector` (whole sectors, within the capacity).
    pub fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String> {
        if buf.len() % 512 != 0 {
            return Err("read length is not a multiple of 512".into());
        }
        let count = (buf.len() / 512) as u64;
        if sector.checked_add(count).map_or(true, |end| end > self.capacity) {
            return Err(format!("read past the end of the disk ({} sectors)", self.capacity));
        }
        for (i, chunk) in buf.chunks_mut(MAX_REQ).enumerate() {
            self.read_chunk(sector + (i * MAX_REQ / 512) as u64, chunk)?;
        }
        Ok(())
    }
}
