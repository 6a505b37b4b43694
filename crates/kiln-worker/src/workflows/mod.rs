//! Every build is a run of workflows (contract §1.3-1.6): a BUILD workflow (build-image or
//! build-container by default), TEST workflows (test-image or test-container by default, when
//! tests are enabled; custom ones in `parallelGroup`s, up to five of a group at once, groups
//! one after another), then a DISTRIBUTION workflow or the implicit distribution (the
//! distribution configuration, as RetryImage runs it).
//!
//! [`plan`] decides the runs when the build starts and stores them PENDING; [`driver`] runs one
//! execution and stores it after every transition; [`steps`] are the step actions on Kiln's
//! machinery; [`context`] is what the runs of one build share. The image follows the stage:
//! BUILDING, TESTING, DISTRIBUTING, then AVAILABLE or FAILED (with the failed execution and
//! step in its failure context). A later stage's runs are SKIPPED when an earlier one failed.

pub mod context;
pub mod driver;
pub mod plan;
pub mod resume;
pub mod scan;
pub mod steps;

use crate::logs::BuildLog;
use crate::run::{self, transition};
use crate::Shared;
use context::BuildContext;
use driver::{Ended, Overhead};
use kiln_core::workflow_runs::WorkflowRun;
use kiln_domain::resources::image::{FailureContext, ImageStatus};
use kiln_domain::resources::workflow::WorkflowType;
use kiln_workflow::execution::{ExecutionStatus, StepStatus};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// How many test workflows of one parallel group run at once (the user guide's "up to five").
pub const GROUP_WIDTH: usize = 5;

/// How a build's workflows ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The image reached AVAILABLE, FAILED or CANCELLED.
    Done,
    /// Kiln is stopping while a step waits for SendWorkflowStepAction: the build stays queued
    /// and in progress, and goes on after the restart.
    Suspended,
}

