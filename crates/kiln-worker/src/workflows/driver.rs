//! Runs one workflow execution to its end: asks the engine what to do, stores the record before
//! acting on it (one small write), does it, reports, and logs each workflow and step transition
//! to the build log. A step's end is stored in the same write as what follows it (the next
//! step's start, a rollback, the end): nothing acts in between, so a restart finds the same
//! record either way, and a step costs one write instead of two.
//!
//! A WaitForAction step stays RUNNING while the driver re-reads the stored record (every
//! [`WAIT_POLL`], or sooner when a write wakes it): SendWorkflowStepAction completes or fails
//! the step in the store, and the driver carries on from that record. Its deadline, a cancel
//! and a stop of Kiln are checked in the same loop. Those updates are read-modify-write in one
//! transaction, so the API's and the worker's writes never undo each other.

use super::context::BuildContext;
use super::plan::workflow_name;
use super::steps;
use kiln_core::workflow_runs::{self, WorkflowRun};
use kiln_workflow::actions::WAIT_FOR_ACTION;
use kiln_workflow::execution::{ExecutionStatus, Next, StepStatus};
use std::time::{Duration, Instant};

/// How often a waiting step re-reads its record when nothing wakes it.
pub const WAIT_POLL: Duration = Duration::from_millis(200);

/// How a run ended for the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Finished(ExecutionStatus),
    /// Kiln is stopping while a step waits: the run stays as stored, to go on after a restart.
    Suspended,
}

/// Time the driver spent outside step actions and waits, and the steps it ran (the benchmark's
/// engine overhead).
#[derive(Debug, Default, Clone, Copy)]
pub struct Overhead {
    pub engine: Duration,
    pub steps: u32,
}

