//! The store's generation, awaited without a thread per request: how a cached `Get*` answer is
//! checked on a shared database.
//!
//! On PostgreSQL a cached answer is served only if the write generation, read by a query sent
//! after the request arrived, is still the one the answer was read at (see ARCHITECTURE.md).
//! That read blocks (the `postgres` client does), so a request that had to wait for it on a
//! blocking thread of its own would pay a thread hop and a wake-up per request. Instead one
//! thread of this service makes the reads, one at a time, and every request awaits the first
//! read numbered after its arrival: each read serves all the requests that arrived while the
//! previous one was out, and a request never holds a thread while it waits.

use kiln_core::Core;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::Notify;

pub(crate) struct SharedGeneration {
    state: Mutex<State>,
    /// A request wants a read.
    demand: Condvar,
    /// A read was answered.
    answered: Notify,
}

#[derive(Default)]
struct State {
    /// Reads numbered so far; a read is numbered just before it is sent.
    sent: u64,
    /// The number of the last read answered, and its answer.
    answered: u64,
    value: u64,
    /// The highest read number a request waits for.
    wanted: u64,
    /// The reading thread waits for demand (else it will see the new demand by itself: no
    /// wake-up, which is a system call, per request).
    idle: bool,
}

/// How long the reading thread waits for demand before it checks that the service still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedGeneration {
    /// Starts the reading thread, which ends once the service and its core are gone.
    pub(crate) fn start(core: Weak<Core>) -> std::io::Result<Arc<SharedGeneration>> {
        let shared = Arc::new(SharedGeneration {
            state: Mutex::default(),
            demand: Condvar::new(),
            answered: Notify::new(),
        });
        let this = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("kiln-generation".into())
            .spawn(move || read_on_demand(this, core))?;
        Ok(shared)
    }

    /// The generation as read by a query sent after this call began.
    pub(crate) async fn current(&self) -> u64 {
        let (wanted, idle) = {
            let mut state = lock(&self.state);
            let wanted = state.sent + 1;
            state.wanted = state.wanted.max(wanted);
            (wanted, state.idle)
        };
        if idle {
            self.demand.notify_one();
        }
        loop {
            // Registered before the check, so an answer published in between still wakes it.
            let mut notified = std::pin::pin!(self.answered.notified());
            notified.as_mut().enable();
            {
                let state = lock(&self.state);
                if state.answered >= wanted {
                    return state.value;
                }
            }
            notified.await;
        }
    }
}

fn read_on_demand(this: Weak<SharedGeneration>, core: Weak<Core>) {
    loop {
        let Some(shared) = this.upgrade() else {
            return;
        };
        let mine = {
            let mut state = lock(&shared.state);
            if state.wanted <= state.answered {
                state.idle = true;
                let (mut state, _) = shared
                    .demand
                    .wait_timeout(state, IDLE_CHECK)
                    .unwrap_or_else(|p| p.into_inner());
                state.idle = false;
                // Check for demand (and that the service still exists) again.
                continue;
            }
            state.sent += 1;
            state.sent
        };
        let Some(core) = core.upgrade() else {
            return;
        };
        let value = core.store.generation();
        drop(core);
        {
            let mut state = lock(&shared.state);
            state.answered = mine;
            state.value = value;
        }
        shared.answered.notify_waiters();
    }
}
