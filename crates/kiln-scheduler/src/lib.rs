//! The scheduler: starts the scheduled runs of image pipelines when they are due.
//!
//! The due set lives in the store (`schedules`: one row per pipeline that will run on its
//! schedule, indexed by time), so the scheduler holds no state of its own and never scans the
//! pipelines: each round asks the store for the runs due now, earliest first, fires each one in
//! its own write transaction ([`kiln_core::scheduled::fire`], which claims the run atomically and
//! starts the build, or records why not), then asks for the earliest next run and sleeps until
//! then. Any committed write (a pipeline created, updated, enabled) wakes it early, since it may
//! have moved the earliest run; so does [`Scheduler::stop`].
//!
//! Time comes from the core's [`kiln_core::clock::Clock`]. On a test clock, which can jump,
//! the scheduler looks every [`MANUAL_CLOCK_POLL`] instead of sleeping until the next run.
//!
//! [`Scheduler::run_due`] is one round without the waiting: tests drive it on a clock they set.

pub mod extension;

use kiln_core::scheduled::{fire, index_once};
use kiln_core::Core;
use kiln_core::CoreError;
use kiln_domain::resources::scheduled_run::ScheduleEvent;
use kiln_store::StoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest the scheduler sleeps without looking. Only a safety net: other processes'
/// schedule changes wake it through the store's notifications (PostgreSQL), this process's
/// through the work signal.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How often the scheduler looks at a test clock.
pub const MANUAL_CLOCK_POLL: Duration = Duration::from_millis(50);
/// How long the scheduler waits after a round in which the store failed.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// How many due runs one round reads at a time.
const BATCH: usize = 256;

/// A run the scheduler fired.
#[derive(Debug, Clone)]
pub struct Fired {
    pub pipeline_arn: String,
    pub event: ScheduleEvent,
}

pub struct Scheduler {
    core: Arc<Core>,
    stop: AtomicBool,
    /// Set by a round in which a firing failed (the store failed): the next round waits a
    /// little instead of retrying at once.
    failing: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    /// A scheduler that does nothing until [`Scheduler::start`] or [`Scheduler::run_due`].
    pub fn new(core: Arc<Core>) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            core,
            stop: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            thread: Mutex::new(None),
        })
    }

    /// Starts the scheduling thread. Runs missed while Kiln was down are due at once: each
    /// runs once, then its schedule goes on from now.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("kiln-scheduler".into())
            .spawn(move || me.run())?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Stops the thread and waits for it (a round under way finishes first).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.core.work.notify();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Builds the due set from the pipeline records if this database has not had one yet (see
    /// [`kiln_core::scheduled::index_once`]).
    pub fn index_once(&self) -> Result<usize, CoreError> {
        let now = self.core.clock.now_millis();
        self.core.store.write(|tx| index_once(tx, now))?
    }

    fn run(&self) {
        match self.index_once() {
            Ok(0) => {}
            Ok(read) => tracing::info!(pipelines = read, "indexed the pipelines' schedules"),
            Err(e) => {
                tracing::error!(error = %e, "indexing the pipelines' schedules failed")
            }
        }
        tracing::info!("scheduler started");
        while !self.stop.load(Ordering::SeqCst) {
            let seen = self.core.work.seen();
            if let Err(e) = self.run_due() {
                tracing::error!(error = %e, "scheduler round failed");
            }
            let wait = match self.sleep_for() {
                Ok(_) if self.failing.load(Ordering::SeqCst) => FAILURE_BACKOFF,
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "reading the next scheduled run failed");
                    FAILURE_BACKOFF
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.core.work.wait(seen, wait);
        }
        tracing::info!("scheduler stopped");
    }

    /// How long to sleep before the next round.
    fn sleep_for(&self) -> Result<Duration, StoreError> {
        let clock = &self.core.clock;
        if clock.is_manual() {
            return Ok(MANUAL_CLOCK_POLL);
        }
        let earliest = self.core.store.read(|tx| tx.earliest_run())??;
        Ok(match earliest {
            None => MAX_SLEEP,
            Some(at) => {
                let millis = u64::try_from(at - clock.now_millis()).unwrap_or(0);
                Duration::from_millis(millis).min(MAX_SLEEP)
            }
        })
    }

    /// One round: fires every run due at the clock's current time and answers what fired.
    pub fn run_due(&self) -> Result<Vec<Fired>, StoreError> {
        let now = self.core.clock.now_millis();
        let mut fired = Vec::new();
        self.failing.store(false, Ordering::SeqCst);
        loop {
            let due = self.core.store.read(|tx| tx.due_runs(now, BATCH))??;
            let full = due.len() == BATCH;
            let mut progressed = false;
            for (pipeline_arn, due_at) in due {
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(fired);
                }
                let outcome = self
                    .core
                    .store
                    .write(|tx| fire(tx, &pipeline_arn, due_at, now))?;
                self.core.work.notify();
                match outcome {
                    Ok(Some(event)) => {
                        progressed = true;
                        fired.push(Fired {
                            pipeline_arn,
                            event,
                        });
                    }
                    Ok(None) => progressed = true,
                    Err(e) => {
                        // The transaction rolled back: the run stays due, and is retried after
                        // a pause.
                        self.failing.store(true, Ordering::SeqCst);
                        tracing::error!(pipeline = %pipeline_arn, error = %e, "firing a scheduled run failed");
                    }
                }
            }
            if !full || !progressed {
                return Ok(fired);
            }
        }
    }
}