/// Stores `run` over its record; a record that is gone (DeleteImage removed the image's
/// executions) is not made again.
pub fn store(ctx: &BuildContext, run: &WorkflowRun) {
    if let Err(e) = ctx
        .shared
        .core
        .store
        .write(|tx| {
            if tx.get_row(&run.arn.to_string())?.is_none() {
                return Ok(());
            }
            workflow_runs::put(tx, run)
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::error!(execution = %run.execution_id, error = %e, "storing a workflow execution failed");
    }
}

/// Re-reads the stored record, lets `change` edit it, and stores it, in one transaction;
/// `run` becomes the stored record.
fn update(ctx: &BuildContext, run: &mut WorkflowRun, change: impl FnOnce(&mut WorkflowRun)) {
    let (owner, region, id) = (
        run.owner().to_string(),
        run.region().to_string(),
        run.execution_id.clone(),
    );
    let mut change = Some(change);
    let written = ctx.shared.core.store.write(|tx| {
        let Some(mut stored) = workflow_runs::get(tx, &owner, &region, &id)? else {
            return Ok(None); // DeleteImage removed it: not made again
        };
        if let Some(change) = change.take() {
            change(&mut stored);
        }
        workflow_runs::put(tx, &stored)?;
        Ok::<_, kiln_core::error::CoreError>(Some(stored))
    });
    match written {
        Ok(Ok(Some(stored))) => *run = stored,
        Ok(Ok(None)) => {
            if let Some(change) = change.take() {
                change(run);
            }
        }
        Ok(Err(e)) => {
            tracing::error!(execution = %id, error = %e, "updating a workflow execution failed")
        }
        Err(e) => {
            tracing::error!(execution = %id, error = %e, "updating a workflow execution failed")
        }
    }
}

fn log_step(ctx: &BuildContext, run: &WorkflowRun, index: usize) {
    let step = &run.execution.steps[index];
    let mut line = format!(
        "workflow {} step {} ({}): {:?}",
        workflow_name(run),
        step.name,
        step.action,
        step.status
    )
    .replace(": Running", ": RUNNING")
    .replace(": Completed", ": COMPLETED")
    .replace(": Failed", ": FAILED")
    .replace(": Skipped", ": SKIPPED")
    .replace(": Cancelled", ": CANCELLED");
    if let Some(message) = &step.message {
        line.push_str(&format!(": {message}"));
    }
    ctx.log.event(&line);
}

fn status_word(status: ExecutionStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"))
}

/// Logs the steps that changed since `before` (skipped ones, failures found by `next`).
fn log_changes(ctx: &BuildContext, run: &WorkflowRun, before: &[StepStatus]) {
    for (index, step) in run.execution.steps.iter().enumerate() {
        if before.get(index) != Some(&step.status) && step.status != StepStatus::Running {
            log_step(ctx, run, index);
        }
    }
}

/// Runs `run` until it ends (or Kiln stops while it waits).
pub fn drive(ctx: &BuildContext, run: &mut WorkflowRun, overhead: &mut Overhead) -> Ended {
    let name = workflow_name(run);
    if run.execution.status == ExecutionStatus::Pending {
        ctx.log.event(&format!(
            "workflow {name} ({}, {}): RUNNING",
            run.execution_id,
            run.workflow_type.as_str()
        ));
    }
    loop {
        let started = Instant::now();
        if ctx.cancelled() && !run.execution.status.is_terminal() {
            let now = ctx.now();
            let running = (0..run.execution.steps.len()).find(|&i| run.step_running(i));
            if run.execution.cancel(now).is_ok() {
                store(ctx, run);
                if let Some(index) = running {
                    log_step(ctx, run, index);
                }
            }
        }
        let before: Vec<StepStatus> = run.execution.steps.iter().map(|s| s.status).collect();
        let next = run.execution.next(ctx.now());
        log_changes(ctx, run, &before);
        match next {
            Next::Done {
                status, message, ..
            } => {
                store(ctx, run);
                let mut line = format!(
                    "workflow {name} ({}): {}",
                    run.execution_id,
                    status_word(status)
                );
                if let Some(m) = message {
                    line.push_str(&format!(": {m}"));
                }
                ctx.log.event(&line);
                overhead.engine += started.elapsed();
                return Ended::Finished(status);
            }
            Next::RunStep {
                index,
                action,
                inputs,
                deadline,
                ..
            } => {
                store(ctx, run);
                log_step(ctx, run, index);
                overhead.engine += started.elapsed();
                overhead.steps += 1;
                if action == WAIT_FOR_ACTION {
                    if wait_for_action(ctx, run, index) {
                        return Ended::Suspended;
                    }
                    continue;
                }
                let result = run_within(ctx, run, index, &action, &inputs, deadline);
                let started = Instant::now();
                let now = ctx.now();
                if ctx.cancelled() {
                    continue; // cancelled above, on the next turn
                }
                let result = match result {
                    Ok(_) if now >= deadline => Err(format!(
                        "Step timed out: it ran longer than its timeoutSeconds ({})",
                        run.execution.steps[index].timeout_seconds
                    )),
                    other => other,
                };
                if let Err(e) = run.execution.step_finished(index, result, now) {
                    tracing::error!(execution = %run.execution_id, error = %e, "reporting a step");
                }
                // Stored with the next transition, in the same write: the next step starts (or
                // the rollback, or the end) only once both are durable, which is all a restart
                // needs; a crash between the two finds the step RUNNING either way.
                log_step(ctx, run, index);
                overhead.engine += started.elapsed();
            }
            Next::Rollback {
                index,
                action,
                outputs,
                ..
            } => {
                store(ctx, run);
                let result = steps::rollback(ctx, &action, &outputs);
                let step = &run.execution.steps[index].name;
                ctx.log.event(&format!(
                    "workflow {name} step {step} ({action}): rollback {}",
                    match &result {
                        Ok(()) => "COMPLETED".to_string(),
                        Err(e) => format!("FAILED: {e}"),
                    }
                ));
                if let Err(e) = run.execution.rollback_finished(index, result, ctx.now()) {
                    tracing::error!(execution = %run.execution_id, error = %e, "reporting a rollback");
                }
                store(ctx, run);
            }
            Next::Wait { index, .. } => {
                // Only a WaitForAction step (found waiting after a restart) is under way here.
                if run.execution.steps[index].action == WAIT_FOR_ACTION {
                    if wait_for_action(ctx, run, index) {
                        return Ended::Suspended;
                    }
                } else {
                    let now = ctx.now();
                    let _ = run.execution.step_finished(
                        index,
                        Err("the step was left running with nothing running it".into()),
                        now,
                    );
                    store(ctx, run);
                }
            }
        }
    }
}

/// Runs a step action; when it outlives its deadline (`timeoutSeconds`), the processes of the
/// instance it acts on are killed, so the action ends (and the step fails as timed out).
fn run_within(
    ctx: &BuildContext,
    run: &WorkflowRun,
    index: usize,
    action: &str,
    inputs: &serde_json::Value,
    deadline: i64,
) -> Result<serde_json::Value, String> {
    // Only actions that run programs in the instance (never one that terminates it: the
    // watchdog holds the instance while the step runs).
    let runs_programs = matches!(action, "ExecuteComponents" | "RunCommand");
    let instance = inputs
        .get("instanceId")
        .filter(|_| runs_programs)
        .and_then(serde_json::Value::as_str)
        .and_then(|id| ctx.instance(id).ok().flatten());
    let Some(instance) = instance else {
        return steps::run(ctx, run, index, action, inputs);
    };
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let fired = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let fired = &fired;
        scope.spawn(move || {
            let left = deadline.saturating_sub(ctx.now()).max(0) as u64;
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                finished.recv_timeout(Duration::from_millis(left))
            {
                ctx.log.event(&format!(
                    "step {} ran past its timeoutSeconds: stopping what runs in {}",
                    run.execution.steps[index].name,
                    instance.id()
                ));
                fired.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = instance.stop_processes();
            }
        });
        let result = steps::run(ctx, run, index, action, inputs);
        drop(done);
        result
    });
    if fired.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(format!(
            "Step timed out: it ran longer than its timeoutSeconds ({})",
            run.execution.steps[index].timeout_seconds
        ));
    }
    result
}

