//! The workflow runtime operations (contract §1.7): ListWorkflowExecutions,
//! GetWorkflowExecution, ListWorkflowStepExecutions, GetWorkflowStepExecution,
//! ListWaitingWorkflowSteps and SendWorkflowStepAction.
//!
//! They read the records the worker stores after every transition
//! ([`kiln_core::workflow_runs`]); SendWorkflowStepAction is the one write: it applies
//! [`Execution::waiting_action`] to the stored record in the call's write transaction. The
//! worker, waiting on that step, re-reads the record and carries on; the commit's work signal
//! (`Service::call` notifies after every write) makes it prompt.
//!
//! Executions are keyed by their owner's account and Region, so another account's ids, and
//! ids Kiln never gave, do not exist.
//!
//! On the wire (contract §6 #1): a WaitForAction step that waits is `RUNNING` (and listed by
//! ListWaitingWorkflowSteps), a timed-out step `FAILED` with a message saying so, and a step
//! without rollback `rollbackStatus: SKIPPED`.

use crate::convert::{date, get_exact, not_found, StoreResultExt};
use crate::service::Service;
use kiln_core::workflow_runs::{self, StepAction, WorkflowRun};
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::image::{Image as DomainImage, ImageStatus as DomainImageStatus};
use kiln_domain::resources::workflow::WorkflowType as Stage;
use kiln_store::{Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};
use kiln_workflow::actions::WAIT_FOR_ACTION;
use kiln_workflow::execution::{
    EngineError, ExecutionStatus, RollbackStatus, StepRecord, StepStatus, WaitAction,
    MAX_MESSAGE_CHARS,
};
use kiln_workflow::Execution;

/// The prefix of the message the engine gives a step that ran past its `timeoutSeconds`.
const TIMED_OUT_PREFIX: &str = "Step timed out";

// ---------------------------------------------------------------------------------------------
// Wire forms.

fn stage_to_wire(stage: Stage) -> WorkflowType {
    match stage {
        Stage::Build => WorkflowType::Build,
        Stage::Test => WorkflowType::Test,
        Stage::Distribution => WorkflowType::Distribution,
    }
}

fn execution_status(s: ExecutionStatus) -> WorkflowExecutionStatus {
    match s {
        ExecutionStatus::Pending => WorkflowExecutionStatus::Pending,
        ExecutionStatus::Skipped => WorkflowExecutionStatus::Skipped,
        ExecutionStatus::Running => WorkflowExecutionStatus::Running,
        ExecutionStatus::Completed => WorkflowExecutionStatus::Completed,
        ExecutionStatus::Failed => WorkflowExecutionStatus::Failed,
        ExecutionStatus::RollbackInProgress => WorkflowExecutionStatus::RollbackInProgress,
        ExecutionStatus::RollbackCompleted => WorkflowExecutionStatus::RollbackCompleted,
        ExecutionStatus::Cancelled => WorkflowExecutionStatus::Cancelled,
    }
}

fn step_status(s: StepStatus) -> WorkflowStepExecutionStatus {
    match s {
        StepStatus::Pending => WorkflowStepExecutionStatus::Pending,
        StepStatus::Skipped => WorkflowStepExecutionStatus::Skipped,
        StepStatus::Running => WorkflowStepExecutionStatus::Running,
        StepStatus::Completed => WorkflowStepExecutionStatus::Completed,
        StepStatus::Failed => WorkflowStepExecutionStatus::Failed,
        StepStatus::Cancelled => WorkflowStepExecutionStatus::Cancelled,
    }
}

fn rollback_status(s: RollbackStatus) -> WorkflowStepExecutionRollbackStatus {
    match s {
        RollbackStatus::Running => WorkflowStepExecutionRollbackStatus::Running,
        RollbackStatus::Completed => WorkflowStepExecutionRollbackStatus::Completed,
        RollbackStatus::Skipped => WorkflowStepExecutionRollbackStatus::Skipped,
        RollbackStatus::Failed => WorkflowStepExecutionRollbackStatus::Failed,
    }
}

/// The model caps messages and descriptions at 500 characters.
fn capped(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

fn count(n: usize) -> Option<i32> {
    Some(i32::try_from(n).unwrap_or(i32::MAX))
}

/// Inputs and outputs are JSON text on the wire; AWS leaves out an empty object (a
/// TerminateInstance step has no outputs in list-workflow-step-executions.rst).
fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .filter(|v| v.as_object().is_none_or(|o| !o.is_empty()))
        .map(|v| v.to_string())
}

