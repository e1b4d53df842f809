//! virtio-mmio (virtio 1.2, §4.2, version 2 registers) transport, split virtqueues (§2.7),
//! and the drivers microkernelia needs: virtio-vsock (§5.10) and virtio-blk (§5.2).
//!
//! Memory is identity mapped in microkernelia, so a buffer's address is its physical address.
//! Everything is polled: the used rings are checked from the scheduler loop.
#![no_std]
extern crate alloc;

pub mod blk;
pub mod mmio;
pub mod queue;
pub mod vsock;

pub use mmio::{probe, MmioTransport};
