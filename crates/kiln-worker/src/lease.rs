//! The lease keeper: one thread per process on a shared database. Every third of the lease it
//! renews the leases of the builds this process's workers hold (a heartbeat: one write), then
//! ends the builds of workers whose lease ran out on the service clock
//! ([`kiln_core::leases::end_expired`]): FAILED naming the lost worker, out of the queue. It
//! runs in `kiln serve` too, even with no build threads, so a dead worker's builds end whoever
//! is left.
//!
//! On SQLite there is no keeper: one process owns the database, so a claim can only outlive
//! its worker when the whole process died, and the next start's recovery ends it.

use crate::Shared;
use kiln_core::leases::{end_expired, Ended};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// How many expired leases one look reads at a time.
const BATCH: usize = 64;

/// How long the keeper waits between two rounds: a third of the lease, so that a renewal
/// that fails once (a slow or restarting database) still leaves time for the next.
pub fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(100))
}

/// Runs rounds until `stop` is dropped.
pub(crate) fn keep(shared: &Arc<Shared>, renew: bool, stop: &Receiver<()>) {
    let every = renew_every(shared.config.lease);
    loop {
        if renew {
            renew_own(shared);
        }
        end_lost(shared);
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn renew_own(shared: &Shared) {
    let now = shared.core.clock.now_millis();
    let expires = now.saturating_add(crate::lease_millis(shared.config.lease));
    let renewed = shared
        .core
        .store
        .write(|tx| tx.renew_leases(&shared.worker_id, now, expires));
    match renewed {
        Ok(Ok(n)) => tracing::trace!(builds = n, "renewed the build leases"),
        Ok(Err(e)) | Err(e) => {
            tracing::warn!(error = %e, worker = %shared.worker_id, "renewing the build leases failed")
        }
    }
}

/// Ends every build whose lease ran out; each in its own transaction.
pub fn end_lost(shared: &Shared) {
    loop {
        let now = shared.core.clock.now_millis();
        let expired = match shared.core.store.read(|tx| tx.expired_leases(now, BATCH)) {
            Ok(Ok(expired)) => expired,
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(error = %e, "looking for expired build leases failed");
                return;
            }
        };
        let full = expired.len() == BATCH;
        let mut changed = false;
        for lease in &expired {
            // Never our own: renewed just before, unless the database was out of reach, and
            // then this process's builds are the ones to keep.
            if lease.worker == shared.worker_id {
                continue;
            }
            match shared.core.store.write(|tx| end_expired(tx, lease, now)) {
                Ok(Ok(Ended::Failed(reason))) => {
                    changed = true;
                    tracing::warn!(arn = %lease.arn, worker = %lease.worker, %reason, "ended the build of a lost worker");
                }
                Ok(Ok(Ended::Requeued)) => {
                    changed = true;
                    tracing::info!(arn = %lease.arn, worker = %lease.worker, "queued again a deletion a lost worker had claimed");
                }
                Ok(Ok(Ended::Removed)) => changed = true,
                Ok(Ok(Ended::Kept)) => {}
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(arn = %lease.arn, error = %e, "ending the build of a lost worker failed");
                }
            }
        }
        if changed {
            shared.core.work.notify();
        }
        if !full || !changed {
            return;
        }
    }
}
