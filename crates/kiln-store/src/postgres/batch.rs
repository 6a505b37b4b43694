//! Group commit: the write calls of one process that arrive while a write transaction is open
//! join it, each in a savepoint of its own, and one `COMMIT` (one WAL flush) answers them all.
//!
//! A write transaction holds the database-wide writer lock until it commits, and with
//! `synchronous_commit = on` the commit waits for the WAL to reach the disk, so the lock is held
//! across that flush. Measured on the reference machine (pgbench, one client, lock + one
//! UPDATE): 1.5–4.5 ms per transaction with the flush, 0.33 ms without; at 32 clients the lock
//! serializes everything and the flush is paid 250–600 times a second, whatever the load.
//! Sharing one flush among every call that queued up meanwhile is what lifts that ceiling.
//!
//! The protocol, on one writer connection per process kept behind a mutex:
//! - a caller takes the mutex; if no transaction is open it sends `BEGIN`, the writer lock,
//!   the generation bump and its savepoint in one round trip; otherwise the previous member
//!   left a savepoint ready for it;
//! - it runs its closure. Writes whose results the closure does not read are deferred (see
//!   `Conn::defer`) and go, in the member's last round trip, with what follows it: a savepoint
//!   for the next member, or the batch's `COMMIT`;
//! - on `Err`, a panic, or a statement that failed inside a closure that returned `Ok` (or a
//!   deferred write that failed), `ROLLBACK TO SAVEPOINT` undoes its changes alone;
//! - if others are queued for the mutex and the batch is under its caps, it leaves the
//!   transaction open for them and waits for the batch's outcome; otherwise it commits and
//!   publishes the outcome to every member. A failed `COMMIT` fails every member; a batch in
//!   which every member failed rolls back instead (no WAL flush).
//!
//! Nothing is answered before its batch committed, not even a closure's `Err`: it may have been
//! decided on rows an earlier member wrote, which exist only if the batch commits.

use super::txn::{Carried, Conn, PgTxn, MARKER};
use super::PgStore;
use crate::error::StoreError;
use crate::txn::Txn;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most calls in one transaction. Every member's savepoint is a subtransaction, and past 64 per
/// transaction PostgreSQL's snapshot checks fall back to `pg_subtrans` for every reader.
const MAX_MEMBERS: usize = 32;
/// Longest a batch stays open for more members: bounds the first member's wait.
const MAX_AGE: Duration = Duration::from_millis(8);

pub(super) struct Writer {
    slot: Mutex<Slot>,
    /// Callers waiting for `slot`: a batch stays open only if one will join it.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    /// The writer connection, kept between batches (not in the pool).
    conn: Option<Conn>,
    open: Option<Open>,
}

/// The open transaction.
struct Open {
    batch: Arc<Batch>,
    members: usize,
    /// Members whose changes stay: with none, the batch rolls back instead (no WAL flush).
    kept: usize,
    began: Instant,
}

/// Where a member's call stands after `end_member`, with the reason its own statements failed
/// (if they did).
enum Ended {
    /// Its batch has ended (committed, or rolled back having nothing to keep).
    Committed(Option<String>),
    /// Its batch stays open for others: wait for this. Its end went with the next member's
    /// first round trip, and may yet fail: then the reason is in the last part.
    Open(
        Arc<Batch>,
        Option<String>,
        Option<Arc<Mutex<Option<String>>>>,
    ),
}

/// How a batch ended, for the members waiting on it.
#[derive(Default)]
struct Batch {
    outcome: Mutex<Option<Result<(), String>>>,
    ended: Condvar,
}

impl Batch {
    fn publish(&self, outcome: Result<(), String>) {
        *super::lock(&self.outcome) = Some(outcome);
        self.ended.notify_all();
    }

