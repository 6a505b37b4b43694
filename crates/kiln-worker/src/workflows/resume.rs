//! Builds a restart of Kiln found under way (contract §1.3, "restarts resume"). Recovery
//! ([`crate::recover`]) decides per image: when no execution needs an instance that died with
//! the last process (and the build's image, if it made one, is in the store), the build stays
//! queued and [`resume`] goes on from the stored executions: a WaitForAction step keeps
//! waiting (up to its deadline), completed steps never run again. Otherwise [`fail_interrupted`]
//! ends its executions FAILED, saying why.

use super::context::BuildContext;
use super::{execute, watched, Outcome};
use crate::run::{self, store_tag, INTERRUPTED};
use crate::Shared;
use kiln_core::workflow_runs::{self, WorkflowRun};
use kiln_domain::resources::image::Image;
use kiln_domain::resources::workflow::WorkflowType;
use kiln_workflow::execution::{ExecutionStatus, StepStatus};
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The executions of `image`'s latest build attempt (in order); empty when it ran none or they
/// cannot be read.
pub fn runs_of(shared: &Shared, image: &Image) -> Vec<WorkflowRun> {
    match shared
        .core
        .store
        .read(|tx| workflow_runs::latest_of_image(tx, &image.arn))
    {
        Ok(Ok(runs)) => runs,
        _ => Vec::new(),
    }
}

