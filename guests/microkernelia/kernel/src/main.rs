//! microkernelia: a no_std unikernel serving MCP over virtio-vsock.
//!
//! Ring 0 is only `boot.S` (page tables, long mode, GDT/TSS/IDT, exception reporting,
//! trap-and-emulate of in/out/cli/sti/hlt, interrupt counting stubs). All of this Rust runs at
//! CPL3 with IOPL=3, interrupts on once booted (see docs/microkernelia.md: under PVM, CPL0
//! code is emulated and cannot use SSE; CPL3 runs natively).
#![no_std]
#![no_main]
extern crate alloc;

mod agent;
mod heap;
mod intr;
mod mcpd;
mod pvh;
mod sched;
mod serial;
mod time;

use alloc::boxed::Box;
use alloc::string::String;
use core::arch::global_asm;
use logging::serial_println;

global_asm!(include_str!("boot.S"), options(att_syntax, raw));
global_asm!(include_str!("mem.S"), options(att_syntax, raw));

use mcp_core::MCP_PORT;

/// RAM the agent's tests may scribble on (suites/test_mmio.py writes at 4 MiB, "free RAM above
/// the guest's image"): the heap starts above it.
const SCRATCH: (usize, usize) = (0x40_0000, 0x41_0000);

extern "C" {
    static __kernel_end: u8;
}

fn serial_sink(data: &[u8]) {
    serial::write(data);
}

#[no_mangle]
pub extern "C" fn kmain(start_info: u64) -> ! {
    serial::init();
    logging::set_sink(serial_sink);
    intr::init();
    time::init();
    serial_println!("microkernelia: booting at CPL3, tsc {} kHz, lapic timer {} kHz ({})",
                    time::tsc_khz(), time::lapic_khz(), time::calibrated_by());
    let kernel_end = unsafe { &__kernel_end as *const u8 as usize };
    if kernel_end > SCRATCH.0 {
        serial_println!("PANIC: microkernelia: image ends at {:#x}, above the agent's scratch RAM", kernel_end);
        serial::exit(0x7d);
    }
    let heap_start = ((kernel_end + (2 << 20) - 1) & !((2 << 20) - 1)).max(SCRATCH.1);
    let heap_end = unsafe { pvh::ram_end(start_info, heap_start) }.min(0xC000_0000);
    if heap_end <= heap_start + (8 << 20) {
        serial_println!("PANIC: microkernelia: not enough RAM (heap would be {:#x}..{:#x})", heap_start, heap_end);
        serial::exit(0x7d);
    }
    unsafe { heap::init(heap_start, heap_end) };
    serial_println!("microkernelia: heap {:#x}..{:#x} ({} MiB), stack guard page at {:#x}",
                    heap_start, heap_end, (heap_end - heap_start) >> 20, pvh::guard_page());
    let info = unsafe { pvh::StartInfo::read(start_info) };
    let cmdline: String = info.cmdline.clone();
    serial_println!("microkernelia: {} memory map entries", info.memmap.len());
    serial_println!("microkernelia: cmdline {:?}", cmdline);

    let mut vsock = None;
    let mut blk = None;
    drivers_virtio::probe(&cmdline, intr::virtio_window_irq_base(), &mut |t| {
        serial_println!("microkernelia: virtio-mmio at {:#x} irq {} device {} version {}", t.base, t.irq, t.device_id, t.version);
        match t.device_id {
            drivers_virtio::mmio::DEVICE_VSOCK if vsock.is_none() => match drivers_virtio::vsock::Vsock::init(t) {
                Ok(v) => vsock = Some(v),
                Err(e) => serial_println!("microkernelia: virtio-vsock init failed: {}", e),
            },
            drivers_virtio::mmio::DEVICE_BLK if blk.is_none() => match drivers_virtio::blk::Blk::init(t) {
                Ok(b) => {
                    serial_println!("microkernelia: virtio-blk model disk, {} sectors", b.capacity);
                    blk = Some(b)
                }
                Err(e) => serial_println!("microkernelia: virtio-blk init failed: {}", e),
            },
            _ => {}
        }
    });

    let mut scheduler = sched::Scheduler::new();
    scheduler.spawn(Box::new(agent::Agent::new()));
    match vsock {
        Some(mut v) => {
            v.listen(MCP_PORT);
            serial_println!("microkernelia: virtio-vsock guest cid {}, MCP on port {}", v.guest_cid, MCP_PORT);
            scheduler.wake_on(v.irq());
            scheduler.spawn(Box::new(mcpd::McpServer::new(v, blk)));
            serial_println!("microkernelia: mcp ready (vsock port {})", MCP_PORT);
        }
        None => {
            serial_println!("microkernelia: no virtio-vsock device: MCP unavailable (agent only)");
            if let Some(mut b) = blk {
                // Still prove the disk path works: load the model once and log it.
                match ai_runtime::load_model(&mut mcpd::ModelDisk(&mut b), mcp_core::DEFAULT_MODEL_PATH) {
                    Ok(m) => serial_println!("microkernelia: model {} loaded ({} rows)", m.name, m.rows.len()),
                    Err(e) => serial_println!("microkernelia: load_model failed: {}", e),
                }
            }
        }
    }
    serial_println!("microkernelia: interrupts on (ioapic pit pin {}, mp table {})", intr::line_pin(0), intr::mptable_found());
    intr::enable();
    agent::banner();
    scheduler.run()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial_println!("PANIC: microkernelia: {}", info);
    serial::exit(0x7d)
}

#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    serial::exit(0x7c)
}
