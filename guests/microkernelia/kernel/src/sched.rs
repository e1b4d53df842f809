//! Cooperative round-robin scheduler: each task's `poll` does a bounded amount of work and
//! returns. While work keeps coming the loop spins (PAUSE), so a burst of requests is served
//! at polling speed; after `SPIN_BEFORE_SLEEP_NS` without work it sleeps in HLT until an
//! interrupt (the console UART, a virtio device's line, or a LAPIC one-shot that bounds the
//! sleep), so an idle unikernel costs its host almost nothing.
use crate::{intr, time};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// How long the loop keeps spinning after the last work: covers the gap between one request
/// and the next in a burst (a sleep and its wake-up cost ring-0 round trips, emulated under PVM).
const SPIN_BEFORE_SLEEP_NS: u64 = 2_000_000;
/// The longest single sleep: tasks' own timeouts (re-notifying the device, closing a connection
/// that never finished) are checked at least this often; the console has its own interrupt.
const SLEEP_SLICE_NS: u64 = 50_000_000;

pub trait Task {
    fn name(&self) -> &'static str;
    /// Do some work; true if anything happened.
    fn poll(&mut self, now_ns: u64) -> bool;
    /// About to sleep: quiet the device's interrupt so its next event raises the line again.
    fn before_sleep(&mut self) {}
}

pub struct Scheduler {
    tasks: Vec<Box<dyn Task>>,
    /// GSIs of devices whose interrupt must end a sleep (routed to VEC_VIRTIO).
    wake_gsis: Vec<u32>,
    wake_lines_open: bool,
}

impl Scheduler {
    pub fn new() -> Self {
        Scheduler { tasks: Vec::new(), wake_gsis: Vec::new(), wake_lines_open: false }
    }

    pub fn spawn(&mut self, task: Box<dyn Task>) {
        logging::serial_println!("microkernelia: task {} started", task.name());
        self.tasks.push(task);
    }

    /// An interrupt on `gsi` ends a sleep.
    pub fn wake_on(&mut self, gsi: u32) {
        intr::gsi_route(gsi, intr::VEC_VIRTIO);
        self.wake_gsis.push(gsi);
    }

    fn poll_all(&mut self) -> bool {
        let now = time::now_ns();
        let mut busy = false;
        for t in self.tasks.iter_mut() {
            busy |= t.poll(now);
        }
        busy
    }

    fn set_wake_lines(&mut self, open: bool) {
        if self.wake_lines_open != open {
            for &gsi in &self.wake_gsis {
                intr::gsi_set_mask(gsi, !open);
            }
            self.wake_lines_open = open;
        }
    }

    /// Sleep until an interrupt or `SLEEP_SLICE_NS`, unless work turns up on the way in.
    fn sleep(&mut self) -> bool {
        // Any interrupt taken from here on cancels the HLT (intr::wait), which closes the race
        // between the last look at the queues and the sleep.
        let gen = intr::generation();
        for t in self.tasks.iter_mut() {
            t.before_sleep();
        }
        self.set_wake_lines(true);
        // Look once more: an event between the last poll and the acknowledgement raised no edge.
        if self.poll_all() {
            return true;
        }
        time::lapic_arm_vector_ns(intr::VEC_IDLE, SLEEP_SLICE_NS);
        intr::wait(gen);
        time::lapic_disarm();
        false
    }

    pub fn run(mut self) -> ! {
        let mut last_work = time::now_ns();
        loop {
            let mut busy = self.poll_all();
            if !busy && time::now_ns().saturating_sub(last_work) >= SPIN_BEFORE_SLEEP_NS {
                busy = self.sleep();
                if !busy {
                    continue; // woken: poll, and sleep again at once if nothing came
                }
            }
            if busy {
                // Serving: the queues are polled, so device interrupts would only cost traps.
                self.set_wake_lines(false);
                last_work = time::now_ns();
            } else {
                for _ in 0..64 {
                    core::hint::spin_loop();
                }
            }
        }
    }
}
