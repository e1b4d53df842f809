//! Split virtqueue (virtio 1.2 §2.7): descriptor table, available ring, used ring.
use crate::mmio::*;
use alloc::alloc::{alloc_zeroed, Layout};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

pub struct Virtqueue {
    pub index: u16,
    pub size: u16,
    desc: *mut Desc,
    avail: *mut u16, // flags, idx, ring[size], used_event
    used: *mut u8,   // flags u16, idx u16, ring[size] of (id u32, len u32), avail_event
    free_head: u16,
    pub num_free: u16,
    avail_idx: u16,
    last_used: u16,
}

/// Zeroed, page-aligned, never freed (device memory lives as long as the kernel).
pub fn dma_alloc(size: usize) -> *mut u8 {
    let layout = Layout::from_size_align(size.max(1), 4096).unwrap();
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null(), "out of memory for virtqueue");
    p
}

impl Virtqueue {
    pub fn new(t: &MmioTransport, index: u16, want: u16) -> Result<Virtqueue, &'static str> {
        t.write(REG_QUEUE_SEL, index as u32);
        if t.read(REG_QUEUE_READY) != 0 {
            return Err("queue already in use");
        }
        let max = t.read(REG_QUEUE_NUM_MAX);
        if max == 0 {
            return Err("queue not available");
        }
        let size = (want as u32).min(max) as u16;
        let desc = dma_alloc(16 * size as usize) as *mut Desc;
        let avail = dma_alloc(6 + 2 * size as usize) as *mut u16;
        let used = dma_alloc(6 + 8 * size as usize);
        unsafe {
            for i in 0..size {
                (*desc.add(i as usize)).next = if i + 1 < size { i + 1 } else { 0 };
            }
        }
        t.write(REG_QUEUE_NUM, size as u32);
        let (d, a, u) = (desc as u64, avail as u64, used as u64);
        t.write(REG_QUEUE_DESC_LOW, d as u32);
        t.write(REG_QUEUE_DESC_HIGH, (d >> 32) as u32);
        t.write(REG_QUEUE_DRIVER_LOW, a as u32);
        t.write(REG_QUEUE_DRIVER_HIGH, (a >> 32) as u32);
        t.write(REG_QUEUE_DEVICE_LOW, u as u32);
        t.write(REG_QUEUE_DEVICE_HIGH, (u >> 32) as u32);
        t.write(REG_QUEUE_READY, 1);
        Ok(Virtqueue { index, size, desc, avail, used, free_head: 0, num_free: size, avail_idx: 0, last_used: 0 })
    }

    /// Chain `bufs` (address, length, device-writable) and make it available. Returns the
    /// head descriptor id, or None when not enough descriptors are free.
    pub fn add(&mut self, bufs: &[(u64, u32, bool)]) -> Option<u16> {
        if bufs.is_empty() || bufs.len() > self.num_free as usize {
            return None;
        }
        let head = self.free_head;
        let mut id = head;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            unsafe {
                let d = &mut *self.desc.add(id as usize);
                let next = d.next;
                d.addr = addr;
                d.len = len;
                d.flags = if writable { DESC_F_WRITE } else { 0 };
                if i + 1 < bufs.len() {
                    d.flags |= DESC_F_NEXT;
                    id = next;
                } else {
                    self.free_head = next;
                }
            }
        }
        self.num_free -= bufs.len() as u16;
        unsafe {
            let slot = self.avail.add(2 + (self.avail_idx % self.size) as usize);
            write_volatile(slot, head);
            fence(Ordering::SeqCst);
            self.avail_idx = self.avail_idx.wrapping_add(1);
            write_volatile(self.avail.add(1), self.avail_idx);
            fence(Ordering::SeqCst);
        }
        Some(head)
    }

    /// One finished chain: (head id, bytes the device wrote). Its descriptors are freed.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        let used_idx = unsafe { read_volatile(self.used.add(2) as *const u16) };
        if used_idx == self.last_used {
            return None;
        }
        fence(Ordering::SeqCst);
        let slot = (self.last_used % self.size) as usize;
        let (id, len) = unsafe {
            let e = self.used.add(4 + 8 * slot);
            (read_volatile(e as *const u32), read_volatile(e.add(4) as *const u32))
        };
        self.last_used = self.last_used.wrapping_add(1);
        if id >= self.size as u32 {
            return None; // a device bug; never trust its ids
        }
        let head = id as u16;
        // Return the chain to the free list.
        let mut last = head;
        let mut n = 1u16;
        unsafe {
            loop {
                let d = &*self.desc.add(last as usize);
                if d.flags & DESC_F_NEXT == 0 || n > self.size {
                    break;
                }
                last = d.next;
                n += 1;
            }
            (*self.desc.add(last as usize)).next = self.free_head;
        }
        self.free_head = head;
        self.num_free += n;
        Some((head, len))
    }
}
