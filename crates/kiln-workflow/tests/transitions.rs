//! Table-driven tests of the execution state machine: each case is a document, the outcome the
//! "worker" reports for each step, and what must result.

use kiln_workflow::execution::{
    Context, EngineError, ExecutionStatus as X, RollbackStatus as R, StepStatus as S, WaitAction,
};
use kiln_workflow::{Document, Execution, Next};
use serde_json::{json, Value};

fn doc(steps: &str) -> Document {
    let text = format!(
        "schemaVersion: 1.0\nparameters:\n  - {{ name: flag, type: boolean, default: true }}\nsteps:\n{steps}\noutputs:\n  - {{ name: Out, value: \"$.stepOutputs.Aaa.instanceId\" }}\n"
    );
    Document::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn start(steps: &str) -> Execution {
    let context = Context {
        imagebuilder: json!({"imageType": "AMI"}),
        workflow_outputs: [("ImageId".to_string(), json!("ami-0"))]
            .into_iter()
            .collect(),
    };
    Execution::start(doc(steps), &[], context).expect("starts")
}

/// What the fake worker does for a step: succeed (with `instanceId` = the step name) or fail.
fn outcome(fails: &[&str], name: &str) -> Result<Value, String> {
    if fails.contains(&name) {
        Err(format!("{name} broke"))
    } else {
        Ok(json!({"instanceId": name}))
    }
}

/// Runs to the end; returns the events ("run Aaa", "rollback Aaa") and the final status.
fn drive(exec: &mut Execution, fails: &[&str], rollback_fails: &[&str]) -> (Vec<String>, X) {
    let mut events = Vec::new();
    for now in 1.. {
        match exec.next(now * 1000) {
            Next::RunStep { index, .. } => {
                let name = exec.steps[index].name.clone();
                events.push(format!("run {name}"));
                exec.step_finished(index, outcome(fails, &name), now * 1000)
                    .expect("finished");
            }
            Next::Rollback { index, .. } => {
                let name = exec.steps[index].name.clone();
                events.push(format!("rollback {name}"));
                let result = if rollback_fails.contains(&name.as_str()) {
                    Err("nope".into())
                } else {
                    Ok(())
                };
                exec.rollback_finished(index, result, now * 1000)
                    .expect("rolled back");
            }
            Next::Done { status, .. } => return (events, status),
            Next::Wait { .. } => panic!("nothing should wait"),
        }
    }
    unreachable!()
}

fn statuses(exec: &Execution) -> Vec<(S, Option<R>)> {
    exec.steps
        .iter()
        .map(|s| (s.status, s.rollback_status))
        .collect()
}

const L: &str = "    action: LaunchInstance\n    inputs: { waitFor: ssmAgent }";
const C: &str = "    action: RunCommand\n    inputs: { documentName: x, instanceId.$: \"$.stepOutputs.Aaa.instanceId\" }";
const M: &str = "    action: CollectImageMetadata\n    inputs: { instanceId: i }";

fn step(name: &str, body: &str, extra: &str) -> String {
    format!("  - name: {name}\n{body}\n{extra}")
}

#[test]
fn transitions() {
    struct Case {
        what: &'static str,
        steps: Vec<String>,
        fails: &'static [&'static str],
        rollback_fails: &'static [&'static str],
        events: &'static [&'static str],
        status: X,
        steps_after: Vec<(S, Option<R>)>,
    }
    let cases = [
        Case {
            what: "all succeed; an if that is false skips",
            steps: vec![
                step("Aaa", L, ""),
                step(
                    "Bbb",
                    C,
                    "    if: { booleanEquals: false, value: \"$.parameters.flag\" }\n",
                ),
                step(
                    "Ccc",
                    C,
                    "    if: { stringEquals: AMI, value: \"$.imagebuilder.imageType\" }\n",
                ),
            ],
            fails: &[],
            rollback_fails: &[],
            events: &["run Aaa", "run Ccc"],
            status: X::Completed,
            steps_after: vec![
                (S::Completed, None),
                (S::Skipped, None),
                (S::Completed, None),
            ],
        },
        Case {
            what: "Abort stops the workflow; nothing to roll back",
            steps: vec![
                step(
                    "Aaa",
                    C.replace(
                        "instanceId.$: \"$.stepOutputs.Aaa.instanceId\"",
                        "instanceId: i",
                    )
                    .as_str(),
                    "",
                ),
                step("Bbb", C, ""),
                step("Ccc", C, ""),
            ],
            fails: &["Bbb"],
            rollback_fails: &[],
            events: &["run Aaa", "run Bbb"],
            status: X::Failed,
            steps_after: vec![
                (S::Completed, Some(R::Skipped)),
                (S::Failed, Some(R::Skipped)),
                (S::Pending, None),
            ],
        },
        Case {
            what: "Continue runs the remaining steps",
            steps: vec![
                step("Aaa", L, ""),
                step("Bbb", C, "    onFailure: Continue\n"),
                step("Ccc", C, ""),
            ],
            fails: &["Bbb"],
            rollback_fails: &[],
            events: &["run Aaa", "run Bbb", "run Ccc"],
            status: X::Completed,
            steps_after: vec![
                (S::Completed, None),
                (S::Failed, None),
                (S::Completed, None),
            ],
        },
        Case {
            what: "rollback walks back from the failed step, only actions that have one",
            steps: vec![
                step("Aaa", L, ""),
                step("Meta", M, ""),
                step("Bbb", C, ""),
                step("Launch2", L, ""),
                step("Ddd", C, ""),
            ],
            fails: &["Launch2"],
            rollback_fails: &[],
            events: &[
                "run Aaa",
                "run Meta",
                "run Bbb",
                "run Launch2",
                "rollback Launch2",
                "rollback Meta",
                "rollback Aaa",
            ],
            status: X::RollbackCompleted,
            steps_after: vec![
                (S::Completed, Some(R::Completed)),
                (S::Completed, Some(R::Completed)),
                (S::Completed, Some(R::Skipped)),
                (S::Failed, Some(R::Completed)),
                (S::Pending, None),
            ],
        },
        Case {
            what: "rollbackEnabled false (or a path to false) keeps a step",
            steps: vec![
                step("Aaa", L, "    rollbackEnabled: false\n"),
                step("Meta", M, "    rollbackEnabled: \"$.parameters.flag\"\n"),
                step("Bbb", C, ""),
            ],
            fails: &["Bbb"],
            rollback_fails: &[],
            events: &["run Aaa", "run Meta", "run Bbb", "rollback Meta"],
            status: X::RollbackCompleted,
            steps_after: vec![
                (S::Completed, Some(R::Skipped)),
                (S::Completed, Some(R::Completed)),
                (S::Failed, Some(R::Skipped)),
            ],
        },
        Case {
            what: "a failed rollback fails the workflow, the others still run",
            steps: vec![step("Aaa", L, ""), step("Meta", M, ""), step("Bbb", C, "")],
            fails: &["Bbb"],
            rollback_fails: &["Meta"],
            events: &[
                "run Aaa",
                "run Meta",
                "run Bbb",
                "rollback Meta",
                "rollback Aaa",
            ],
            status: X::Failed,
            steps_after: vec![
                (S::Completed, Some(R::Completed)),
                (S::Completed, Some(R::Failed)),
                (S::Failed, Some(R::Skipped)),
            ],
        },
        Case {
            what: "inputs that do not resolve fail the step",
            steps: vec![
                step(
                    "Aaa",
                    L,
                    "    if: { booleanEquals: false, value: \"$.parameters.flag\" }\n",
                ),
                step("Bbb", C, ""),
            ],
            fails: &[],
            rollback_fails: &[],
            events: &[],
            status: X::Failed,
            steps_after: vec![(S::Skipped, None), (S::Failed, Some(R::Skipped))],
        },
    ];
    for case in cases {
        let mut exec = start(&case.steps.concat());
        let (events, status) = drive(&mut exec, case.fails, case.rollback_fails);
        assert_eq!(events, case.events, "{}", case.what);
        assert_eq!(status, case.status, "{}: {:?}", case.what, exec.message);
        assert_eq!(statuses(&exec), case.steps_after, "{}", case.what);
        assert!(exec.end_time.is_some(), "{}", case.what);
        assert!(
            exec.steps.iter().all(|s| s.status != S::Running),
            "{}",
            case.what
        );
    }
}