/// A step's inputs: as resolved when it started; a skipped step never resolved them, and shows
/// the document's (`"instanceId.$": "$.stepOutputs..."`, as list-workflow-step-executions.rst
/// shows a SKIPPED step).
fn inputs(execution: &Execution, index: usize) -> Option<String> {
    let step = &execution.steps[index];
    match (&step.inputs, step.status) {
        (Some(inputs), _) => json_text(Some(inputs)),
        (None, StepStatus::Skipped) => {
            json_text(execution.document.steps.get(index).map(|s| &s.inputs))
        }
        (None, _) => None,
    }
}

fn execution_metadata(run: &WorkflowRun) -> WorkflowExecutionMetadata {
    let e = &run.execution;
    let counts = e.counts();
    WorkflowExecutionMetadata {
        workflow_build_version_arn: Some(run.workflow_arn.clone()),
        workflow_execution_id: Some(run.execution_id.clone()),
        r#type: Some(stage_to_wire(run.workflow_type)),
        status: Some(execution_status(e.status)),
        message: e.message.as_deref().map(capped),
        total_step_count: count(counts.total_step_count),
        total_steps_succeeded: count(counts.total_steps_succeeded),
        total_steps_failed: count(counts.total_steps_failed),
        total_steps_skipped: count(counts.total_steps_skipped),
        start_time: e.start_time.map(date),
        end_time: e.end_time.map(date),
        parallel_group: run.parallel_group.clone(),
        // AWS answers it on every execution (list-workflow-executions.rst); true marks the
        // executions a RetryImage re-ran, which Kiln's records do not flag yet.
        retried: Some(run.attempt > 0),
    }
}

/// A step's attempt counters. Workflow documents have no retry syntax (contract §6 #4), and
/// AWS shows no `attemptNumber`/`maxAttempts` on steps that ran once
/// (get-workflow-step-execution.rst, list-workflow-step-executions.rst). A step that is safe to
/// repeat runs again after a restart of Kiln: that one shows its attempt number (and a maximum
/// that is not below it).
fn attempts(step: &StepRecord) -> (Option<i32>, Option<i32>) {
    if step.attempts <= 1 {
        return (None, None);
    }
    let attempt = i32::try_from(step.attempts).unwrap_or(i32::MAX);
    (Some(attempt), Some(attempt))
}

fn step_metadata(run: &WorkflowRun, index: usize) -> WorkflowStepMetadata {
    let step = &run.execution.steps[index];
    let (attempt_number, max_attempts) = attempts(step);
    WorkflowStepMetadata {
        step_execution_id: Some(run.step_id(index)),
        name: Some(step.name.clone()),
        description: description(&run.execution, index),
        action: Some(step.action.clone()),
        status: Some(step_status(step.status)),
        rollback_status: step.rollback_status.map(rollback_status),
        message: step.message.as_deref().map(capped),
        inputs: inputs(&run.execution, index),
        outputs: json_text(step.outputs.as_ref()),
        start_time: step.start_time.map(date),
        end_time: step.end_time.map(date),
        attempt_number,
        max_attempts,
    }
}

fn description(execution: &Execution, index: usize) -> Option<String> {
    execution
        .document
        .steps
        .get(index)
        .and_then(|s| s.description.as_deref())
        .map(capped)
}

// ---------------------------------------------------------------------------------------------
// Lookups.

/// The caller's visible image `arn` names (a build version), or ResourceNotFoundException.
fn visible_image(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
) -> Result<DomainImage, ApiError> {
    let image: DomainImage = get_exact(tx, ctx, ResourceKind::Image, arn, "imageBuildVersionArn")?;
    if image.status == DomainImageStatus::Deleted {
        return Err(not_found(ResourceKind::Image, arn));
    }
    Ok(image)
}

/// The caller's execution `execution_id`, or ResourceNotFoundException naming it.
fn find_run(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    execution_id: &str,
) -> Result<WorkflowRun, ApiError> {
    workflow_runs::get(tx, &ctx.account_id, &ctx.region, execution_id)
        .api()?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "workflowExecutionId: the workflow execution '{execution_id}' does not exist."
            ))
        })
}