    fn wait(&self) -> Result<(), StoreError> {
        let mut outcome = super::lock(&self.outcome);
        loop {
            if let Some(result) = outcome.as_ref() {
                return result
                    .clone()
                    .map_err(|reason| StoreError::BatchFailed { reason });
            }
            outcome = self.ended.wait(outcome).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Writer {
    pub(super) fn new() -> Writer {
        Writer {
            slot: Mutex::new(Slot::default()),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl PgStore {
    /// See [`PgStore::write`].
    pub(super) fn write_batched<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        let writer = &self.writer;
        writer.waiting.fetch_add(1, Ordering::SeqCst);
        let mut slot = super::lock(&writer.slot);
        writer.waiting.fetch_sub(1, Ordering::SeqCst);

        // An open batch has a savepoint ready for its next member (see `end_member`).
        let conn = match (slot.open.is_some(), slot.conn.take()) {
            (true, Some(conn)) => conn,
            (true, None) => return Err(self.abort_batch(&mut slot, None, "no writer connection")),
            (false, conn) => {
                slot.conn = conn;
                self.begin_batch(&mut slot)?
            }
        };

        let mut txn = PgTxn { conn };
        let ran = catch_unwind(AssertUnwindSafe(|| f(&mut txn)));
        let ended = self.end_member(&mut slot, txn.conn, matches!(ran, Ok(Ok(_))));
        drop(slot);
        let (committed, own_failure) = match ended {
            Ok(Ended::Committed(own_failure)) => (Ok(()), own_failure),
            Ok(Ended::Open(batch, own_failure, carried)) => {
                let committed = batch.wait();
                let carried_failure = carried.and_then(|f| super::lock(&f).take());
                (committed, own_failure.or(carried_failure))
            }
            Err(e) => (Err(e), None),
        };
        let result = match ran {
            Err(panic) => resume_unwind(panic),
            Ok(result) => result,
        };
        committed?;
        match own_failure {
            Some(reason) if result.is_ok() => Err(StoreError::BatchFailed {
                reason: format!(
                    "a statement failed inside a call that then returned success: {reason}"
                ),
            }),
            _ => Ok(result),
        }
    }

    /// Ends the caller's part of the open batch, in one round trip: its deferred writes and a
    /// savepoint for the next member, or `ROLLBACK TO SAVEPOINT` if its closure failed; and if
    /// nobody else is queued (or the batch is full), the batch's `COMMIT` in the same query.
    /// The caller's changes are kept only if `ok` and none of its statements failed; if they
    /// were not, the reason comes back with the outcome.
    fn end_member(&self, slot: &mut Slot, mut conn: Conn, ok: bool) -> Result<Ended, StoreError> {
        // The previous member's end, if this call sent nothing to carry it (a failure to
        // undo it marks this call failed).
        let _ = conn.send_carried();
        let (pending, pending_statements) = conn.end_call();
        let failed = std::mem::take(&mut conn.failed);
        let Some(open) = slot.open.as_mut() else {
            return Err(self.abort_batch(slot, Some(conn), "the batch vanished"));
        };
        open.members += 1;
        let more = self.writer.waiting.load(Ordering::SeqCst) > 0
            && open.members < MAX_MEMBERS
            && open.began.elapsed() < MAX_AGE;
        // After this member: a savepoint for the next, or the end of the batch.
        let end = |kept: usize| match (more, kept) {
            (true, _) => "",
            (false, 0) => "ROLLBACK",
            (false, _) => "COMMIT",
        };
        let mut own_failure = failed.then(|| "the call went on past its error".to_string());
        let keep = ok && !failed;
        if keep && more {
            // Sent with the next member's first round trip (when that is a prefetch; else on
            // its own before it): one round trip less per call while the writer lock is held.
            let member = open.members;
            let failure = Arc::new(Mutex::new(None));
            conn.carried = Some(Carried {
                sql: format!(
                    "{pending}SELECT set_config('{MARKER}', '{member}', true);\nSAVEPOINT member;\n"
                ),
                statements: pending_statements + 2,
                member,
                failure: failure.clone(),
            });
            open.kept += 1;
            let batch = open.batch.clone();
            slot.conn = Some(conn);
            return Ok(Ended::Open(batch, own_failure, Some(failure)));
        }
        let sent = if keep {
            let next = if more {
                "SAVEPOINT member"
            } else {
                end(open.kept + 1)
            };
            match conn.client.batch_execute(&format!("{pending}{next}")) {
                Ok(()) => {
                    open.kept += 1;
                    Ok(())
                }
                // A deferred write failed: the transaction waits for the rollback to this
                // member's savepoint. If the end failed instead, that rollback fails too, and
                // the end's error is the batch's.
                Err(e) if !pending.is_empty() => {
                    let end = end(open.kept);
                    match conn
                        .client
                        .batch_execute(&format!("ROLLBACK TO SAVEPOINT member; {end}"))
                    {
                        Ok(()) => {
                            own_failure = Some(e.to_string());
                            Ok(())
                        }
                        Err(_) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        } else {
            // The savepoint survives its rollback, ready for the next member.
            let end = end(open.kept);
            conn.client
                .batch_execute(&format!("ROLLBACK TO SAVEPOINT member; {end}"))
        };
        if let Err(e) = sent {
            return Err(self.abort_batch(slot, Some(conn), &e.to_string()));
        }
        slot.conn = Some(conn);
        if more {
            return Ok(Ended::Open(open.batch.clone(), own_failure, None));
        }
        if let Some(open) = slot.open.take() {
            open.batch.publish(Ok(()));
        }
        Ok(Ended::Committed(own_failure))
    }

    /// Opens a transaction on the writer connection (opening that first if needed): `BEGIN`,
    /// the writer lock, the generation bump and the first member's savepoint, one round trip.
    fn begin_batch(&self, slot: &mut Slot) -> Result<Conn, StoreError> {
        let mut conn = match slot.conn.take() {
            Some(conn) => conn,
            None => self.connect()?,
        };
        if let Err(e) = conn.client.batch_execute(&self.begin_write) {
            if !super::is_closed(&e, &conn) {
                slot.conn = self.rolled_back(conn);
                return Err(e.into());
            }
            // The server closed the kept connection (it restarted, or dropped idle clients):
            // nothing has run on it yet, so the batch can start over on a new one.
            drop(conn);
            self.forget();
            conn = self.connect()?;
            if let Err(e) = conn.client.batch_execute(&self.begin_write) {
                slot.conn = self.rolled_back(conn);
                return Err(e.into());
            }
        }
        slot.open = Some(Open {
            batch: Arc::new(Batch::default()),
            members: 0,
            kept: 0,
            began: Instant::now(),
        });
        Ok(conn)
    }

    /// The open transaction cannot go on: rolls it back, fails every member waiting on it, and
    /// returns the error for the caller.
    fn abort_batch(&self, slot: &mut Slot, conn: Option<Conn>, reason: &str) -> StoreError {
        if let Some(conn) = conn.or_else(|| slot.conn.take()) {
            slot.conn = self.rolled_back(conn);
        }
        if let Some(open) = slot.open.take() {
            open.batch.publish(Err(reason.to_string()));
        }
        StoreError::BatchFailed {
            reason: reason.to_string(),
        }
    }

    /// The connection after `ROLLBACK`, or `None` (and its place freed) if even that failed.
    fn rolled_back(&self, mut conn: Conn) -> Option<Conn> {
        conn.failed = false;
        conn.carried = None;
        if conn.client.batch_execute("ROLLBACK").is_ok() && !conn.client.is_closed() {
            Some(conn)
        } else {
            drop(conn);
            self.forget();
            None
        }
    }
}