#[test]
fn outputs_counts_and_messages() {
    let mut exec = start(
        &[
            step("Aaa", L, ""),
            step("Bbb", C, "    onFailure: Continue\n"),
            step(
                "Ccc",
                C,
                "    if: { booleanEquals: false, value: \"$.parameters.flag\" }\n",
            ),
        ]
        .concat(),
    );
    let (_, status) = drive(&mut exec, &["Bbb"], &[]);
    assert_eq!(status, X::Completed);
    assert_eq!(exec.outputs.get("Out"), Some(&json!("Aaa")));
    let c = exec.counts();
    assert_eq!(
        (
            c.total_step_count,
            c.total_steps_succeeded,
            c.total_steps_failed,
            c.total_steps_skipped
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(exec.steps[1].message.as_deref(), Some("Bbb broke"));
    assert_eq!(
        exec.steps[1].outputs,
        Some(json!({"errorMessage": "Bbb broke"}))
    );
    assert_eq!(
        exec.steps[1].inputs,
        Some(json!({"documentName": "x", "instanceId": "Aaa"}))
    );
    assert_eq!(exec.steps[0].timeout_seconds, 4500);
}

/// Stores and reloads, as the worker does across a restart.
fn restart(exec: &Execution, now: i64) -> Execution {
    let stored = serde_json::to_string(exec).expect("serialises");
    let mut back: Execution = serde_json::from_str(&stored).expect("deserialises");
    assert_eq!(&back, exec);
    back.recover(now);
    back
}

#[test]
fn restart_never_reruns_a_completed_step() {
    // Aaa completed; Bbb (RunCommand, not safe to repeat) was running: it fails, Aaa is rolled back.
    let mut exec = start(&[step("Aaa", L, ""), step("Bbb", C, "")].concat());
    let Next::RunStep { index: 0, .. } = exec.next(1000) else {
        panic!()
    };
    exec.step_finished(0, Ok(json!({"instanceId": "i-1"})), 2000)
        .unwrap();
    let Next::RunStep { index: 1, .. } = exec.next(3000) else {
        panic!()
    };
    let mut exec = restart(&exec, 4000);
    assert_eq!(exec.steps[1].status, S::Failed);
    assert!(
        exec.steps[1]
            .message
            .as_deref()
            .unwrap()
            .starts_with("Kiln stopped"),
        "{:?}",
        exec.steps[1].message
    );
    let (events, status) = drive(&mut exec, &[], &[]);
    assert_eq!(events, ["rollback Aaa"]);
    assert_eq!(status, X::RollbackCompleted);
    assert_eq!(exec.steps[0].attempts, 1);

    // Aaa re-runnable action (TerminateInstance) that was running runs again; Aaa does not.
    let term = "    action: TerminateInstance\n    inputs: { instanceId.$: \"$.stepOutputs.Aaa.instanceId\" }";
    let mut exec = start(&[step("Aaa", L, ""), step("Ttt", term, "")].concat());
    let Next::RunStep { index: 0, .. } = exec.next(1000) else {
        panic!()
    };
    exec.step_finished(0, Ok(json!({"instanceId": "i-1"})), 2000)
        .unwrap();
    let Next::RunStep { index: 1, .. } = exec.next(3000) else {
        panic!()
    };
    let mut exec = restart(&exec, 4000);
    assert_eq!(exec.steps[1].status, S::Pending);
    let (events, status) = drive(&mut exec, &[], &[]);
    assert_eq!(events, ["run Ttt"]);
    assert_eq!(status, X::Completed);
    assert_eq!(exec.steps[1].attempts, 2);

    // Aaa rollback that was running is asked for again.
    let mut exec = start(&[step("Aaa", L, ""), step("Bbb", C, "")].concat());
    let Next::RunStep { .. } = exec.next(1000) else {
        panic!()
    };
    exec.step_finished(0, Ok(json!({"instanceId": "i-1"})), 2000)
        .unwrap();
    let Next::RunStep { .. } = exec.next(3000) else {
        panic!()
    };
    exec.step_finished(1, Err("x".into()), 4000).unwrap();
    let Next::Rollback { index: 0, .. } = exec.next(5000) else {
        panic!()
    };
    assert_eq!(
        exec.next(5500),
        Next::Wait {
            index: 0,
            deadline: None
        }
    );
    let mut exec = restart(&exec, 6000);
    let (events, status) = drive(&mut exec, &[], &[]);
    assert_eq!(events, ["rollback Aaa"]);
    assert_eq!(status, X::RollbackCompleted);

    // Aaa finished execution is left alone.
    let mut done = exec.clone();
    done.recover(9000);
    assert_eq!(done, exec);
}

const W: &str = "    action: WaitForAction\n    timeoutSeconds: 60\n    inputs: {}";
const AFTER: &str = "    action: RunCommand\n    inputs: { documentName: x, instanceId.$: \"$.stepOutputs.Approve.reason\" }";

/// Runs to the WaitForAction step (index 1) and returns the execution.
fn waiting(on_failure: &str) -> Execution {
    let mut exec = start(
        &[
            step("Aaa", L, ""),
            step("Approve", W, on_failure),
            step("After", AFTER, ""),
        ]
        .concat(),
    );
    let Next::RunStep { index: 0, .. } = exec.next(0) else {
        panic!()
    };
    exec.step_finished(0, Ok(json!({"instanceId": "i-1"})), 0)
        .unwrap();
    let Next::RunStep {
        index: 1,
        ref action,
        timeout_seconds: 60,
        deadline: 60_000,
        ..
    } = exec.next(0)
    else {
        panic!()
    };
    assert_eq!(action, "WaitForAction");
    assert_eq!(exec.waiting_step(), Some(1));
    assert_eq!(
        exec.next(1000),
        Next::Wait {
            index: 1,
            deadline: Some(60_000)
        }
    );
    exec
}

#[test]
fn resume_and_stop() {
    // RESUME completes the step; its outputs feed later steps.
    let mut exec = waiting("");
    assert_eq!(
        exec.step_finished(1, Ok(json!({})), 1000),
        Err(EngineError::CompletesByAction("Approve".into()))
    );
    exec.waiting_action(1, WaitAction::Resume, Some("looks good"), 2000)
        .unwrap();
    assert_eq!(
        exec.steps[1].outputs,
        Some(json!({"action": "RESUME", "reason": "looks good"}))
    );
    assert_eq!(exec.waiting_step(), None);
    assert!(matches!(
        exec.waiting_action(1, WaitAction::Resume, None, 2500),
        Err(EngineError::NotRunning { .. })
    ));
    let Next::RunStep {
        index: 2, inputs, ..
    } = exec.next(3000)
    else {
        panic!()
    };
    assert_eq!(inputs["instanceId"], json!("looks good"));

    // STOP fails the step; Abort then rolls back the launch.
    let mut exec = waiting("");
    exec.waiting_action(1, WaitAction::Stop, Some("no"), 2000)
        .unwrap();
    assert_eq!(exec.steps[1].status, S::Failed);
    assert_eq!(
        exec.steps[1].message.as_deref(),
        Some("Stopped by SendWorkflowStepAction: no")
    );
    let (events, status) = drive(&mut exec, &[], &[]);
    assert_eq!(
        (events, status),
        (vec!["rollback Aaa".to_string()], X::RollbackCompleted)
    );

    // STOP with onFailure Continue goes on to the next step (which then cannot resolve its input).
    let mut exec = waiting("    onFailure: Continue\n");
    exec.waiting_action(1, WaitAction::Stop, None, 2000)
        .unwrap();
    assert_eq!(exec.status, X::Running);
    assert_eq!(exec.cursor, 2);
}

#[test]
fn wait_for_action_times_out_and_survives_restarts() {
    // Aaa restart keeps the step waiting, its deadline unchanged.
    let exec = waiting("");
    let mut exec = restart(&exec, 30_000);
    assert_eq!(exec.waiting_step(), Some(1));
    assert_eq!(
        exec.next(30_000),
        Next::Wait {
            index: 1,
            deadline: Some(60_000)
        }
    );
    // After the deadline the action is refused and the step has failed.
    assert_eq!(
        exec.waiting_action(1, WaitAction::Resume, None, 60_000),
        Err(EngineError::TimedOut("Approve".into()))
    );
    assert_eq!(exec.steps[1].status, S::Failed);
    assert!(exec.steps[1]
        .message
        .as_deref()
        .unwrap()
        .starts_with("Step timed out"));
    assert_eq!(exec.status, X::RollbackInProgress);

    // `next` past the deadline also times it out.
    let mut exec = waiting("    onFailure: Continue\n");
    let Next::Wait { .. } = exec.next(59_999) else {
        panic!()
    };
    // The step fails, Continue goes on, and the next step (which reads the waiting step's
    // `reason`) cannot resolve its input: it fails and aborts, rolling back the launch.
    let next = exec.next(61_000);
    assert_eq!(exec.steps[1].status, S::Failed);
    assert_eq!(exec.steps[2].status, S::Failed);
    assert!(exec.steps[2]
        .message
        .as_deref()
        .unwrap()
        .contains("could not be resolved"));
    assert!(matches!(next, Next::Rollback { index: 0, .. }), "{next:?}");
}

#[test]
fn ordinary_steps_time_out_too() {
    let mut exec = start(&step("Aaa", L, "    timeoutSeconds: 10\n"));
    let Next::RunStep {
        deadline: 10_000, ..
    } = exec.next(0)
    else {
        panic!()
    };
    // The failed launch itself is rolled back (its instance may exist).
    let Next::Rollback { index: 0, .. } = exec.next(10_000) else {
        panic!()
    };
    assert_eq!(exec.steps[0].status, S::Failed);
    // Aaa late report is refused.
    assert!(exec.step_finished(0, Ok(json!({})), 11_000).is_err());
}

#[test]
fn cancel() {
    let mut exec = waiting("");
    exec.cancel(5000).unwrap();
    assert_eq!(exec.status, X::Cancelled);
    assert_eq!(
        statuses(&exec),
        vec![
            (S::Completed, None),
            (S::Cancelled, None),
            (S::Pending, None)
        ]
    );
    assert_eq!(exec.cancel(6000), Err(EngineError::Finished(X::Cancelled)));
    assert!(matches!(
        exec.next(7000),
        Next::Done {
            status: X::Cancelled,
            ..
        }
    ));
    assert!(exec
        .waiting_action(1, WaitAction::Resume, None, 7000)
        .is_err());

    let mut exec = start(&step("Aaa", L, ""));
    exec.skip("the build failed", 1).unwrap();
    assert_eq!(exec.status, X::Skipped);
    assert!(matches!(
        exec.next(2),
        Next::Done {
            status: X::Skipped,
            ..
        }
    ));
}

#[test]
fn parameters_must_bind() {
    let d = Document::parse("schemaVersion: 1.0\nparameters:\n  - name: topic\nsteps:\n  - { name: Wait, action: WaitForAction, inputs: {} }\n").unwrap();
    let err = Execution::start(d, &[], Context::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameters: the workflow needs a value for topic"
    );
}
