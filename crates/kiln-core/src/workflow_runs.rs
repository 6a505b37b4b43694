//! The workflow executions of image builds, as stored after every transition.
//!
//! A build runs its workflows (build, tests, distribution) through the engine of
//! `kiln-workflow`; the worker stores the [`WorkflowRun`] after each transition it makes, so a
//! restart finds every execution where it was, and the runtime operations
//! (ListWorkflowExecutions, GetWorkflowStepExecution, SendWorkflowStepAction...) read and act
//! on the same records. A record is a row of kind `workflow-execution` keyed
//! `arn:aws:imagebuilder:<region>:<owner>:workflow-execution/<execution id>` (a storage key
//! only: AWS gives executions no ARN).
//!
//! Ids: an execution is `wf-<uuid>` whose last four hex digits are `0000`; its step `i` is
//! `step-<the same uuid>` with those digits `i + 1` (hex). A step id thus names its execution
//! and its index, and GetWorkflowStepExecution needs no index of its own.

use crate::error::CoreResult;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::workflow::WorkflowType;
use kiln_domain::resources::Resource;
use kiln_store::{ListQuery, Txn, TxnExt};
use kiln_workflow::execution::{ExecutionStatus, Next, StepStatus, WaitAction};
use kiln_workflow::Execution;
use serde::{Deserialize, Serialize};

/// One workflow execution of one image build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    /// The storage key (see the module docs).
    pub arn: Arn,
    /// `wf-<uuid>`.
    pub execution_id: String,
    /// The image build version that runs it.
    pub image_arn: String,
    /// The workflow build version that runs (its `x` filters resolved when the build started).
    pub workflow_arn: String,
    pub workflow_type: WorkflowType,
    /// A test workflow's `parallelGroup`.
    #[serde(default)]
    pub parallel_group: Option<String>,
    /// Where it runs in the image's order of workflows (0 first).
    pub ordinal: u32,
    pub execution: Execution,
    /// The SendWorkflowStepAction calls it took, for replays of the same client token.
    #[serde(default)]
    pub step_actions: Vec<StepAction>,
    /// Which run of the image's build made it: 0 for the first, one more for each RetryImage
    /// that built again (the API's `retried`).
    #[serde(default)]
    pub attempt: u32,
}

/// One SendWorkflowStepAction taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepAction {
    pub client_token: String,
    pub step_index: usize,
    pub action: WaitAction,
    pub reason: Option<String>,
}

impl Resource for WorkflowRun {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

impl WorkflowRun {
    pub fn key(region: &str, owner: &str, execution_id: &str) -> Arn {
        Arn::new(region, owner, ResourceKind::WorkflowExecution, execution_id)
    }

    pub fn owner(&self) -> &str {
        &self.arn.account
    }

    pub fn region(&self) -> &str {
        &self.arn.region
    }

    /// The id of step `index` (see the module docs).
    pub fn step_id(&self, index: usize) -> String {
        step_id(&self.execution_id, index)
    }

    /// The step that waits for SendWorkflowStepAction now, if any.
    pub fn waiting_step(&self) -> Option<usize> {
        self.execution.waiting_step()
    }

