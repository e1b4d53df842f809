//! hvm_start_info (PVH boot ABI, version 1): command line and memory map.
use alloc::string::String;
use alloc::vec::Vec;

extern "C" {
    #[link_name = "guard_page"]
    static GUARD_PAGE: u8;
}

pub fn guard_page() -> usize {
    unsafe { &GUARD_PAGE as *const u8 as usize }
}

pub struct StartInfo {
    pub cmdline: String,
    /// (addr, size, type) of the E820-style map; type 1 = RAM.
    pub memmap: Vec<(u64, u64, u32)>,
}

unsafe fn rd<T: Copy>(addr: u64) -> T {
    core::ptr::read_unaligned(addr as *const T)
}

impl StartInfo {
    /// Parse the structure at `addr` (0 or a bad magic gives an empty one).
    pub unsafe fn read(addr: u64) -> StartInfo {
        let mut s = StartInfo { cmdline: String::new(), memmap: Vec::new() };
        if addr == 0 || addr >= 1 << 32 || rd::<u32>(addr) != 0x336e_c578 {
            return s;
        }
        let version: u32 = rd(addr + 4);
        let cmdline: u64 = rd(addr + 24);
        if cmdline != 0 && cmdline < 1 << 32 {
            let mut bytes = Vec::new();
            let mut p = cmdline;
            while bytes.len() < 4096 {
                let b: u8 = rd(p);
                if b == 0 {
                    break;
                }
                bytes.push(b);
                p += 1;
            }
            s.cmdline = String::from_utf8_lossy(&bytes).into_owned();
        }
        if version >= 1 {
            let map: u64 = rd(addr + 40);
            let entries: u32 = rd(addr + 48);
            if map != 0 && map < 1 << 32 {
                for i in 0..entries.min(128) as u64 {
                    let e = map + i * 24;
                    s.memmap.push((rd(e), rd(e + 8), rd(e + 16)));
                }
            }
        }
        s
    }

}

/// End of the RAM range of the PVH memory map containing `addr`, read without allocating
/// (the heap is not up yet); 64 MiB when there is no memory map.
pub unsafe fn ram_end(info: u64, addr: usize) -> usize {
    if info == 0 || info >= 1 << 32 || rd::<u32>(info) != 0x336e_c578 || rd::<u32>(info + 4) < 1 {
        return 64 << 20;
    }
    let map: u64 = rd(info + 40);
    let entries: u32 = rd(info + 48);
    if map == 0 || map >= 1 << 32 {
        return 64 << 20;
    }
    let a = addr as u64;
    for i in 0..entries.min(128) as u64 {
        let e = map + i * 24;
        let (base, size, kind): (u64, u64, u32) = (rd(e), rd(e + 8), rd(e + 16));
        if kind == 1 && base <= a && a < base + size {
            return (base + size) as usize;
        }
    }
    0
}
