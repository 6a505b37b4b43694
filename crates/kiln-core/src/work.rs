//! The signal between the API and the build worker: every committed write bumps a counter and
//! wakes whoever waits for one (a worker looking for queued builds or for a cancellation).
//! Waiters remember the counter they last saw, so a write that lands between a worker's look
//! at the queue and its wait is not missed.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
pub struct WorkSignal {
    writes: Mutex<u64>,
    changed: Condvar,
}

impl WorkSignal {
    fn lock(&self) -> MutexGuard<'_, u64> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many writes have committed so far.
    pub fn seen(&self) -> u64 {
        *self.lock()
    }

    /// A write committed.
    pub fn notify(&self) {
        *self.lock() += 1;
        self.changed.notify_all();
    }

    /// Waits until a write commits after `seen`, or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(guard, timeout, |n| *n == seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_write_after_seen_is_not_missed() {
        let signal = Arc::new(WorkSignal::default());
        let seen = signal.seen();
        signal.notify();
        let began = Instant::now();
        signal.wait(seen, Duration::from_secs(5));
        assert!(began.elapsed() < Duration::from_secs(1));

        let seen = signal.seen();
        let s = signal.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s.notify();
        });
        signal.wait(seen, Duration::from_secs(5));
        assert!(began.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
    }
}
