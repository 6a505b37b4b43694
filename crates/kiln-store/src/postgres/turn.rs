//! The writer's turns, first come first served. A plain mutex lets a thread that just released
//! it take it again before a woken waiter runs, so under a steady stream of writes some calls
//! wait for many batches: the tail latency of a batch-sized queue becomes that of a lottery.
//! Here each caller queues and is handed the turn directly, woken alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;

#[derive(Default)]
pub(super) struct Turns {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    taken: bool,
    waiting: VecDeque<(Thread, Arc<AtomicBool>)>,
}

/// The turn, handed on to the next caller in line when dropped.
pub(super) struct Turn<'a> {
    turns: &'a Turns,
}

impl Turns {
    /// Waits for this caller's turn.
    pub(super) fn take(&self) -> Turn<'_> {
        let granted = {
            let mut queue = super::lock(&self.queue);
            if !queue.taken {
                queue.taken = true;
                return Turn { turns: self };
            }
            let granted = Arc::new(AtomicBool::new(false));
            queue
                .waiting
                .push_back((std::thread::current(), granted.clone()));
            granted
        };
        // `park` may return spuriously; the flag says the turn was really handed over.
        while !granted.load(Ordering::Acquire) {
            std::thread::park();
        }
        Turn { turns: self }
    }

    /// Callers in line behind the current turn.
    pub(super) fn waiting(&self) -> usize {
        super::lock(&self.queue).waiting.len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut queue = super::lock(&self.turns.queue);
        match queue.waiting.pop_front() {
            // The turn passes directly: `taken` stays set.
            Some((thread, granted)) => {
                granted.store(true, Ordering::Release);
                thread.unpark();
            }
            None => queue.taken = false,
        }
    }
}