/// Stores `runs` in one transaction.
pub fn store_all(shared: &Shared, runs: &[WorkflowRun]) -> Result<(), String> {
    shared
        .core
        .store
        .write(|tx| {
            for run in runs {
                kiln_core::workflow_runs::put(tx, run)?;
            }
            Ok::<_, kiln_core::error::CoreError>(())
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

fn stage_status(t: WorkflowType) -> ImageStatus {
    match t {
        WorkflowType::Build => ImageStatus::Building,
        WorkflowType::Test => ImageStatus::Testing,
        WorkflowType::Distribution => ImageStatus::Distributing,
    }
}

fn stage_word(t: WorkflowType) -> &'static str {
    match t {
        WorkflowType::Build => "build",
        WorkflowType::Test => "test",
        WorkflowType::Distribution => "distribute",
    }
}

/// Why a run failed: the message of the step that failed it, or the execution's.
fn failure_of(run: &WorkflowRun) -> (String, Option<String>) {
    let exec = &run.execution;
    let step = exec
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .find(|s| s.on_failure == kiln_workflow::document::OnFailure::Abort)
        .or_else(|| exec.steps.iter().find(|s| s.status == StepStatus::Failed));
    let message = step
        .and_then(|s| s.message.clone())
        .or_else(|| exec.message.clone())
        .unwrap_or_else(|| format!("the workflow ended {:?}", exec.status));
    (message, step.map(|s| s.name.clone()))
}

/// Runs (or goes on with) the workflows `runs` of the build in `ctx`, in stage order.
pub fn execute(ctx: &BuildContext, mut runs: Vec<WorkflowRun>) -> Outcome {
    let arn = ctx.image.arn.to_string();
    let mut outputs: Map<String, Value> = Map::new();
    let mut overhead = Overhead::default();
    for run in runs
        .iter()
        .filter(|r| r.execution.status == ExecutionStatus::Completed)
    {
        outputs.extend(run.execution.outputs.clone());
    }
    let has_distribution = runs
        .iter()
        .any(|r| r.workflow_type == WorkflowType::Distribution);
    let mut failed: Option<(WorkflowType, String)> = None;
    for stage in [
        WorkflowType::Build,
        WorkflowType::Test,
        WorkflowType::Distribution,
    ] {
        let in_stage: Vec<usize> = (0..runs.len())
            .filter(|&i| runs[i].workflow_type == stage)
            .filter(|&i| !runs[i].execution.status.is_terminal())
            .collect();
        if failed.is_some() || ctx.cancelled() {
            skip(
                ctx,
                &mut runs,
                &in_stage,
                "an earlier stage of the build did not succeed",
            );
            continue;
        }
        if stage == WorkflowType::Distribution {
            // The scan the test workflows did not make, and ON_DEMAND_AMI_CVE's gate: an image
            // it fails is FAILED in the test stage and never distributed.
            if let Err(message) = scan::after_tests(ctx) {
                failed = Some((WorkflowType::Test, message));
                skip(
                    ctx,
                    &mut runs,
                    &in_stage,
                    "the image failed its scanResultCondition",
                );
                continue;
            }
            // Entering DISTRIBUTING records what was built (digest, OS, packages).
            let Some(image) = enter_distribution(ctx) else {
                ctx.end_all();
                return Outcome::Done;
            };
            if !has_distribution {
                log_overhead(ctx, &overhead);
                let built = ctx.state().built.clone();
                match built {
                    Some(built) => {
                        run::deliver(ctx.shared, &image, &built, ctx.log);
                        // The instances come down once the image is delivered (their layers
                        // are in the store): the image does not wait for their removal.
                        ctx.end_all();
                    }
                    None => {
                        ctx.end_all();
                        let reason = "distribute stage failed: the build workflow made no image \
                                      (it has no CreateImage step)";
                        fail_image(ctx, ImageStatus::Distributing, reason.into(), None, None)
                    }
                }
                return Outcome::Done;
            }
        }
        if in_stage.is_empty() {
            continue;
        }
        match stage {
            WorkflowType::Build => ctx.log.event("stage build started"),
            WorkflowType::Test => {
                let already = run::read_image(ctx.shared, &arn)
                    .is_some_and(|i| i.status == ImageStatus::Testing);
                if !already && !transition(ctx.shared, &arn, ImageStatus::Testing, None, |_| {}) {
                    ctx.cancel.store(true, Ordering::SeqCst);
                }
                ctx.log.event("stage test started");
            }
            WorkflowType::Distribution => {}
        }
        let groups = groups_of(&runs, &in_stage);
        for group in groups {
            if failed.is_some() || ctx.cancelled() {
                skip(
                    ctx,
                    &mut runs,
                    &group,
                    "an earlier workflow of the build did not succeed",
                );
                continue;
            }
            for &i in &group {
                if runs[i].execution.status == ExecutionStatus::Pending {
                    runs[i].execution.context.workflow_outputs = outputs.clone();
                }
            }
            let ended = run_group(ctx, &mut runs, &group, &mut overhead);
            if ended.contains(&Ended::Suspended) {
                ctx.end_all();
                return Outcome::Suspended;
            }
            for &i in &group {
                let run = &runs[i];
                match run.execution.status {
                    ExecutionStatus::Completed => outputs.extend(run.execution.outputs.clone()),
                    ExecutionStatus::Cancelled => {}
                    _ if plan::continues_on_failure(&ctx.image, run) => ctx.log.event(&format!(
                        "workflow {} failed; its onFailure is CONTINUE, so the build goes on",
                        plan::workflow_name(run)
                    )),
                    _ if failed.is_none() => {
                        let (message, _) = failure_of(run);
                        failed = Some((stage, message));
                    }
                    _ => {}
                }
            }
            let made = {
                let state = ctx.state();
                state.built.is_some() || state.pending.is_some()
            };
            if failed.is_none() && stage == WorkflowType::Build && !made {
                failed = Some((
                    stage,
                    "the build workflow made no image (it has no CreateImage step)".into(),
                ));
            }
        }
    }
    // Each ending below takes the instances down (`end_all`); a build that succeeded, once
    // its image is AVAILABLE.
    log_overhead(ctx, &overhead);
    if ctx.cancelled() {
        ctx.end_all();
        let interrupted = ctx.shared.stopping();
        if ctx.state().built.is_some() && failed.is_none() {
            run::discard(ctx.shared, &ctx.image);
        }
        run::end_cancelled(ctx.shared, &arn, ctx.log, interrupted);
        return Outcome::Done;
    }
    match failed {
        Some((stage, message)) => {
            ctx.end_all();
            let failed_run = runs.iter().find(|r| {
                r.workflow_type == stage
                    && !plan::continues_on_failure(&ctx.image, r)
                    && r.execution.status != ExecutionStatus::Completed
            });
            let step = failed_run.and_then(|r| failure_of(r).1);
            let workflow = failed_run.map(|r| failed_workflow(ctx, r));
            let mut reason = format!("{} stage failed: {message}", stage_word(stage));
            let kept = ctx.state().kept_instance.clone();
            if let Some(id) = &kept {
                reason.push_str(&format!(
                    " (the {} instance {id} was kept for inspection: kiln instance shell {id})",
                    stage_word(stage)
                ));
            }
            if stage != WorkflowType::Distribution && kept.is_none() {
                // Nothing will distribute what was built (RetryImage builds again); a kept
                // test instance still has its layers below it, so they stay with it.
                run::discard(ctx.shared, &ctx.image);
            }
            fail_image(ctx, stage_status(stage), reason, step, kept);
            if let Some(workflow) = workflow {
                record_failed_workflow(ctx, workflow);
            }
        }
        None => {
            finish_distribution(ctx);
            ctx.end_all();
        }
    }
    Outcome::Done
}

fn log_overhead(ctx: &BuildContext, overhead: &Overhead) {
    if overhead.steps > 0 {
        tracing::debug!(
            arn = %ctx.image.arn,
            steps = overhead.steps,
            engine_us = overhead.engine.as_micros() as u64,
            "workflow engine overhead"
        );
        ctx.log.event(&format!(
            "workflows: {} steps, engine overhead {} us per step",
            overhead.steps,
            overhead.engine.as_micros() as u64 / u64::from(overhead.steps)
        ));
    }
}

/// The groups of the runs `indices` (all of one stage), in order: runs sharing a
/// `parallelGroup` run together; a run without one is a group of its own.
fn groups_of(runs: &[WorkflowRun], indices: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for &i in indices {
        let name = runs[i].parallel_group.clone();
        match groups
            .iter_mut()
            .find(|(g, _)| name.is_some() && *g == name)
        {
            Some((_, members)) => members.push(i),
            None => groups.push((name, vec![i])),
        }
    }
    groups.into_iter().map(|(_, m)| m).collect()
}

/// Runs the group's workflows, up to [`GROUP_WIDTH`] at once.
fn run_group(
    ctx: &BuildContext,
    runs: &mut [WorkflowRun],
    group: &[usize],
    overhead: &mut Overhead,
) -> Vec<Ended> {
    if group.len() == 1 {
        return vec![driver::drive(ctx, &mut runs[group[0]], overhead)];
    }
    let queue: Mutex<Vec<(usize, WorkflowRun)>> =
        Mutex::new(group.iter().rev().map(|&i| (i, runs[i].clone())).collect());
    let done: Mutex<Vec<(usize, WorkflowRun, Ended, Overhead)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..group.len().min(GROUP_WIDTH) {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((i, mut run)) = next else {
                    return;
                };
                let mut mine = Overhead::default();
                let ended = driver::drive(ctx, &mut run, &mut mine);
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, run, ended, mine));
            });
        }
    });
    let mut ended = Vec::new();
    for (i, run, e, mine) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
        runs[i] = run;
        ended.push(e);
        overhead.engine += mine.engine;
        overhead.steps += mine.steps;
    }
    ended
}

