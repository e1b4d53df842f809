//! Kernel heap: size classes (16 B .. 4 KiB, power of two, naturally aligned) carved from
//! 64 KiB slabs, and an address-ordered first-fit free list with coalescing for everything
//! bigger (and for the slabs). Single core, cooperative: no locking beyond a re-entry check.
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

const CLASSES: usize = 9; // 16, 32, ..., 4096
const MIN_CLASS: usize = 16;
const SLAB: usize = 64 * 1024;

#[repr(C)]
struct FreeBlock {
    size: usize,
    next: *mut FreeBlock,
}

struct Inner {
    free: *mut FreeBlock, // large free list, address order
    class_free: [*mut u8; CLASSES],
    start: usize,
    end: usize,
    used: usize,
}

pub struct Heap(UnsafeCell<Inner>);
unsafe impl Sync for Heap {}

#[global_allocator]
pub static HEAP: Heap = Heap(UnsafeCell::new(Inner {
    free: null_mut(),
    class_free: [null_mut(); CLASSES],
    start: 0,
    end: 0,
    used: 0,
}));

fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(MIN_CLASS);
    if size > 4096 {
        return None;
    }
    let c = size.next_power_of_two().trailing_zeros() as usize - MIN_CLASS.trailing_zeros() as usize;
    Some(c)
}

impl Inner {
    unsafe fn large_alloc(&mut self, size: usize, align: usize) -> *mut u8 {
        let size = (size + 15) & !15;
        let align = align.max(16);
        let mut prev: *mut *mut FreeBlock = &mut self.free;
        let mut cur = self.free;
        while !cur.is_null() {
            let base = cur as usize;
            let bsize = (*cur).size;
            let mut start = (base + align - 1) & !(align - 1);
            // A leading gap must itself be able to hold a FreeBlock.
            if start != base && start - base < 16 {
                start += align;
            }
            if start + size <= base + bsize {
                let next = (*cur).next;
                let tail = base + bsize - (start + size);
                // Link: [lead gap] [alloc] [tail]
                let mut link = next;
                if tail >= 32 {
                    let t = (start + size) as *mut FreeBlock;
                    (*t).size = tail;
                    (*t).next = next;
                    link = t;
                }
                let used = size + if tail < 32 { tail } else { 0 };
                if start != base {
                    (*cur).size = start - base;
                    (*cur).next = link;
                } else {
                    *prev = link;
                }
                // Remember the real extent just before the block? Sizes come from Layout on
                // free, so fold an unusable tail into the allocation by rounding on free too.
                let _ = used;
                return start as *mut u8;
            }
            prev = &mut (*cur).next;
            cur = (*cur).next;
        }
        null_mut()
    }

    unsafe fn large_free(&mut self, ptr: *mut u8, size: usize) {
        let size = (size + 15) & !15;
        let addr = ptr as usize;
        let mut prev: *mut FreeBlock = null_mut();
        let mut cur = self.free;
        while !cur.is_null() && (cur as usize) < addr {
            prev = cur;
            cur = (*cur).next;
        }
        let block = ptr as *mut FreeBlock;
        (*block).size = size;
        (*block).next = cur;
        // Absorb a sliver (< 32 bytes) that large_alloc left unlinked after the allocation.
        if !cur.is_null() && (cur as usize) - (addr + size) < 32 && (cur as usize) >= addr + size {
            let gap = (cur as usize) - (addr + size);
            (*block).size += gap + (*cur).size;
            (*block).next = (*cur).next;
        } else if cur.is_null() && self.end - (addr + size) < 32 {
            (*block).size = self.end - addr;
        }
        if prev.is_null() {
            self.free = block;
        } else if (prev as usize) + (*prev).size == addr {
            (*prev).size += (*block).size;
            (*prev).next = (*block).next;
        } else {
            (*prev).next = block;
        }
    }
}

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let h = &mut *self.0.get();
        if let Some(c) = class_of(&layout) {
            if h.class_free[c].is_null() {
                let slab = h.large_alloc(SLAB, 4096);
                if slab.is_null() {
                    return null_mut();
                }
                let bsize = MIN_CLASS << c;
                let mut off = SLAB;
                while off >= bsize {
                    off -= bsize;
                    let p = slab.add(off);
                    *(p as *mut *mut u8) = h.class_free[c];
                    h.class_free[c] = p;
                }
            }
            let p = h.class_free[c];
            h.class_free[c] = *(p as *mut *mut u8);
            h.used += MIN_CLASS << c;
            return p;
        }
        let p = h.large_alloc(layout.size(), layout.align());
        if !p.is_null() {
            h.used += (layout.size() + 15) & !15;
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let h = &mut *self.0.get();
        if let Some(c) = class_of(&layout) {
            *(ptr as *mut *mut u8) = h.class_free[c];
            h.class_free[c] = ptr;
            h.used -= MIN_CLASS << c;
            return;
        }
        h.used -= (layout.size() + 15) & !15;
        h.large_free(ptr, layout.size());
    }
}

/// Hand the region [start, end) to the heap.
pub unsafe fn init(start: usize, end: usize) {
    let h = &mut *HEAP.0.get();
    let start = (start + 4095) & !4095;
    h.start = start;
    h.end = end;
    let b = start as *mut FreeBlock;
    (*b).size = end - start;
    (*b).next = null_mut();
    h.free = b;
}

/// (bytes in use, heap size)
pub fn stats() -> (usize, usize) {
    let h = unsafe { &*HEAP.0.get() };
    (h.used, h.end - h.start)
}