/// The caller's execution holding step `step_execution_id`, and the step's index.
fn find_step(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    step_execution_id: &str,
) -> Result<(WorkflowRun, usize), ApiError> {
    let missing = || {
        ApiError::not_found(format!(
            "stepExecutionId: the workflow step execution '{step_execution_id}' does not exist."
        ))
    };
    let (execution_id, index) =
        workflow_runs::parse_step_id(step_execution_id).ok_or_else(missing)?;
    let run = workflow_runs::get(tx, &ctx.account_id, &ctx.region, &execution_id)
        .api()?
        .ok_or_else(missing)?;
    if index >= run.execution.steps.len() {
        return Err(missing());
    }
    Ok((run, index))
}

/// Whether the image that runs `run` is still being made. Once it is not (cancelled, failed,
/// deleted), the worker ends its executions; until it has, their waiting steps take no action.
fn image_in_progress(tx: &mut dyn Txn, run: &WorkflowRun) -> Result<Option<String>, ApiError> {
    let image: Option<DomainImage> = tx.get(&run.image_arn).api()?;
    Ok(match image {
        Some(image) if image.status.in_progress() => None,
        Some(image) => Some(image.status.as_str().to_string()),
        None => Some("DELETED".to_string()),
    })
}

/// When a running step's `timeoutSeconds` runs out (milliseconds since the epoch).
fn deadline(step: &StepRecord) -> Option<i64> {
    step.start_time
        .map(|start| start.saturating_add((step.timeout_seconds as i64).saturating_mul(1000)))
}

// ---------------------------------------------------------------------------------------------
// Executions.

pub fn list_executions(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListWorkflowExecutionsRequest,
) -> Result<ListWorkflowExecutionsResponse, ApiError> {
    const OP: &str = "ListWorkflowExecutions";
    let arn = input.image_build_version_arn.unwrap_or_default();
    let image = visible_image(tx, ctx, &arn)?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    // Run order: the image's order of workflows (the build, the test groups, distribution).
    let key = |r: &WorkflowRun| format!("{:010}/{}", r.ordinal, r.execution_id);
    let runs = workflow_runs::of_image(tx, &image.arn).api()?;
    let rest = runs
        .into_iter()
        .filter(|r| after.as_deref().is_none_or(|a| key(r).as_str() > a));
    let page = svc.pager.page(OP, ctx, rest, input.max_results, key);
    Ok(ListWorkflowExecutionsResponse {
        request_id: None,
        workflow_executions: Some(page.items.iter().map(execution_metadata).collect()),
        image_build_version_arn: Some(arn),
        // "The output message from the list action": why the image failed (or was cancelled),
        // which stays even when no execution records remain.
        message: image
            .reason
            .as_deref()
            .filter(|_| {
                matches!(
                    image.status,
                    DomainImageStatus::Failed | DomainImageStatus::Cancelled
                )
            })
            .map(capped),
        next_token: page.next_token,
    })
}

pub fn get_execution(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetWorkflowExecutionRequest,
) -> Result<GetWorkflowExecutionResponse, ApiError> {
    let id = input.workflow_execution_id.unwrap_or_default();
    let run = find_run(tx, ctx, &id)?;
    let m = execution_metadata(&run);
    Ok(GetWorkflowExecutionResponse {
        request_id: None,
        workflow_build_version_arn: m.workflow_build_version_arn,
        workflow_execution_id: m.workflow_execution_id,
        image_build_version_arn: Some(run.image_arn.clone()),
        r#type: m.r#type,
        status: m.status,
        message: m.message,
        total_step_count: m.total_step_count,
        total_steps_succeeded: m.total_steps_succeeded,
        total_steps_failed: m.total_steps_failed,
        total_steps_skipped: m.total_steps_skipped,
        start_time: m.start_time,
        end_time: m.end_time,
        parallel_group: m.parallel_group,
    })
}

// ---------------------------------------------------------------------------------------------
// Steps.

pub fn list_step_executions(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListWorkflowStepExecutionsRequest,
) -> Result<ListWorkflowStepExecutionsResponse, ApiError> {
    const OP: &str = "ListWorkflowStepExecutions";
    let id = input.workflow_execution_id.unwrap_or_default();
    let run = find_run(tx, ctx, &id)?;
    // The token is bound to the execution, so it cannot page another execution's steps.
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    if after
        .as_deref()
        .is_some_and(|a| !a.starts_with(&format!("{id}/")))
    {
        return Err(ApiError::new(
            ErrorKind::InvalidPaginationTokenException,
            "nextToken is not valid: it belongs to another workflow execution",
        ));
    }
    let key = |i: &usize| format!("{id}/{i:05}");
    let rest = (0..run.execution.steps.len())
        .filter(|i| after.as_deref().is_none_or(|a| key(i).as_str() > a));
    let page = svc.pager.page(OP, ctx, rest, input.max_results, key);
    Ok(ListWorkflowStepExecutionsResponse {
        request_id: None,
        steps: Some(page.items.iter().map(|&i| step_metadata(&run, i)).collect()),
        workflow_build_version_arn: Some(run.workflow_arn.clone()),
        workflow_execution_id: Some(run.execution_id.clone()),
        image_build_version_arn: Some(run.image_arn.clone()),
        message: run.execution.message.as_deref().map(capped),
        next_token: page.next_token,
    })
}

