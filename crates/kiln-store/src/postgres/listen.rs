//! Wake-ups across processes: the writes other processes must act on (a build queued, a
//! schedule set) send `NOTIFY kiln_work` inside their transaction, which PostgreSQL delivers
//! when it commits and drops when it rolls back. Each process keeps one connection of its own
//! (not from the pool) that `LISTEN`s on the channel and calls back on every notification, so
//! idle workers and schedulers sleep instead of polling the database.
//!
//! A notification sent while the listener is not connected is lost, so after every
//! (re)connection the callback runs once: whoever it wakes looks at the database anyway. A
//! dropped connection is noticed when the socket closes, or by a ping after a quiet minute (a
//! server that vanished without closing it); the listener then reconnects with a growing pause.

use super::PgStore;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The channel (the statements of `txn.rs` that notify spell it out).
pub const CHANNEL: &str = "kiln_work";
/// How long one wait for a notification lasts before the stop flag is looked at again.
const TICK: Duration = Duration::from_secs(2);
/// How long a quiet connection goes before it is pinged.
const PING_AFTER: Duration = Duration::from_secs(60);
/// The longest pause between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The listening thread; dropping this stops it (within a couple of seconds).
pub struct Listener {
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl PgStore {
    /// Starts a thread that calls `on_wake` after every committed write that sent a
    /// notification (several at once may come as one call), and once after each connection.
    pub fn listen(&self, on_wake: impl Fn() + Send + 'static) -> std::io::Result<Listener> {
        let stop = Arc::new(AtomicBool::new(false));
        let config = self.config.clone();
        let shown = self.shown.clone();
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("kiln-listen".into())
            .spawn(move || run(&config, &shown, &stopping, &on_wake))?;
        Ok(Listener { stop })
    }
}

fn run(config: &postgres::Config, shown: &str, stop: &AtomicBool, on_wake: &dyn Fn()) {
    let mut backoff = Duration::from_millis(250);
    let mut lost = false;
    while !stop.load(Ordering::SeqCst) {
        match connect(config) {
            Ok(mut client) => {
                if lost {
                    tracing::info!(database = shown, "listening for work again");
                }
                backoff = Duration::from_millis(250);
                on_wake();
                let why = listen(&mut client, stop, on_wake);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                tracing::warn!(database = shown, %why, "the connection listening for work was lost; reconnecting");
                lost = true;
            }
            Err(e) => {
                tracing::warn!(database = shown, error = %e, retry_in = ?backoff, "cannot listen for work");
                lost = true;
            }
        }
        sleep_unless_stopped(backoff, stop);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn connect(config: &postgres::Config) -> Result<Client, postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    Ok(client)
}

/// Waits for notifications until the connection fails (the answer says why) or `stop`.
fn listen(client: &mut Client, stop: &AtomicBool, on_wake: &dyn Fn()) -> String {
    let mut quiet = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        let got = {
            let mut notifications = client.notifications();
            let first = notifications.timeout_iter(TICK).next();
            // Everything already received is answered by the same wake-up.
            while let Ok(Some(_)) = notifications.iter().next() {}
            first
        };
        match got {
            Ok(Some(_)) => {
                quiet = Duration::ZERO;
                on_wake();
            }
            Ok(None) if client.is_closed() => return "the server closed it".to_string(),
            Ok(None) => {
                quiet += TICK;
                if quiet >= PING_AFTER {
                    quiet = Duration::ZERO;
                    if let Err(e) = client.is_valid(Duration::from_secs(10)) {
                        return e.to_string();
                    }
                }
            }
            Err(e) => return e.to_string(),
        }
    }
    String::new()
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        slept += step;
    }
}
