//! Builds whose worker was lost. A worker renews the leases of the builds it claimed every
//! third of the lease; a lease that ran out (on the service clock) means its worker died, hung
//! or lost the database, and any Kiln process may then end the build: FAILED, naming the worker
//! and when it was last seen, out of the queue, with the pipeline's last-run fields kept as the
//! worker would have kept them. The queue entry is taken with a compare-and-delete in the same
//! transaction, so a worker that renews at the last moment keeps its build, and two processes
//! never both end it. A lost worker that is still running (it was cut off from the database)
//! sees its image FAILED by someone else and stops the build without touching it again.

use crate::images::move_image;
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_store::{Lease, StoreError, Txn, TxnExt};

/// What became of one expired lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The build ended FAILED with this reason.
    Failed(String),
    /// A deletion the lost worker had claimed: queued again for another worker.
    Requeued,
    /// The image had already ended (or is gone): only its queue entry was removed.
    Removed,
    /// The worker renewed its lease, or another process took it first: nothing changed.
    Kept,
}

/// The reason a lost worker's build ends FAILED with.
pub fn lost_worker_reason(lease: &Lease) -> String {
    let seen = match lease.heartbeat_millis {
        Some(millis) => format!("last seen {}", rfc3339(millis)),
        None => "claimed before leases existed".to_string(),
    };
    format!(
        "the build worker {} stopped renewing its lease ({seen}); the build was abandoned",
        lease.worker
    )
}

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{millis} ms after the epoch"))
}

/// The lost worker never closes the build's log in the database: its end is written for it,
/// so that `kiln logs --follow` through any server ends with the reason.
fn close_log(tx: &mut dyn Txn, build_id: &str, reason: &str, now: i64) -> Result<(), StoreError> {
    let log = tx.read_build_log(build_id, u64::MAX, 0)?;
    if log.complete {
        return Ok(());
    }
    let line = format!("{} FAILED: {reason}\n", rfc3339(now));
    tx.append_build_log(build_id, log.size, line.as_bytes(), true)
}

/// Ends the build `lease` names if its lease is still over at `now`: in one transaction.
pub fn end_expired(tx: &mut dyn Txn, lease: &Lease, now: i64) -> Result<Ended, StoreError> {
    if !tx.take_expired(lease, now)? {
        return Ok(Ended::Kept);
    }
    let Some(image) = tx.get::<Image>(&lease.arn)? else {
        return Ok(Ended::Removed);
    };
    if image.status == ImageStatus::Deleted {
        // Removing a deleted image is safe to do twice: another worker does it.
        tx.enqueue_build(&lease.arn, now)?;
        return Ok(Ended::Requeued);
    }
    let reason = lost_worker_reason(lease);
    if move_image(
        tx,
        &lease.arn,
        ImageStatus::Failed,
        Some(reason.clone()),
        now,
        |_| {},
    )? {
        close_log(tx, &image.build_id, &reason, now)?;
        // Its workflow executions end too: nothing runs them any more.
        crate::workflow_runs::settle_of_image(tx, &image.arn, &reason, now).map_err(
            |e| match e {
                crate::error::CoreError::Storage(e) => e,
                other => StoreError::Corrupt {
                    arn: lease.arn.clone(),
                    message: other.to_string(),
                },
            },
        )?;
        Ok(Ended::Failed(reason))
    } else {
        Ok(Ended::Removed)
    }
}
