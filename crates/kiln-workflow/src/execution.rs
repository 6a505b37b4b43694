//! The execution state machine of one workflow run (contract §1.3).
//!
//! An [`Execution`] is plain data: the worker serialises and stores it after every call that
//! changes it, so each transition is durable before the worker acts on it. The worker loop:
//!
//! 1. [`Execution::next`] says what to do: run a step, roll one back, wait, or stop.
//! 2. The worker does it and reports with [`Execution::step_finished`] or
//!    [`Execution::rollback_finished`]; SendWorkflowStepAction goes to [`Execution::waiting_action`].
//! 3. After a restart, [`Execution::recover`] settles steps that were RUNNING when Kiln stopped.
//!
//! Timeouts are decided from the times the caller passes (milliseconds since the epoch).

use crate::actions::{self, WAIT_FOR_ACTION};
use crate::document::{Document, OnFailure, RollbackEnabled};
use crate::expr;
use crate::params::{self, ParamError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use thiserror::Error;

/// The longest `message` the API returns for a step or an execution.
pub const MAX_MESSAGE_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Pending,
    Skipped,
    Running,
    Completed,
    Failed,
    RollbackInProgress,
    RollbackCompleted,
    Cancelled,
}

impl ExecutionStatus {
    /// "COMPLETED, FAILED, ROLLBACK_COMPLETED, CANCELLED, and SKIPPED are terminal states."
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed
                | ExecutionStatus::Failed
                | ExecutionStatus::RollbackCompleted
                | ExecutionStatus::Cancelled
                | ExecutionStatus::Skipped
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    Pending,
    Skipped,
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// `NO_ROLLBACK` in the user guide is `SKIPPED` on the wire (contract §6 #1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RollbackStatus {
    Running,
    Completed,
    Skipped,
    Failed,
}

/// What `$.imagebuilder` and `$.workflowOutputs` hold for this run (set by the worker).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// `imageType`, `platform`, `collectImageMetadata`, `collectImageScanFindings`, ...
    pub imagebuilder: Value,
    /// The outputs of the workflows that ran before this one in the same image.
    pub workflow_outputs: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub action: String,
    pub status: StepStatus,
    pub rollback_status: Option<RollbackStatus>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// The resolved inputs, set when the step starts.
    pub inputs: Option<Value>,
    /// The action's outputs; for a failed step `{"errorMessage": ...}`.
    pub outputs: Option<Value>,
    /// How many times the step was started (a restart may run a re-runnable step again).
    pub attempts: u32,
    pub message: Option<String>,
    /// The effective timeout (the action default when the document sets none).
    pub timeout_seconds: u64,
    pub on_failure: OnFailure,
}

