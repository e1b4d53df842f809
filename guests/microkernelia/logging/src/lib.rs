//! Kernel log: a fixed-size ring buffer behind `serial_println!`.
//!
//! Every line written with `serial_println!` goes to the ring buffer (readable later through
//! `log_read`, which the MCP `logs` tool uses) and to a sink the kernel installs (the serial
//! port). Single core, cooperative: a tiny spin flag guards against re-entry only.
#![no_std]

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Capacity of the ring buffer in bytes.
pub const RING_SIZE: usize = 64 * 1024;

struct Ring {
    buf: [u8; RING_SIZE],
    /// Total bytes ever written: the write position is `head % RING_SIZE`.
    head: u64,
}

struct Shared(UnsafeCell<Ring>);
// Single core, and every access goes through `with_ring`, which holds LOCK.
unsafe impl Sync for Shared {}

static RING: Shared = Shared(UnsafeCell::new(Ring { buf: [0; RING_SIZE], head: 0 }));
static LOCK: AtomicBool = AtomicBool::new(false);
static SINK: AtomicUsize = AtomicUsize::new(0);

fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> R {
    while LOCK.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
    // SAFETY: LOCK is held, so this is the only reference.
    let r = f(unsafe { &mut *RING.0.get() });
    LOCK.store(false, Ordering::Release);
    r
}

/// Install the function that receives every logged byte (the kernel's serial writer).
pub fn set_sink(sink: fn(&[u8])) {
    SINK.store(sink as usize, Ordering::Release);
}

/// Append raw bytes to the ring and pass them to the sink.
pub fn log_write(data: &[u8]) {
    with_ring(|ring| {
        for &b in data {
            let pos = (ring.head % RING_SIZE as u64) as usize;
            ring.buf[pos] = b;
            ring.head += 1;
        }
    });
    let sink = SINK.load(Ordering::Acquire);
    if sink != 0 {
        // SAFETY: only ever set from a `fn(&[u8])` in set_sink.
        let f: fn(&[u8]) = unsafe { core::mem::transmute(sink) };
        f(data);
    }
}

/// Total bytes ever logged (a cursor for `log_read`).
pub fn log_position() -> u64 {
    with_ring(|ring| ring.head)
}

/// Copy logged bytes starting at absolute position `since` into `out` (at most `out.len()`
/// bytes; older bytes already overwritten are skipped). Returns (first position copied,
/// bytes copied). With `since == None` the newest `out.len()` bytes are returned.
pub fn log_read(since: Option<u64>, out: &mut [u8]) -> (u64, usize) {
    with_ring(|ring| {
        let oldest = ring.head.saturating_sub(RING_SIZE as u64);
        let start = match since {
            Some(s) => s.max(oldest).min(ring.head),
            None => ring.head.saturating_sub(out.len() as u64).max(oldest),
        };
        let n = ((ring.head - start) as usize).min(out.len());
        for (i, slot) in out[..n].iter_mut().enumerate() {
            *slot = ring.buf[((start + i as u64) % RING_SIZE as u64) as usize];
        }
        (start, n)
    })
}

/// `core::fmt` adapter that logs what it is given.
pub struct LogWriter;

impl Write for LogWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        log_write(s.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = LogWriter.write_fmt(args);
}

/// `println!` for the kernel: serial console + ring buffer (`\r\n` line ends).
#[macro_export]
macro_rules! serial_println {
    () => { $crate::log_write(b"\r\n") };
    ($($arg:tt)*) => {{
        $crate::_print(format_args!($($arg)*));
        $crate::log_write(b"\r\n");
    }};
}

/// `print!` for the kernel (no line end).
#[macro_export]
macro_rules! serial_print {
    ($($arg:tt)*) => { $crate::_print(format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    // One test only: the ring is a global.
    #[test]
    fn ring_keeps_newest_bytes_and_reads_from_a_cursor() {
        let start = log_position();
        serial_println!("hello {}", 42);
        let mut out = vec![0u8; 64];
        let (pos, n) = log_read(Some(start), &mut out);
        assert_eq!(pos, start);
        assert_eq!(&out[..n], b"hello 42\r\n");
        // Overflow the ring: only the newest RING_SIZE bytes survive.
        let chunk = [b'x'; 1000];
        for _ in 0..(RING_SIZE / 1000 + 5) {
            log_write(&chunk);
        }
        log_write(b"END");
        let mut all = vec![0u8; RING_SIZE * 2];
        let (first, n) = log_read(Some(0), &mut all);
        assert_eq!(n, RING_SIZE);
        assert_eq!(first, log_position() - RING_SIZE as u64);
        assert!(all[..n].ends_with(b"xxEND"));
        let mut tail = [0u8; 3];
        assert_eq!(log_read(None, &mut tail).1, 3);
        assert_eq!(&tail, b"END");
    }
}
