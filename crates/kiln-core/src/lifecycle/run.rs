//! Driving executions: one planned image per write transaction.
//!
//! [`step`] applies the next entry of an execution's plan (or ends it), re-reading the
//! execution in the transaction that applies it, so a CancelLifecycleExecution committed
//! between two images stops the run before the next one: the execution ends CANCELLED and the
//! images it did not reach get no row. [`run_due`] is what the worker's lifecycle thread calls
//! on every look: it claims the policies whose daily run is due and steps every execution that
//! has not ended (one with a `not_before` waits, IN_PROGRESS, until then, a StartResourceStateUpdate's
//! `updateAt`).

use super::apply::{self, ContainerDeletion};
use super::start;
use crate::error::CoreResult;
use crate::lifecycle_records;
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::lifecycle::{ExecutionStatus, LifecycleExecution, ResourceStatus};
use kiln_domain::resources::Millis;
use kiln_store::{Store, Txn, TxnExt};

/// Deletes container images from their registries (the worker's `--ecr-registry`).
pub trait Registries {
    /// Deletes the image known by `image_uris` (its tags and its digest) in `region`'s
    /// registry; an image already gone is a success.
    fn delete(&self, region: &str, image_uris: &[String]) -> Result<(), String>;
}

/// What one [`step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One planned image was applied; more may follow.
    Progressed,
    /// The execution has ended (or is gone).
    Finished,
    /// The execution waits (IN_PROGRESS, with no rows, until its `not_before`).
    Waiting,
}

/// Ends `execution` SUCCESS or FAILED from its rows.
fn finish(execution: &mut LifecycleExecution, now: Millis) {
    let failed = execution
        .resources
        .iter()
        .filter(|r| r.status == ResourceStatus::Failed)
        .count();
    if failed > 0 {
        execution.status = ExecutionStatus::Failed;
        execution.reason = Some(format!("{failed} resource action(s) failed"));
    } else {
        execution.status = ExecutionStatus::Success;
    }
    execution.end_time = Some(now);
}

fn cancel(execution: &mut LifecycleExecution, now: Millis) {
    execution.status = ExecutionStatus::Cancelled;
    if execution.reason.is_none() {
        execution.reason = Some("Cancelled".to_string());
    }
    execution.end_time = Some(now);
}

/// A cancelled StartResourceStateUpdate with `updateAt` never deprecates its image: the
/// deprecation time it gave the image goes (its AMIs keep theirs: EC2 had it at once).
fn forget_scheduled_deprecation(
    tx: &mut dyn Txn,
    execution: &LifecycleExecution,
) -> CoreResult<()> {
    let (Some(at), Some(arn)) = (execution.not_before, &execution.image_arn) else {
        return Ok(());
    };
    if let Some(mut image) = tx.get::<Image>(arn)? {
        if image.deprecation_time == Some(at) && image.status != ImageStatus::Deprecated {
            image.deprecation_time = None;
            tx.put(&image)?;
        }
    }
    Ok(())
}

/// Applies the next planned image of the execution stored at `key`.
pub fn step(
    store: &Store,
    key: &str,
    registries: &dyn Registries,
    now: Millis,
) -> CoreResult<Step> {
    let Some(execution) = store.read(|tx| tx.get::<LifecycleExecution>(key))?? else {
        return Ok(Step::Finished);
    };
    if execution.status.is_terminal() {
        return Ok(Step::Finished);
    }
    if execution.status != ExecutionStatus::Cancelling
        && execution.not_before.is_some_and(|t| t > now)
    {
        return Ok(Step::Waiting);
    }
    let index = execution.done;
    // Container images are deleted before the transaction that records it (network IO).
    let mut deletions = Vec::new();
    if execution.status != ExecutionStatus::Cancelling {
        if let Some(planned) = execution.plan.get(index) {
            let outputs = store.read(|tx| apply::containers_to_delete(tx, planned))??;
            for out in outputs {
                let outcome = registries.delete(&out.region, &out.image_uris);
                deletions.push(ContainerDeletion {
                    region: out.region,
                    image_uris: out.image_uris,
                    outcome,
                });
            }
        }
    }
    store.write(|tx| step_in(tx, key, index, &deletions, now))?
}

fn step_in(
    tx: &mut dyn Txn,
    key: &str,
    index: usize,
    deletions: &[ContainerDeletion],
    now: Millis,
) -> CoreResult<Step> {
    let Some(mut execution) = tx.get::<LifecycleExecution>(key)? else {
        return Ok(Step::Finished);
    };
    if execution.status.is_terminal() {
        return Ok(Step::Finished);
    }
    if execution.status == ExecutionStatus::Cancelling {
        forget_scheduled_deprecation(tx, &execution)?;
        cancel(&mut execution, now);
        lifecycle_records::put(tx, &execution)?;
        return Ok(Step::Finished);
    }
    if execution.done != index {
        // Another worker applied this entry meanwhile.
        return Ok(Step::Progressed);
    }
    execution.status = ExecutionStatus::InProgress;
    let Some(planned) = execution.plan.get(index).cloned() else {
        finish(&mut execution, now);
        lifecycle_records::put(tx, &execution)?;
        return Ok(Step::Finished);
    };
    let rows = apply::apply(tx, &execution, &planned, deletions, now)?;
    execution.resources.extend(rows);
    execution.done += 1;
    let step = if execution.done >= execution.plan.len() {
        finish(&mut execution, now);
        Step::Finished
    } else {
        Step::Progressed
    };
    lifecycle_records::put(tx, &execution)?;
    Ok(step)
}

/// Runs `key` until it ends, waits, or `stop` says so; answers the steps that changed
/// something (a waiting execution's look is not one).
pub fn drive(
    store: &Store,
    key: &str,
    registries: &dyn Registries,
    now: &dyn Fn() -> Millis,
    stop: &dyn Fn() -> bool,
) -> CoreResult<usize> {
    let mut steps = 0;
    while !stop() {
        let s = step(store, key, registries, now())?;
        if s == Step::Waiting {
            break;
        }
        steps += 1;
        if s != Step::Progressed {
            break;
        }
    }
    Ok(steps)
}

/// One look: claims the due policies (compare-and-set of `next_run`, then a new execution or
/// the running one resumed) and drives every execution that has not ended. Answers how many
/// steps were taken.
pub fn run_due(
    store: &Store,
    registries: &dyn Registries,
    now: &dyn Fn() -> Millis,
    stop: &dyn Fn() -> bool,
) -> CoreResult<usize> {
    let at = now();
    let due = store.read(|tx| start::due_policies(tx, at))??;
    for (arn, due_at) in due {
        let started = store.write(|tx| start::claim_policy_run(tx, &arn, due_at, now()))??;
        if let Some(id) = started {
            tracing::info!(policy = %arn, execution = %id, "lifecycle policy run started");
        }
    }
    // A closure, not the function: the store's transaction lifetime is higher-ranked.
    #[allow(clippy::redundant_closure)]
    let unfinished = store.read(|tx| lifecycle_records::unfinished(tx))??;
    let mut steps = 0;
    for execution in unfinished {
        if stop() {
            break;
        }
        steps += drive(store, &execution.arn.to_string(), registries, now, stop)?;
    }
    Ok(steps)
}