impl StepRecord {
    fn deadline(&self) -> Option<i64> {
        self.start_time
            .map(|start| start.saturating_add((self.timeout_seconds as i64).saturating_mul(1000)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total_step_count: usize,
    pub total_steps_succeeded: usize,
    pub total_steps_failed: usize,
    pub total_steps_skipped: usize,
}

/// What the worker should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Run step `index` (it is now RUNNING and stored so). For WaitForAction, "run" means send
    /// the notifications; the step then waits for [`Execution::waiting_action`].
    RunStep {
        index: usize,
        action: String,
        inputs: Value,
        timeout_seconds: u64,
        /// When the step fails for taking too long; call `next` again at that time.
        deadline: i64,
    },
    /// Undo step `index` (its rollback status is now RUNNING); report with `rollback_finished`.
    Rollback {
        index: usize,
        action: String,
        inputs: Value,
        outputs: Value,
    },
    /// Step `index` is under way (or a rollback of it); nothing to start. Call `next` again when
    /// it reports, or at `deadline`.
    Wait { index: usize, deadline: Option<i64> },
    /// The execution is over.
    Done {
        status: ExecutionStatus,
        outputs: Map<String, Value>,
        message: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    #[error("the workflow has no step {0}")]
    NoSuchStep(usize),
    #[error("step {step} is {status:?}, not RUNNING")]
    NotRunning { step: String, status: StepStatus },
    #[error("step {0} is not waiting for an action")]
    NotWaiting(String),
    #[error("step {0} timed out before the action arrived")]
    TimedOut(String),
    #[error("step {0} is a WaitForAction step: it completes through SendWorkflowStepAction")]
    CompletesByAction(String),
    #[error("step {0} is not being rolled back")]
    NotRollingBack(String),
    #[error("the workflow execution is rolling back; it ends when the rollback does")]
    RollingBack,
    #[error("the workflow execution has already ended ({0:?})")]
    Finished(ExecutionStatus),
}

/// SendWorkflowStepAction's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WaitAction {
    Resume,
    Stop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub document: Document,
    /// The typed `$.parameters`.
    pub parameters: Map<String, Value>,
    pub context: Context,
    pub status: ExecutionStatus,
    pub steps: Vec<StepRecord>,
    /// The index of the next step to consider.
    pub cursor: usize,
    /// Steps still to roll back, in the order they will be (reverse document order).
    pub rollback_queue: Vec<usize>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub message: Option<String>,
    /// The workflow `outputs`, set when it completes.
    pub outputs: Map<String, Value>,
}

fn truncate(message: &str) -> String {
    message.chars().take(MAX_MESSAGE_CHARS).collect()
}

impl Execution {
    /// A PENDING execution; `parameters` are the pipeline's (`name`, values) pairs, typed here.
    pub fn start(
        document: Document,
        parameters: &[(String, Vec<String>)],
        context: Context,
    ) -> Result<Execution, ParamError> {
        let parameters = params::bind(&document, parameters)?;
        let steps = document
            .steps
            .iter()
            .map(|s| StepRecord {
                name: s.name.clone(),
                action: s.action.clone(),
                status: StepStatus::Pending,
                rollback_status: None,
                start_time: None,
                end_time: None,
                inputs: None,
                outputs: None,
                attempts: 0,
                message: None,
                timeout_seconds: s.effective_timeout_seconds(),
                on_failure: s.on_failure,
            })
            .collect();
        Ok(Execution {
            document,
            parameters,
            context,
            status: ExecutionStatus::Pending,
            steps,
            cursor: 0,
            rollback_queue: Vec::new(),
            start_time: None,
            end_time: None,
            message: None,
            outputs: Map::new(),
        })
    }

    /// Marks a PENDING execution SKIPPED (its stage does not run, e.g. an earlier one failed).
    pub fn skip(&mut self, reason: &str, now: i64) -> Result<(), EngineError> {
        if self.status != ExecutionStatus::Pending {
            return Err(EngineError::Finished(self.status));
        }
        self.status = ExecutionStatus::Skipped;
        self.message = Some(truncate(reason));
        self.end_time = Some(now);
        Ok(())
    }

    pub fn counts(&self) -> Counts {
        let count = |s: StepStatus| self.steps.iter().filter(|r| r.status == s).count();
        Counts {
            total_step_count: self.steps.len(),
            total_steps_succeeded: count(StepStatus::Completed),
            total_steps_failed: count(StepStatus::Failed),
            total_steps_skipped: count(StepStatus::Skipped),
        }
    }

    /// The WaitForAction step waiting for SendWorkflowStepAction, if any.
    pub fn waiting_step(&self) -> Option<usize> {
        self.running_step().filter(|&i| {
            self.steps[i].action == WAIT_FOR_ACTION && self.status == ExecutionStatus::Running
        })
    }

    fn running_step(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.status == StepStatus::Running)
    }

    /// The JSON that expressions see.
    pub fn expression_context(&self) -> Value {
        let step_outputs: Map<String, Value> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Completed)
            .map(|s| {
                (
                    s.name.clone(),
                    s.outputs.clone().unwrap_or_else(|| json!({})),
                )
            })
            .collect();
        json!({
            "parameters": self.parameters,
            "stepOutputs": step_outputs,
            "workflowOutputs": self.context.workflow_outputs,
            "imagebuilder": self.context.imagebuilder,
        })
    }

