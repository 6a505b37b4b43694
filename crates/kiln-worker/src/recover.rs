//! What a new worker does before it claims anything: finish what a previous process left.
//!
//! One process owns a data directory, so every build the queue shows as claimed by a worker of
//! this directory (`<machine>/pid-<n>`, see [`crate::machine_id`]) belongs to a process that is
//! gone; on SQLite, whose database one process owns, that is every claimed build. Those whose
//! workflows can go on (no execution holds an instance that died with the process, e.g. one
//! waits for SendWorkflowStepAction) are queued again and go on
//! ([`crate::workflows::resume`]); the others end FAILED with the reason
//! [`INTERRUPTED`](crate::run::INTERRUPTED), their executions too, and their half-made store
//! entries are dropped; builds nobody claimed stay queued and run; deletions are done. On a
//! shared database, builds other machines claimed are theirs and are left alone. Then every instance
//! left in `instances/` is torn down (processes, mounts, cgroups), exports in flight are
//! removed, and the image store is collected.

use crate::run::{read_image, store_tag, transition, INTERRUPTED};
use crate::{Shared, WorkerError};
use kiln_domain::resources::image::ImageStatus;
use std::time::Duration;

/// A build whose workflows can go on after the restart (see
/// [`crate::workflows::resume`]) is queued again, unclaimed: a worker thread takes it and goes
/// on from its stored executions. `false` when it cannot go on.
fn requeue_resumable(
    shared: &Shared,
    image: &kiln_domain::resources::image::Image,
    arn: &str,
) -> Result<bool, WorkerError> {
    let runs = crate::workflows::resume::runs_of(shared, image);
    if !crate::workflows::resume::resumable(shared, image, &runs) {
        return Ok(false);
    }
    tracing::info!(arn, "the build's workflows go on after the restart");
    let now = shared.core.clock.now_millis();
    shared
        .core
        .store
        .write(|tx| {
            tx.finish_build(arn)?;
            tx.enqueue_build(arn, now)
        })
        .map_err(|e| WorkerError::Database(e.to_string()))?
        .map_err(|e| WorkerError::Database(e.to_string()))?;
    Ok(true)
}

pub fn recover(shared: &Shared) -> Result<(), WorkerError> {
    let queued = shared
        .core
        .store
        .read(|tx| tx.queued_builds())
        .map_err(|e| WorkerError::Database(e.to_string()))?
        .map_err(|e| WorkerError::Database(e.to_string()))?;
    let own_prefix = shared
        .worker_id
        .split_once('/')
        .map(|(machine, _)| format!("{machine}/"));
    let shared_queue = shared.core.store.is_shared();
    for (arn, claimed_by) in queued {
        let claimed_elsewhere = shared_queue
            && claimed_by.as_deref().is_some_and(|worker| {
                own_prefix
                    .as_deref()
                    .is_none_or(|prefix| !worker.starts_with(prefix))
            });
        if claimed_elsewhere {
            continue;
        }
        let image = read_image(shared, &arn);
        let keep_queued = match &image {
            Some(i) if i.status == ImageStatus::Deleted => {
                crate::run::remove(shared, i);
                false
            }
            Some(i) if i.status == ImageStatus::Pending && claimed_by.is_none() => true,
            Some(i) if i.status.in_progress() && requeue_resumable(shared, i, &arn)? => true,
            Some(i) if i.status.in_progress() => {
                crate::workflows::resume::fail_interrupted(
                    shared,
                    crate::workflows::resume::runs_of(shared, i),
                );
                tracing::warn!(
                    arn,
                    "marking a build interrupted by the last stop as FAILED"
                );
                let _ = shared.store.delete(&store_tag(&i.build_id));
                transition(
                    shared,
                    &arn,
                    ImageStatus::Failed,
                    Some(INTERRUPTED.to_string()),
                    |_| {},
                );
                false
            }
            _ => false,
        };
        if !keep_queued {
            shared
                .core
                .store
                .write(|tx| tx.finish_build(&arn))
                .map_err(|e| WorkerError::Database(e.to_string()))?
                .map_err(|e| WorkerError::Database(e.to_string()))?;
        }
    }
    match shared.sys.preflight() {
        Ok(()) => match kiln_instance::reap(shared.sys.as_ref(), &shared.config.instances_dir()) {
            Ok(reaped) if !reaped.is_empty() => {
                tracing::info!(?reaped, "removed instances a previous process left")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "removing instances a previous process left"),
        },
        Err(why) => tracing::warn!(%why, "builds will fail on this machine"),
    }
    let tmp = shared.config.tmp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    // Parents imported for builds that never finished.
    if let Ok(images) = shared.store.images() {
        for image in images.iter().filter(|i| i.tag.starts_with("parent-")) {
            let _ = shared.store.delete(&image.tag);
        }
    }
    // What a crash left between a tag's removal and the collection, or in the middle of
    // writing a blob (temporary files of dead processes, pins of dead processes), goes now.
    // Builds of other processes on the same store are safe: they pin what they use.
    match shared.store.gc(Duration::ZERO) {
        Ok(report) => tracing::info!(
            blobs = report.blobs.len(),
            unpacked = report.unpacked.len(),
            temporary = report.temporary,
            stale_pins = report.stale_pins,
            bytes = report.bytes + report.unpacked_bytes,
            "collected the image store"
        ),
        Err(e) => tracing::warn!(error = %e, "collecting the image store"),
    }
    Ok(())
}