pub fn get_step_execution(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetWorkflowStepExecutionRequest,
) -> Result<GetWorkflowStepExecutionResponse, ApiError> {
    let id = input.step_execution_id.unwrap_or_default();
    let (run, index) = find_step(tx, ctx, &id)?;
    let step = &run.execution.steps[index];
    let m = step_metadata(&run, index);
    Ok(GetWorkflowStepExecutionResponse {
        request_id: None,
        step_execution_id: m.step_execution_id,
        workflow_build_version_arn: Some(run.workflow_arn.clone()),
        workflow_execution_id: Some(run.execution_id.clone()),
        image_build_version_arn: Some(run.image_arn.clone()),
        name: m.name,
        description: m.description,
        action: m.action,
        status: m.status,
        rollback_status: m.rollback_status,
        message: m.message,
        inputs: m.inputs,
        outputs: m.outputs,
        start_time: m.start_time,
        end_time: m.end_time,
        on_failure: Some(step.on_failure.as_str().to_string()),
        // The effective value, even above the model's 43200 (contract §6 #2: WaitForAction
        // waits 3 days by default).
        timeout_seconds: Some(i32::try_from(step.timeout_seconds).unwrap_or(i32::MAX)),
        attempt_number: m.attempt_number,
        max_attempts: m.max_attempts,
    })
}

// ---------------------------------------------------------------------------------------------
// Waiting steps and their actions.

pub fn list_waiting_steps(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListWaitingWorkflowStepsRequest,
) -> Result<ListWaitingWorkflowStepsResponse, ApiError> {
    const OP: &str = "ListWaitingWorkflowSteps";
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    // A step "remains in the list until you respond with SendWorkflowStepAction or the wait
    // times out": one past its deadline is left out even before the worker records it.
    let mut runs = Vec::new();
    for run in workflow_runs::waiting(tx, &ctx.account_id, &ctx.region).api()? {
        if image_in_progress(tx, &run)?.is_none() {
            runs.push(run);
        }
    }
    let mut waiting: Vec<(String, WorkflowRun, usize)> = runs
        .into_iter()
        .filter_map(|run| {
            let index = run.waiting_step()?;
            let step = &run.execution.steps[index];
            if deadline(step).is_some_and(|d| ctx.now_millis >= d) {
                return None;
            }
            // Oldest wait first; the id breaks ties and keeps the order total.
            let key = format!(
                "{:020}/{}",
                step.start_time.unwrap_or(0).max(0),
                run.step_id(index)
            );
            Some((key, run, index))
        })
        .collect();
    waiting.sort_by(|a, b| a.0.cmp(&b.0));
    let rest = waiting
        .into_iter()
        .filter(|(k, _, _)| after.as_deref().is_none_or(|a| k.as_str() > a));
    let page = svc
        .pager
        .page(OP, ctx, rest, input.max_results, |(k, _, _)| k.clone());
    Ok(ListWaitingWorkflowStepsResponse {
        steps: Some(
            page.items
                .iter()
                .map(|(_, run, index)| {
                    let step = &run.execution.steps[*index];
                    WorkflowStepExecution {
                        step_execution_id: Some(run.step_id(*index)),
                        image_build_version_arn: Some(run.image_arn.clone()),
                        workflow_execution_id: Some(run.execution_id.clone()),
                        workflow_build_version_arn: Some(run.workflow_arn.clone()),
                        name: Some(step.name.clone()),
                        action: Some(step.action.clone()),
                        start_time: step.start_time.map(date),
                    }
                })
                .collect(),
        ),
        next_token: page.next_token,
    })
}

fn wait_action(action: WorkflowStepActionType) -> WaitAction {
    match action {
        WorkflowStepActionType::Resume => WaitAction::Resume,
        WorkflowStepActionType::Stop => WaitAction::Stop,
    }
}