    /// Decides and records the next transition. Calling it again without reporting anything
    /// returns `Wait` for the step under way (or fails it once its deadline has passed).
    pub fn next(&mut self, now: i64) -> Next {
        loop {
            match self.status {
                ExecutionStatus::Pending => {
                    self.status = ExecutionStatus::Running;
                    self.start_time = Some(now);
                }
                status if status.is_terminal() => {
                    return Next::Done {
                        status,
                        outputs: self.outputs.clone(),
                        message: self.message.clone(),
                    }
                }
                ExecutionStatus::RollbackInProgress => match self.rollback_queue.first() {
                    Some(&index) => {
                        let step = &mut self.steps[index];
                        if step.rollback_status == Some(RollbackStatus::Running) {
                            return Next::Wait {
                                index,
                                deadline: None,
                            };
                        }
                        step.rollback_status = Some(RollbackStatus::Running);
                        return Next::Rollback {
                            index,
                            action: step.action.clone(),
                            inputs: step.inputs.clone().unwrap_or_else(|| json!({})),
                            outputs: step.outputs.clone().unwrap_or_else(|| json!({})),
                        };
                    }
                    None => {
                        let failed = self
                            .steps
                            .iter()
                            .any(|s| s.rollback_status == Some(RollbackStatus::Failed));
                        self.status = if failed {
                            ExecutionStatus::Failed
                        } else {
                            ExecutionStatus::RollbackCompleted
                        };
                        self.end_time = Some(now);
                    }
                },
                _ => {
                    if let Some(index) = self.running_step() {
                        let step = &self.steps[index];
                        let deadline = step.deadline().unwrap_or(now);
                        if now >= deadline {
                            let message = format!(
                                "Step timed out: it ran longer than its timeoutSeconds ({})",
                                step.timeout_seconds
                            );
                            self.fail_step(index, &message, None, now);
                            continue;
                        }
                        return Next::Wait {
                            index,
                            deadline: Some(deadline),
                        };
                    }
                    if self.cursor >= self.steps.len() {
                        self.complete(now);
                        continue;
                    }
                    if let Some(next) = self.start_step(self.cursor, now) {
                        return next;
                    }
                }
            }
        }
    }

    /// Evaluates `if` and the inputs of step `index`; `None` when it was skipped or failed.
    fn start_step(&mut self, index: usize, now: i64) -> Option<Next> {
        let context = self.expression_context();
        let spec = &self.document.steps[index];
        let run = match &spec.condition {
            None => Ok(true),
            Some(condition) => condition
                .eval(&context)
                .map_err(|e| format!("Its if condition could not be evaluated: {e}")),
        };
        let inputs = match run {
            Ok(false) => {
                // AWS answers a skipped step with equal start and end times.
                let step = &mut self.steps[index];
                step.status = StepStatus::Skipped;
                step.start_time = Some(now);
                step.end_time = Some(now);
                self.cursor = index + 1;
                return None;
            }
            Ok(true) => expr::resolve_inputs(&spec.inputs, &context)
                .map_err(|e| format!("Its inputs could not be resolved: {e}")),
            Err(e) => Err(e),
        };
        let step = &mut self.steps[index];
        step.start_time = Some(now);
        step.attempts += 1;
        match inputs {
            Ok(inputs) => {
                step.status = StepStatus::Running;
                step.inputs = Some(inputs.clone());
                step.message = None;
                Some(Next::RunStep {
                    index,
                    action: step.action.clone(),
                    inputs,
                    timeout_seconds: step.timeout_seconds,
                    deadline: step.deadline().unwrap_or(now),
                })
            }
            Err(message) => {
                self.fail_step(index, &message, None, now);
                None
            }
        }
    }

    fn complete(&mut self, now: i64) {
        let context = self.expression_context();
        // An output whose step was skipped (build-image's ImageId in a container build) has no
        // value; it is left out rather than failing a workflow whose steps all succeeded.
        for output in &self.document.outputs {
            let value = if output.value.trim_start().starts_with('$') {
                expr::resolve(&output.value, &context).ok()
            } else {
                expr::interpolate(&output.value, &context)
                    .ok()
                    .map(Value::String)
            };
            if let Some(value) = value {
                self.outputs.insert(output.name.clone(), value);
            }
        }
        self.status = ExecutionStatus::Completed;
        self.end_time = Some(now);
    }