/// Whether `run` has launched an instance it has not terminated (it died with the process).
fn holds_instance(run: &WorkflowRun) -> bool {
    let id_of = |v: &Option<Value>| {
        v.as_ref()
            .and_then(|v| v.get("instanceId"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let steps = &run.execution.steps;
    let ended: Vec<String> = steps
        .iter()
        .filter(|s| s.action == "TerminateInstance" && s.status == StepStatus::Completed)
        .filter_map(|s| id_of(&s.inputs))
        .collect();
    steps
        .iter()
        .filter(|s| s.action == "LaunchInstance" && s.status == StepStatus::Completed)
        .filter_map(|s| id_of(&s.outputs))
        .any(|id| !ended.contains(&id))
}

/// Whether the build of `image` can go on after a restart (see the module docs).
pub fn resumable(shared: &Shared, image: &Image, runs: &[WorkflowRun]) -> bool {
    if runs.is_empty() {
        return false;
    }
    let under_way = |r: &&WorkflowRun| {
        matches!(
            r.execution.status,
            ExecutionStatus::Running | ExecutionStatus::RollbackInProgress
        )
    };
    if runs.iter().filter(under_way).any(holds_instance) {
        return false;
    }
    let built = runs.iter().any(|r| {
        r.workflow_type == WorkflowType::Build && r.execution.status == ExecutionStatus::Completed
    });
    !built || shared.store.resolve(&store_tag(&image.build_id)).is_ok()
}

/// Ends the unfinished executions of a build that cannot go on: a running step fails saying
/// Kiln stopped (its rollbacks run: the instances are gone already), pending ones are SKIPPED.
pub fn fail_interrupted(shared: &Shared, runs: Vec<WorkflowRun>) {
    let now = shared.core.clock.now_millis();
    let mut settled = Vec::new();
    for mut run in runs {
        if run.execution.status.is_terminal() {
            continue;
        }
        settle_interrupted(&mut run.execution, now);
        settled.push(run);
    }
    if let Err(e) = super::store_all(shared, &settled) {
        tracing::error!(error = %e, "storing interrupted workflow executions failed");
    }
}

/// Ends one unfinished execution of a build that cannot go on (see [`fail_interrupted`]).
pub fn settle_interrupted(exec: &mut kiln_workflow::Execution, now: i64) {
    let reason = if exec.status == ExecutionStatus::Pending {
        "Kiln stopped before the workflow ran"
    } else {
        INTERRUPTED
    };
    workflow_runs::settle_interrupted(exec, reason, now);
}

/// Goes on with the build of `image` (in progress, queued again by recovery).
pub fn resume(shared: &Arc<Shared>, image: Image) -> Outcome {
    let arn = image.arn.to_string();
    let log = match run::open_log(shared, &image) {
        Ok(log) => log,
        Err(e) => {
            run::abandon(
                shared,
                &arn,
                &format!("{INTERRUPTED} (reopening its build log: {e})"),
            );
            return Outcome::Done;
        }
    };
    let mut runs = runs_of(shared, &image);
    if !resumable(shared, &image, &runs) {
        fail_interrupted(shared, runs);
        log.event(&format!("FAILED: {INTERRUPTED}"));
        run::abandon(shared, &arn, INTERRUPTED);
        return Outcome::Done;
    }
    log.event(&format!(
        "image {arn}: going on with its workflows after a restart of Kiln"
    ));
    let cancel = Arc::new(AtomicBool::new(false));
    let (request, engine, parent) = match run::prepare(shared, &image, &log, &cancel) {
        Ok(prepared) => prepared,
        Err(why) => {
            fail_interrupted(shared, runs);
            log.event(&format!("FAILED: {INTERRUPTED}: {why}"));
            run::abandon(shared, &arn, &format!("{INTERRUPTED}: {why}"));
            return Outcome::Done;
        }
    };
    let now = shared.core.clock.now_millis();
    for run in runs.iter_mut() {
        run.execution.recover(now);
    }
    if let Err(e) = super::store_all(shared, &runs) {
        tracing::error!(arn, error = %e, "storing recovered workflow executions failed");
    }
    let ctx = BuildContext::new(shared, image, &log, request, engine, cancel, Some(parent));
    if let Ok(built) = shared.store.resolve(&store_tag(&ctx.image.build_id)) {
        ctx.state().built = Some(built);
    }
    let outcome = watched(&ctx, || execute(&ctx, runs));
    if let Some(parent) = &ctx.parent {
        parent.release(shared);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_workflow::execution::{Context, Next};
    use kiln_workflow::{Document, Execution};
    use serde_json::json;

    const DOC: &str = "name: d\nschemaVersion: 1.0\nsteps:\n  - name: Gate\n    action: WaitForAction\n  - name: Launch\n    action: LaunchInstance\n    inputs:\n      waitFor: ssmAgent\n  - name: Terminate\n    action: TerminateInstance\n    inputs:\n      instanceId.$: \"$.stepOutputs.Launch.instanceId\"\n";

    fn run() -> WorkflowRun {
        let document = Document::parse(DOC).expect("a document");
        let execution = Execution::start(document, &[], Context::default()).expect("bound");
        let id = workflow_runs::new_execution_id();
        WorkflowRun {
            arn: WorkflowRun::key("us-east-1", "123456789012", &id),
            execution_id: id,
            image_arn: "arn:aws:imagebuilder:us-east-1:123456789012:image/i/1.0.0/1".into(),
            workflow_arn: "arn:aws:imagebuilder:us-east-1:123456789012:workflow/build/d/1.0.0/1"
                .into(),
            workflow_type: WorkflowType::Build,
            parallel_group: None,
            ordinal: 0,
            execution,
            step_actions: Vec::new(),
            attempt: 0,
        }
    }

    #[test]
    fn a_run_holds_an_instance_from_launch_until_it_is_terminated() {
        let mut r = run();
        // Waiting at the gate before anything was launched: nothing died with the process.
        assert!(matches!(
            r.execution.next(1),
            Next::RunStep { index: 0, .. }
        ));
        assert!(!holds_instance(&r));
        r.execution
            .waiting_action(0, kiln_workflow::execution::WaitAction::Resume, None, 2)
            .expect("resumed");
        assert!(matches!(
            r.execution.next(3),
            Next::RunStep { index: 1, .. }
        ));
        r.execution
            .step_finished(1, Ok(json!({"instanceId": "b-build"})), 4)
            .expect("launched");
        assert!(
            holds_instance(&r),
            "a launched instance died with the process"
        );
        assert!(matches!(
            r.execution.next(5),
            Next::RunStep { index: 2, .. }
        ));
        r.execution
            .step_finished(2, Ok(json!({})), 6)
            .expect("terminated");
        assert!(!holds_instance(&r));
    }

    #[test]
    fn an_interrupted_run_ends_failed_and_pending_ones_skipped() {
        let mut running = run();
        running.execution.next(1);
        running
            .execution
            .waiting_action(0, kiln_workflow::execution::WaitAction::Resume, None, 2)
            .expect("resumed");
        running.execution.next(3); // Launch RUNNING when Kiln died
        let mut pending = run();
        settle_interrupted(&mut running.execution, 9);
        settle_interrupted(&mut pending.execution, 9);
        let settled = [running.execution.status, pending.execution.status];
        // The launch failed saying Kiln stopped; its rollback (the instance is gone) completed.
        let launch = &running.execution.steps[1];
        assert!(
            launch
                .message
                .as_deref()
                .is_some_and(|m| m.contains("Kiln stopped")),
            "{launch:?}"
        );
        assert_eq!(
            settled,
            [ExecutionStatus::RollbackCompleted, ExecutionStatus::Skipped]
        );
    }
}