fn action_name(action: WaitAction) -> &'static str {
    match action {
        WaitAction::Resume => "RESUME",
        WaitAction::Stop => "STOP",
    }
}

/// A step that cannot take an action now: the contract's ResourceInUseException (§1.7), with
/// the reason.
fn not_waiting(step_id: &str, why: String) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceInUseException,
        format!("stepExecutionId: the step '{step_id}' {why}"),
    )
}

/// Why step `index` of `run` is not waiting for an action.
fn why_not_waiting(run: &WorkflowRun, index: usize) -> String {
    let step = &run.execution.steps[index];
    if let Some(taken) = run.step_actions.iter().find(|a| a.step_index == index) {
        return format!(
            "was already actioned ({}); a step takes one action",
            action_name(taken.action)
        );
    }
    if step.action != WAIT_FOR_ACTION {
        return format!(
            "is a {} step; only a WaitForAction step waits for an action",
            step.action
        );
    }
    if step.status == StepStatus::Failed
        && step
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with(TIMED_OUT_PREFIX))
    {
        return format!(
            "timed out (it waited longer than its timeoutSeconds, {}) and no longer takes an action",
            step.timeout_seconds
        );
    }
    match step.status {
        StepStatus::Pending => "has not started; it is not waiting for an action yet".to_string(),
        StepStatus::Running => format!(
            "is not waiting for an action: its workflow execution is {}",
            execution_status(run.execution.status).as_str()
        ),
        other => format!(
            "is {}; it is not waiting for an action",
            step_status(other).as_str()
        ),
    }
}

pub fn send_step_action(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: SendWorkflowStepActionRequest,
) -> Result<SendWorkflowStepActionResponse, ApiError> {
    let step_id = input.step_execution_id.unwrap_or_default();
    let image_arn = input.image_build_version_arn.unwrap_or_default();
    let client_token = input.client_token.unwrap_or_default();
    let action = wait_action(input.action.ok_or_else(|| {
        ApiError::invalid_request("action: a value is required (RESUME or STOP)")
    })?);
    let reason = input.reason;
    let (mut run, index) = find_step(tx, ctx, &step_id)?;
    if run.image_arn != image_arn {
        return Err(ApiError::new(
            ErrorKind::InvalidParameterValueException,
            format!(
                "imageBuildVersionArn: the step '{step_id}' belongs to the image '{}', not '{image_arn}'",
                run.image_arn
            ),
        ));
    }
    let response = SendWorkflowStepActionResponse {
        step_execution_id: Some(step_id.clone()),
        image_build_version_arn: Some(image_arn),
        client_token: Some(client_token.clone()),
    };
    // Replays are answered by the service's idempotency tokens first; the run's own record of
    // the actions it took answers them after a token has expired (a wait lasts up to 7 days).
    if let Some(taken) = run
        .step_actions
        .iter()
        .find(|a| a.client_token == client_token)
    {
        if taken.step_index == index && taken.action == action && taken.reason == reason {
            return Ok(response);
        }
        return Err(ApiError::new(
            ErrorKind::IdempotentParameterMismatchException,
            format!(
                "clientToken '{client_token}' was already used for a SendWorkflowStepAction request with different parameters"
            ),
        ));
    }
    if run.waiting_step() != Some(index) {
        return Err(not_waiting(&step_id, why_not_waiting(&run, index)));
    }
    if let Some(status) = image_in_progress(tx, &run)? {
        return Err(not_waiting(
            &step_id,
            format!(
                "belongs to the image '{}', which is {status}: its workflows no longer run",
                run.image_arn
            ),
        ));
    }
    run.execution
        .waiting_action(index, action, reason.as_deref(), ctx.now_millis)
        .map_err(|e| match e {
            EngineError::TimedOut(_) => {
                let step = &run.execution.steps[index];
                not_waiting(
                    &step_id,
                    format!(
                        "timed out at {} (it waited longer than its timeoutSeconds, {}) and no longer takes an action",
                        deadline(step).map(date).unwrap_or_default(),
                        step.timeout_seconds
                    ),
                )
            }
            other => not_waiting(&step_id, format!("cannot take an action: {other}")),
        })?;
    run.step_actions.push(StepAction {
        client_token,
        step_index: index,
        action,
        reason,
    });
    workflow_runs::put(tx, &run).api()?;
    Ok(response)
}