    /// Fails a step and applies its `onFailure`.
    fn fail_step(&mut self, index: usize, message: &str, outputs: Option<Value>, now: i64) {
        let step = &mut self.steps[index];
        step.status = StepStatus::Failed;
        step.end_time = Some(now);
        step.message = Some(truncate(message));
        step.outputs = Some(outputs.unwrap_or_else(|| json!({ "errorMessage": message })));
        match step.on_failure {
            OnFailure::Continue => self.cursor = index + 1,
            OnFailure::Abort => {
                self.message = Some(truncate(&format!("Step {} failed: {message}", step.name)));
                self.abort(index, now);
            }
        }
    }

    /// Rolls back, in reverse order starting with the failed step, every step that has run and
    /// whose action has a rollback that is enabled; the others record rollback SKIPPED.
    fn abort(&mut self, failed: usize, now: i64) {
        let context = self.expression_context();
        self.cursor = self.steps.len();
        self.rollback_queue.clear();
        for index in (0..=failed).rev() {
            let ran = match self.steps[index].status {
                StepStatus::Completed => true,
                StepStatus::Failed => index == failed,
                _ => false,
            };
            if !ran {
                continue;
            }
            let has_rollback =
                actions::lookup(&self.steps[index].action).is_some_and(|a| a.has_rollback);
            let enabled = match &self.document.steps[index].rollback_enabled {
                RollbackEnabled::Fixed(b) => *b,
                // A path that does not resolve to a boolean leaves rollback on: cleaning up
                // what a step made is the safe side.
                RollbackEnabled::Path(path) => match expr::resolve(path, &context) {
                    Ok(Value::Bool(b)) => b,
                    Ok(Value::String(s)) if s == "false" => false,
                    _ => true,
                },
            };
            if has_rollback && enabled {
                self.rollback_queue.push(index);
            } else {
                self.steps[index].rollback_status = Some(RollbackStatus::Skipped);
            }
        }
        if self.rollback_queue.is_empty() {
            self.status = ExecutionStatus::Failed;
            self.end_time = Some(now);
        } else {
            self.status = ExecutionStatus::RollbackInProgress;
        }
    }

    fn check_running(&self, index: usize) -> Result<(), EngineError> {
        if self.status.is_terminal() {
            return Err(EngineError::Finished(self.status));
        }
        let step = self
            .steps
            .get(index)
            .ok_or(EngineError::NoSuchStep(index))?;
        if step.status != StepStatus::Running || self.status != ExecutionStatus::Running {
            return Err(EngineError::NotRunning {
                step: step.name.clone(),
                status: step.status,
            });
        }
        Ok(())
    }

    /// The worker's report for step `index`: its outputs, or why it failed.
    pub fn step_finished(
        &mut self,
        index: usize,
        result: Result<Value, String>,
        now: i64,
    ) -> Result<(), EngineError> {
        self.check_running(index)?;
        match result {
            Ok(_) if self.steps[index].action == WAIT_FOR_ACTION => Err(
                EngineError::CompletesByAction(self.steps[index].name.clone()),
            ),
            Ok(outputs) => {
                let step = &mut self.steps[index];
                step.status = StepStatus::Completed;
                step.end_time = Some(now);
                step.outputs = Some(outputs);
                self.cursor = index + 1;
                Ok(())
            }
            Err(message) => {
                self.fail_step(index, &message, None, now);
                Ok(())
            }
        }
    }

    /// The worker's report for a rollback it was asked to do.
    pub fn rollback_finished(
        &mut self,
        index: usize,
        result: Result<(), String>,
        now: i64,
    ) -> Result<(), EngineError> {
        let step = self
            .steps
            .get(index)
            .ok_or(EngineError::NoSuchStep(index))?;
        if self.status != ExecutionStatus::RollbackInProgress
            || self.rollback_queue.first() != Some(&index)
            || step.rollback_status != Some(RollbackStatus::Running)
        {
            return Err(EngineError::NotRollingBack(step.name.clone()));
        }
        self.rollback_queue.remove(0);
        let step = &mut self.steps[index];
        match result {
            Ok(()) => step.rollback_status = Some(RollbackStatus::Completed),
            Err(why) => {
                step.rollback_status = Some(RollbackStatus::Failed);
                let message = format!(
                    "{}; rolling back step {} failed: {why}",
                    self.message.as_deref().unwrap_or("The workflow failed"),
                    step.name
                );
                self.message = Some(truncate(&message));
            }
        }
        if self.rollback_queue.is_empty() {
            // Settle the status now so the stored record is final without another `next`.
            self.next(now);
        }
        Ok(())
    }

