//! Cooperative round-robin scheduler: each task's `poll` does a bounded amount of work and
//! returns; the loop spins (PAUSE) when nobody had work.
use alloc::boxed::Box;
use alloc::vec::Vec;

pub trait Task {
    fn name(&self) -> &'static str;
    /// Do some work; true if anything happened.
    fn poll(&mut self, now_ns: u64) -> bool;
}

pub struct Scheduler {
    tasks: Vec<Box<dyn Task>>,
}

impl Scheduler {
    pub fn new() -> Self {
        Scheduler { tasks: Vec::new() }
    }

    pub fn spawn(&mut self, task: Box<dyn Task>) {
        logging::serial_println!("microkernelia: task {} started", task.name());
        self.tasks.push(task);
    }

    pub fn run(mut self) -> ! {
        loop {
            let now = crate::time::now_ns();
            let mut busy = false;
            for t in self.tasks.iter_mut() {
                busy |= t.poll(now);
            }
            if !busy {
                for _ in 0..64 {
                    core::hint::spin_loop();
                }
            }
        }
    }
}
