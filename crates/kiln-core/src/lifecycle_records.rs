//! The stored lifecycle executions: the one place that reads and writes them.
//!
//! An execution is a row of kind `lifecycle-execution` keyed
//! [`LifecycleExecution::key`]`(region, account, id)`, in the account and Region it ran for.
//! The API's read operations (GetLifecycleExecution, ListLifecycleExecutions,
//! ListLifecycleExecutionResources), CancelLifecycleExecution, DeleteLifecyclePolicy and the
//! engine that runs policies all go through these functions, so they agree on the layout.
//!
//! Lists scan the account's executions in the Region (linear, like `workflow_runs`) and answer
//! them newest first (by start time, then id, so equal times keep one order across pages).

use crate::error::CoreResult;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::lifecycle::LifecycleExecution;
use kiln_domain::resources::Millis;
use kiln_store::{ListQuery, Txn, TxnExt};

/// The execution `id` of `account` in `region`, if there is one.
pub fn get(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    id: &str,
) -> CoreResult<Option<LifecycleExecution>> {
    Ok(tx.get(&LifecycleExecution::key(region, account, id).to_string())?)
}

/// What every unfinished execution references (the store's reference index, kept by [`put`]),
/// so that the worker finds them without reading every execution ever run: a key, not a row.
const UNFINISHED: &str = "kiln:lifecycle-execution-unfinished";

pub fn put(tx: &mut dyn Txn, execution: &LifecycleExecution) -> CoreResult<()> {
    tx.put(execution)?;
    let marker = if execution.status.is_terminal() {
        Vec::new()
    } else {
        vec![UNFINISHED.to_string()]
    };
    tx.set_references(&execution.arn.to_string(), &marker)?;
    Ok(())
}

/// Every execution, of any account and Region, that has not ended.
pub fn unfinished(tx: &mut dyn Txn) -> CoreResult<Vec<LifecycleExecution>> {
    let mut out = Vec::new();
    for key in tx.referrers(UNFINISHED)? {
        if let Some(e) = tx.get::<LifecycleExecution>(&key)? {
            if !e.status.is_terminal() {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Every execution of `account` in `region`, newest first.
pub fn all(tx: &mut dyn Txn, account: &str, region: &str) -> CoreResult<Vec<LifecycleExecution>> {
    let mut all = tx.list::<LifecycleExecution>(&ListQuery {
        account: account.to_string(),
        region: region.to_string(),
        kind: ResourceKind::LifecycleExecution,
        name: None,
        after: None,
    })?;
    newest_first(&mut all);
    Ok(all)
}

/// The executions of the lifecycle policy `policy_arn`, newest first.
pub fn list_of_policy(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    policy_arn: &str,
) -> CoreResult<Vec<LifecycleExecution>> {
    let mut all = all(tx, account, region)?;
    all.retain(|e| e.policy_arn.as_deref() == Some(policy_arn));
    Ok(all)
}

/// The executions started for the image build version `image_arn` (StartResourceStateUpdate),
/// newest first.
pub fn list_of_image(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    image_arn: &str,
) -> CoreResult<Vec<LifecycleExecution>> {
    let mut all = all(tx, account, region)?;
    all.retain(|e| e.image_arn.as_deref() == Some(image_arn));
    Ok(all)
}

/// Asks a running execution to stop: a PENDING or IN_PROGRESS execution becomes CANCELLING
/// with `reason` (the engine then finishes the resource action at hand and ends it
/// CANCELLED). Answers whether it changed anything: an execution already CANCELLING, or
/// ended, is left as it is.
pub fn request_cancel(
    tx: &mut dyn Txn,
    execution: &mut LifecycleExecution,
    reason: &str,
    now: Millis,
) -> CoreResult<bool> {
    if !execution.request_cancel(reason, now) {
        return Ok(false);
    }
    put(tx, execution)?;
    Ok(true)
}

fn newest_first(executions: &mut [LifecycleExecution]) {
    executions.sort_by(|a, b| b.start_time.cmp(&a.start_time).then(b.id.cmp(&a.id)));
}