    /// SendWorkflowStepAction for the waiting step `index`: RESUME completes it with outputs
    /// `action` and `reason`; STOP fails it, and its `onFailure` decides what happens next.
    pub fn waiting_action(
        &mut self,
        index: usize,
        action: WaitAction,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), EngineError> {
        self.check_running(index)?;
        let step = &self.steps[index];
        if step.action != WAIT_FOR_ACTION {
            return Err(EngineError::NotWaiting(step.name.clone()));
        }
        if step.deadline().is_some_and(|d| now >= d) {
            let name = step.name.clone();
            self.next(now); // records the timeout
            return Err(EngineError::TimedOut(name));
        }
        let mut outputs = Map::new();
        match action {
            WaitAction::Resume => outputs.insert("action".into(), json!("RESUME")),
            WaitAction::Stop => outputs.insert("action".into(), json!("STOP")),
        };
        if let Some(reason) = reason {
            outputs.insert("reason".into(), json!(reason));
        }
        match action {
            WaitAction::Resume => {
                let step = &mut self.steps[index];
                step.status = StepStatus::Completed;
                step.end_time = Some(now);
                step.outputs = Some(Value::Object(outputs));
                self.cursor = index + 1;
            }
            WaitAction::Stop => {
                let message = match reason {
                    Some(r) => format!("Stopped by SendWorkflowStepAction: {r}"),
                    None => "Stopped by SendWorkflowStepAction".to_string(),
                };
                self.fail_step(index, &message, Some(Value::Object(outputs)), now);
            }
        }
        Ok(())
    }

    /// CancelImageCreation: the running step and the execution become CANCELLED; steps not
    /// started stay PENDING (the counts then do not reach the total, as documented).
    pub fn cancel(&mut self, now: i64) -> Result<(), EngineError> {
        match self.status {
            status if status.is_terminal() => return Err(EngineError::Finished(status)),
            ExecutionStatus::RollbackInProgress => return Err(EngineError::RollingBack),
            _ => {}
        }
        if let Some(index) = self.running_step() {
            let step = &mut self.steps[index];
            step.status = StepStatus::Cancelled;
            step.end_time = Some(now);
            step.message = Some("The image creation was cancelled".to_string());
        }
        self.status = ExecutionStatus::Cancelled;
        self.message = Some("The image creation was cancelled".to_string());
        if self.start_time.is_none() {
            self.start_time = Some(now);
        }
        self.end_time = Some(now);
        Ok(())
    }

    /// Settles an execution loaded after a restart. A step that was RUNNING when Kiln stopped:
    /// - WaitForAction keeps waiting (its deadline still counts from when it started);
    /// - an action that is safe to repeat goes back to PENDING and runs again;
    /// - any other fails, saying Kiln stopped, and its `onFailure` applies.
    ///
    /// A rollback that was RUNNING is asked for again: rollbacks only delete what a step made.
    /// Completed steps are never touched, so none runs twice.
    pub fn recover(&mut self, now: i64) {
        match self.status {
            ExecutionStatus::Running => {
                let Some(index) = self.running_step() else {
                    return;
                };
                let step = &mut self.steps[index];
                if step.action == WAIT_FOR_ACTION {
                    return;
                }
                if actions::lookup(&step.action).is_some_and(|a| a.rerun_safe) {
                    step.status = StepStatus::Pending;
                    step.start_time = None;
                    step.inputs = None;
                    step.message =
                        Some("Kiln restarted while the step ran; it runs again".to_string());
                    self.cursor = index;
                    return;
                }
                let message = format!(
                    "Kiln stopped while the step was running ({} cannot safely run twice); the step failed",
                    step.action
                );
                self.fail_step(index, &message, None, now);
            }
            ExecutionStatus::RollbackInProgress => {
                if let Some(&index) = self.rollback_queue.first() {
                    if self.steps[index].rollback_status == Some(RollbackStatus::Running) {
                        self.steps[index].rollback_status = None;
                    }
                }
            }
            _ => {}
        }
    }
}