    /// Whether step `index` is RUNNING.
    pub fn step_running(&self, index: usize) -> bool {
        self.execution
            .steps
            .get(index)
            .is_some_and(|s| s.status == StepStatus::Running)
    }
}

/// A new execution id: `wf-` and a random uuid whose last four hex digits are `0000`.
pub fn new_execution_id() -> String {
    let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
    format!("wf-{}0000", &uuid[..uuid.len() - 4])
}

/// The id of step `index` of execution `execution_id`.
pub fn step_id(execution_id: &str, index: usize) -> String {
    let uuid = execution_id.strip_prefix("wf-").unwrap_or(execution_id);
    let stem = &uuid[..uuid.len().saturating_sub(4)];
    format!("step-{stem}{:04x}", (index + 1) & 0xffff)
}

/// The execution id and step index a step id names; `None` for an id Kiln never gave.
pub fn parse_step_id(step_execution_id: &str) -> Option<(String, usize)> {
    let uuid = step_execution_id.strip_prefix("step-")?;
    if uuid.len() != 36 || !uuid.is_char_boundary(32) {
        return None;
    }
    let (stem, index) = uuid.split_at(32);
    let index = usize::from_str_radix(index, 16).ok()?.checked_sub(1)?;
    Some((format!("wf-{stem}0000"), index))
}

pub fn put(tx: &mut dyn Txn, run: &WorkflowRun) -> CoreResult<()> {
    Ok(tx.put(run)?)
}

pub fn get(
    tx: &mut dyn Txn,
    owner: &str,
    region: &str,
    execution_id: &str,
) -> CoreResult<Option<WorkflowRun>> {
    Ok(tx.get(&WorkflowRun::key(region, owner, execution_id).to_string())?)
}

/// Every execution `owner` has in `region` (in key order).
pub fn all(tx: &mut dyn Txn, owner: &str, region: &str) -> CoreResult<Vec<WorkflowRun>> {
    Ok(tx.list::<WorkflowRun>(&ListQuery {
        account: owner.to_string(),
        region: region.to_string(),
        kind: ResourceKind::WorkflowExecution,
        name: None,
        after: None,
    })?)
}

/// The executions of the image build version `image`, in the order the build runs them.
/// (Linear in the owner's executions in the Region.)
pub fn of_image(tx: &mut dyn Txn, image: &Arn) -> CoreResult<Vec<WorkflowRun>> {
    let wanted = image.to_string();
    let mut runs: Vec<WorkflowRun> = all(tx, &image.account, &image.region)?
        .into_iter()
        .filter(|r| r.image_arn == wanted)
        .collect();
    runs.sort_by_key(|r| (r.attempt, stage_rank(r.workflow_type), r.ordinal));
    Ok(runs)
}

/// The executions of the image's latest build attempt (a RetryImage that built again leaves
/// the earlier attempt's, finished, beside them).
pub fn latest_of_image(tx: &mut dyn Txn, image: &Arn) -> CoreResult<Vec<WorkflowRun>> {
    let runs = of_image(tx, image)?;
    let latest = runs.iter().map(|r| r.attempt).max().unwrap_or(0);
    Ok(runs.into_iter().filter(|r| r.attempt == latest).collect())
}

/// Builds run BUILD, then TEST, then DISTRIBUTION workflows, whatever order the image's
/// `workflows` named them in.
pub fn stage_rank(t: WorkflowType) -> u8 {
    match t {
        WorkflowType::Build => 0,
        WorkflowType::Test => 1,
        WorkflowType::Distribution => 2,
    }
}

/// The executions of `owner` in `region` with a step waiting for SendWorkflowStepAction.
pub fn waiting(tx: &mut dyn Txn, owner: &str, region: &str) -> CoreResult<Vec<WorkflowRun>> {
    Ok(all(tx, owner, region)?
        .into_iter()
        .filter(|r| r.waiting_step().is_some())
        .collect())
}

/// Ends an unfinished execution of a build that cannot go on (Kiln stopped under it, or its
/// worker was lost): a step under way fails with `reason` (or as `recover` says) and its
/// rollbacks are recorded done (the instances went with the process); a PENDING one is SKIPPED.
pub fn settle_interrupted(execution: &mut Execution, reason: &str, now: i64) {
    if execution.status.is_terminal() {
        return;
    }
    if execution.status == ExecutionStatus::Pending {
        let _ = execution.skip(reason, now);
        return;
    }
    execution.recover(now);
    // Bounded: each turn ends a step or a rollback.
    for _ in 0..(execution.steps.len() * 3 + 3) {
        match execution.next(now) {
            Next::Done { .. } => break,
            Next::RunStep { index, .. } | Next::Wait { index, .. } => {
                let _ = execution.step_finished(index, Err(reason.to_string()), now);
            }
            Next::Rollback { index, .. } => {
                let _ = execution.rollback_finished(index, Ok(()), now);
            }
        }
    }
}

/// [`settle_interrupted`] for every unfinished execution of the image build version `image`.
pub fn settle_of_image(tx: &mut dyn Txn, image: &Arn, reason: &str, now: i64) -> CoreResult<()> {
    for mut run in of_image(tx, image)? {
        if !run.execution.status.is_terminal() {
            settle_interrupted(&mut run.execution, reason, now);
            put(tx, &run)?;
        }
    }
    Ok(())
}

/// Removes the executions of an image (DeleteImage).
pub fn remove_of_image(tx: &mut dyn Txn, image: &Arn) -> CoreResult<()> {
    for run in of_image(tx, image)? {
        tx.delete_row(&run.arn.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_name_their_execution_and_index() {
        let id = new_execution_id();
        assert!(
            id.starts_with("wf-") && id.ends_with("0000") && id.len() == 39,
            "{id}"
        );
        for index in [0, 1, 9, 15, 200] {
            let step = step_id(&id, index);
            assert_eq!(step.len(), 41, "{step}");
            assert!(step.starts_with("step-"));
            assert_eq!(parse_step_id(&step), Some((id.clone(), index)));
        }
        assert_eq!(parse_step_id("step-x"), None);
        assert_eq!(
            parse_step_id("step-00000000-0000-0000-0000-000000000000"),
            None,
            "index 0 is never given"
        );
        assert_eq!(
            parse_step_id("wf-00000000-0000-0000-0000-000000000001"),
            None
        );
        assert_eq!(
            parse_step_id("step-00000000-0000-0000-0000-00000000ééé"),
            None
        );
    }
}