fn skip(ctx: &BuildContext, runs: &mut [WorkflowRun], indices: &[usize], why: &str) {
    let now = ctx.now();
    for &i in indices {
        if runs[i].execution.skip(why, now).is_ok() {
            driver::store(ctx, &runs[i]);
            ctx.log.event(&format!(
                "workflow {} ({}): SKIPPED: {why}",
                plan::workflow_name(&runs[i]),
                runs[i].execution_id
            ));
        }
    }
}

/// DISTRIBUTING, with what was built recorded; `None` when the image is no longer this
/// build's (cancelled or deleted meanwhile), its store entry then dropped.
fn enter_distribution(ctx: &BuildContext) -> Option<kiln_domain::resources::image::Image> {
    let built = match ctx.built() {
        Ok(built) => built,
        Err(why) => {
            fail_image(
                ctx,
                ImageStatus::Building,
                format!("build stage failed: CreateImage: {why}"),
                Some("CreateImage".into()),
                None,
            );
            return None;
        }
    };
    let metadata = ctx.state().metadata.clone();
    let parent_os = ctx.parent.as_ref().and_then(|p| p.os_version.clone());
    let image =
        run::enter_distributing(ctx.shared, &ctx.image, built.as_ref(), metadata, parent_os);
    if image.is_none() {
        let interrupted = ctx.shared.stopping();
        run::discard(ctx.shared, &ctx.image);
        run::end_cancelled(ctx.shared, &ctx.image.arn.to_string(), ctx.log, interrupted);
    }
    image
}