/// Waits until SendWorkflowStepAction settles step `index` (or its deadline passes, or the
/// image is cancelled). `true` when Kiln is stopping: the step stays waiting in the store.
fn wait_for_action(ctx: &BuildContext, run: &mut WorkflowRun, index: usize) -> bool {
    let step_id = run.step_id(index);
    ctx.log.event(&format!(
        "workflow {} step {}: waiting for SendWorkflowStepAction (stepExecutionId {step_id})",
        workflow_name(run),
        run.execution.steps[index].name
    ));
    loop {
        let seen = ctx.shared.core.work.seen();
        if ctx.shared.stopping() {
            return true;
        }
        let (owner, region, id) = (run.owner(), run.region(), run.execution_id.clone());
        let stored = ctx
            .shared
            .core
            .store
            .read(|tx| workflow_runs::get(tx, owner, region, &id));
        if let Ok(Ok(Some(stored))) = stored {
            *run = stored;
        }
        if !run.step_running(index) || run.execution.status != ExecutionStatus::Running {
            log_step(ctx, run, index);
            return false;
        }
        if ctx.cancelled() {
            let now = ctx.now();
            update(ctx, run, |r| {
                let _ = r.execution.cancel(now);
            });
            log_step(ctx, run, index);
            return false;
        }
        let deadline = run.execution.steps[index]
            .start_time
            .map(|s| s + run.execution.steps[index].timeout_seconds as i64 * 1000);
        if deadline.is_some_and(|d| ctx.now() >= d) {
            let now = ctx.now();
            // The step fails and its onFailure applies.
            update(ctx, run, |r| {
                if r.step_running(index) {
                    let why = format!(
                        "Step timed out: it ran longer than its timeoutSeconds ({})",
                        r.execution.steps[index].timeout_seconds
                    );
                    let _ = r.execution.step_finished(index, Err(why), now);
                }
            });
            log_step(ctx, run, index);
            return false;
        }
        ctx.shared.core.work.wait(seen, WAIT_POLL);
    }
}