/// After a DISTRIBUTION workflow completed: AVAILABLE with what it made.
fn finish_distribution(ctx: &BuildContext) {
    let (built, delivered) = {
        let state = ctx.state();
        (state.built.clone(), state.distributed.clone())
    };
    let Some(built) = built else {
        return fail_image(
            ctx,
            ImageStatus::Distributing,
            "distribute stage failed: the build made no image".into(),
            None,
            None,
        );
    };
    let image = run::read_image(ctx.shared, &ctx.image.arn.to_string())
        .unwrap_or_else(|| ctx.image.clone());
    run::finish_available(
        ctx.shared,
        &image,
        &built,
        delivered.unwrap_or_default(),
        ctx.log,
    );
}

/// Where in the workflows a build failed, for the image's failure context.
struct FailedWorkflow {
    execution_id: String,
    workflow_arn: String,
    step_execution_id: Option<String>,
    component: Option<kiln_domain::resources::image::ComponentFailure>,
}

fn failed_workflow(ctx: &BuildContext, run: &WorkflowRun) -> FailedWorkflow {
    let index = run
        .execution
        .steps
        .iter()
        .position(|s| {
            s.status == StepStatus::Failed
                && s.on_failure == kiln_workflow::document::OnFailure::Abort
        })
        .or_else(|| {
            run.execution
                .steps
                .iter()
                .position(|s| s.status == StepStatus::Failed)
        });
    let component = index
        .and_then(|i| {
            ctx.state()
                .component_failures
                .get(&(run.execution_id.clone(), i))
                .cloned()
        })
        .and_then(|c| {
            let arn = ctx
                .image
                .snapshot
                .as_ref()
                .and_then(|s| s.components.get(c.index))
                .map(|b| b.arn.clone())?;
            Some(kiln_domain::resources::image::ComponentFailure {
                component_arn: arn,
                phase_name: c.phase,
                step_name: c.step,
                action: c.action,
                error_message: c.error.chars().take(1024).collect(),
            })
        });
    FailedWorkflow {
        execution_id: run.execution_id.clone(),
        workflow_arn: run.workflow_arn.clone(),
        step_execution_id: index.map(|i| run.step_id(i)),
        component,
    }
}

/// Adds the failed workflow to the failure context `fail_image` recorded.
fn record_failed_workflow(ctx: &BuildContext, workflow: FailedWorkflow) {
    let arn = ctx.image.arn.to_string();
    let written = ctx.shared.core.store.write(|tx| {
        use kiln_store::TxnExt;
        let Some(mut image) = tx.get::<kiln_domain::resources::image::Image>(&arn)? else {
            return Ok(());
        };
        if let Some(f) = image.failure.as_mut() {
            f.workflow_execution_id = Some(workflow.execution_id);
            f.workflow_arn = Some(workflow.workflow_arn);
            f.step_execution_id = workflow.step_execution_id;
            f.component = workflow.component;
        }
        tx.put(&image)
    });
    if let Err(e) = written.and_then(|r| r) {
        tracing::error!(arn, error = %e, "recording the failed workflow failed");
    }
}

fn fail_image(
    ctx: &BuildContext,
    status: ImageStatus,
    reason: String,
    step: Option<String>,
    kept: Option<String>,
) {
    ctx.log.event(&format!("FAILED: {reason}"));
    let distributing = status == ImageStatus::Distributing;
    transition(
        ctx.shared,
        &ctx.image.arn.to_string(),
        ImageStatus::Failed,
        Some(reason),
        |i| {
            i.kept_instance = kept;
            i.failure = Some(FailureContext {
                image_status: status,
                failed_step: step,
                distribution: None,
                workflow_execution_id: None,
                workflow_arn: None,
                step_execution_id: None,
                component: None,
            });
            // A failed distribution workflow can be retried from the store's contents.
            i.resume_at = distributing.then_some(ImageStatus::Distributing);
        },
    );
}

/// Runs `f` while a watcher raises the build's cancel flag when the image stops being this
/// build's (CancelImageCreation, DeleteImage, a lost lease) or Kiln stops, and kills the
/// processes of its instances then.
fn watched<T>(ctx: &BuildContext, f: impl FnOnce() -> T) -> T {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(|| run::watch_for_cancel(ctx.shared, &ctx.image, &ctx.cancel, finished));
        let result = f();
        drop(done); // wakes the watcher at once
        result
    })
}

/// FAILED before any workflow ran (the build could not be prepared or planned).
fn fail_before(
    shared: &Shared,
    image: &kiln_domain::resources::image::Image,
    log: &BuildLog,
    why: &str,
) {
    let reason = format!("build stage failed: {why}");
    log.event(&format!("FAILED: {reason}"));
    transition(
        shared,
        &image.arn.to_string(),
        ImageStatus::Failed,
        Some(reason),
        |i| {
            i.failure = Some(FailureContext {
                image_status: ImageStatus::Building,
                failed_step: None,
                distribution: None,
                workflow_execution_id: None,
                workflow_arn: None,
                step_execution_id: None,
                component: None,
            });
            i.resume_at = None;
        },
    );
}

/// The build of an image just moved to BUILDING: plans its workflows, stores them PENDING,
/// and runs them.
pub fn start(
    shared: &std::sync::Arc<Shared>,
    image: kiln_domain::resources::image::Image,
    log: &BuildLog,
) -> Outcome {
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (request, engine, parent) = match run::prepare(shared, &image, log, &cancel) {
        Ok(prepared) => prepared,
        Err(why) => {
            fail_before(shared, &image, log, &why);
            return Outcome::Done;
        }
    };
    let has_tests = kiln_build::has_test_phase(&request.components);
    let planned = shared
        .core
        .store
        .read(|tx| {
            let mut runs = plan::plan(tx, &image, has_tests)?;
            // A RetryImage that builds again: the earlier attempt's executions stay, and these
            // are the next attempt's (`retried`).
            let attempt = kiln_core::workflow_runs::of_image(tx, &image.arn)
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| r.attempt + 1)
                .max()
                .unwrap_or(0);
            for run in &mut runs {
                run.attempt = attempt;
            }
            Ok::<_, String>(runs)
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    let runs = match planned.and_then(|runs| store_all(shared, &runs).map(|()| runs)) {
        Ok(runs) => runs,
        Err(why) => {
            parent.release(shared);
            fail_before(
                shared,
                &image,
                log,
                &format!("planning the workflows: {why}"),
            );
            return Outcome::Done;
        }
    };
    let ctx = BuildContext::new(shared, image, log, request, engine, cancel, Some(parent));
    scan::start(&ctx);
    let outcome = watched(&ctx, || execute(&ctx, runs));
    if let Some(parent) = &ctx.parent {
        parent.release(shared);
    }
    outcome
}
