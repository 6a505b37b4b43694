//! The workflow runtime operations through a real server: ListWorkflowExecutions,
//! GetWorkflowExecution, ListWorkflowStepExecutions, GetWorkflowStepExecution,
//! ListWaitingWorkflowSteps and SendWorkflowStepAction, over execution records written straight
//! into the store (as the worker stores them), with the server stopped meanwhile. The server
//! runs with `--build-concurrency 0`, so nothing builds the image or moves the executions: what
//! the operations answer is exactly what was stored, plus what SendWorkflowStepAction wrote.

mod common;

use aws_sdk_imagebuilder::types::{
    WorkflowExecutionStatus, WorkflowStepActionType, WorkflowStepExecutionRollbackStatus,
    WorkflowStepExecutionStatus, WorkflowType,
};
use aws_sdk_imagebuilder::Client;
use common::{create_image, create_infra, error_code, error_message, Server, BUSYBOX, REGION};
use kiln_api::Service;
use kiln_core::workflow_runs::{self, StepAction, WorkflowRun};
use kiln_domain::resources::workflow::WorkflowType as Stage;
use kiln_workflow::execution::{Context, ExecutionStatus, Next, WaitAction};
use kiln_workflow::{Document, Execution};
use serde_json::{json, Value};

const ACCOUNT: &str = common::DEFAULT_ACCOUNT;
const OTHER_KEY: &str = "AKIDOTHERACCOUNT";
const OTHER_ACCOUNT: &str = "210987654321";

/// An approval gate, then a second gate that is not reached in these tests.
const GATE: &str = r#"
name: gate
description: waits for a person
schemaVersion: 1.0
steps:
  - name: Approve
    description: a person approves the image
    action: WaitForAction
    inputs:
      payload: "approve me"
  - name: AfterApproval
    action: WaitForAction
"#;

/// A test gate whose failure does not end the workflow.
const CONTINUE_GATE: &str = r#"
name: soft-gate
schemaVersion: 1.0
steps:
  - name: Check
    action: WaitForAction
    onFailure: Continue
    timeoutSeconds: 3600
"#;

/// A gate that waits one minute.
const SHORT_GATE: &str = r#"
name: short-gate
schemaVersion: 1.0
steps:
  - name: Quick
    action: WaitForAction
    timeoutSeconds: 60
"#;

/// A step that is not a WaitForAction.
const COMMAND: &str = r#"
name: command
schemaVersion: 1.0
steps:
  - name: Shell
    action: RunCommand
    inputs:
      instanceId: i-0123456789abcdef0
      documentName: AWS-RunShellScript
      parameters:
        commands: ["echo hi"]
"#;

/// A step skipped by its `if`, then a command under way.
const SKIPPING: &str = r#"
name: skipping
schemaVersion: 1.0
parameters:
  - name: approve
    type: boolean
    default: false
steps:
  - name: MaybeApprove
    action: WaitForAction
    if: { booleanEquals: true, value: "$.parameters.approve" }
    inputs: { snsTopicArn.$: "$.stepOutputs.Nothing.topic" }
  - name: Shell
    action: RunCommand
    inputs:
      instanceId: i-0123456789abcdef0
      documentName: AWS-RunShellScript
      parameters:
        commands: ["echo hi"]
"#;

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn workflow_arn(stage: &str, name: &str) -> String {
    format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:workflow/{stage}/{name}/1.0.0/1")
}

/// An execution of `document` driven with `next` at `started` until a step runs.
fn running(document: &str, started: i64) -> Execution {
    let document = Document::parse(document).expect("the test document parses");
    let mut execution =
        Execution::start(document, &[], Context::default()).expect("no parameters to bind");
    match execution.next(started) {
        Next::RunStep { .. } => {}
        other => panic!("a step should start: {other:?}"),
    }
    execution
}

fn run(
    image: &str,
    stage: Stage,
    name: &str,
    ordinal: u32,
    group: Option<&str>,
    execution: Execution,
) -> WorkflowRun {
    let execution_id = workflow_runs::new_execution_id();
    let stage_label = match stage {
        Stage::Build => "build",
        Stage::Test => "test",
        Stage::Distribution => "distribution",
    };
    WorkflowRun {
        arn: WorkflowRun::key(REGION, ACCOUNT, &execution_id),
        execution_id,
        image_arn: image.to_string(),
        workflow_arn: workflow_arn(stage_label, name),
        workflow_type: stage,
        parallel_group: group.map(str::to_string),
        ordinal,
        execution,
        step_actions: Vec::new(),
        attempt: 0,
    }
}

/// The executions of one image, as the tests store them.
struct Runs {
    /// BUILD: `Approve` waits (3 days by default).
    gate: WorkflowRun,
    /// TEST in group `fast`: `Check` waits, onFailure Continue.
    soft: WorkflowRun,
    /// TEST: `Quick` started two hours ago with a one-minute timeout, not recorded yet.
    overdue: WorkflowRun,
    /// DISTRIBUTION: `Quick` timed out and the timeout was recorded (the execution FAILED).
    timed_out: WorkflowRun,
    /// A RunCommand step under way (another image's, to keep ordinals simple).
    command: WorkflowRun,
    /// Another image's gate, resumed long ago with client token `old-token` (whose
    /// idempotency record is gone): the run's own record of its actions answers replays.
    resumed: WorkflowRun,
    /// Another image's: `MaybeApprove` SKIPPED, `Shell` (RunCommand) under way.
    skipping: WorkflowRun,
}

/// A server with one image (never built) and the executions of [`Runs`] stored for it.
async fn setup() -> (Server, Client, String, String, Runs) {
    let mut server = Server::start_with_args(
        &format!("{OTHER_KEY}={OTHER_ACCOUNT}"),
        &["--build-concurrency", "0"],
    );
    let client = server.client();
    let infra = create_infra(&client, "wf-infra").await;
    let recipe = common::bash_recipe(&client, "wf-recipe", BUSYBOX, &["true"]).await;
    let image = create_image(&client, &recipe, &infra).await;
    let other_image = create_image(&client, &recipe, &infra).await;

    let started = now() - 60_000;
    let gate = run(
        &image,
        Stage::Build,
        "gate",
        0,
        None,
        running(GATE, started),
    );
    let soft = run(
        &image,
        Stage::Test,
        "soft-gate",
        1,
        Some("fast"),
        running(CONTINUE_GATE, started + 1),
    );
    let overdue = run(
        &image,
        Stage::Test,
        "short-gate",
        2,
        None,
        running(SHORT_GATE, now() - 2 * 3_600_000),
    );
    let mut recorded = running(SHORT_GATE, now() - 3_600_000);
    let at = now() - 3_600_000 + 61_000;
    assert!(matches!(
        recorded.next(at),
        Next::Done {
            status: ExecutionStatus::Failed,
            ..
        }
    ));
    let timed_out = run(&image, Stage::Distribution, "short-gate", 3, None, recorded);
    let command = run(
        &other_image,
        Stage::Build,
        "command",
        0,
        None,
        running(COMMAND, started),
    );
    let mut resumed = run(
        &other_image,
        Stage::Build,
        "gate",
        1,
        None,
        running(GATE, started),
    );
    resumed
        .execution
        .waiting_action(0, WaitAction::Resume, Some("earlier"), started + 1)
        .expect("the gate waits");
    resumed.step_actions.push(StepAction {
        client_token: "old-token".into(),
        step_index: 0,
        action: WaitAction::Resume,
        reason: Some("earlier".into()),
    });
    let skipping = run(
        &other_image,
        Stage::Test,
        "skipping",
        2,
        None,
        running(SKIPPING, started),
    );
    let runs = Runs {
        skipping,
        resumed,
        gate,
        soft,
        overdue,
        timed_out,
        command,
    };

    // The server holds the database; the records go in while it is stopped.
    server.kill();
    {
        let svc = Service::open(&server.data_dir(), kiln_store::sqlite::Sync::Normal)
            .expect("opening the server's store");
        svc.store
            .write(|tx| -> Result<(), kiln_core::CoreError> {
                for r in [
                    &runs.gate,
                    &runs.soft,
                    &runs.overdue,
                    &runs.timed_out,
                    &runs.command,
                    &runs.resumed,
                    &runs.skipping,
                ] {
                    workflow_runs::put(tx, r)?;
                }
                Ok(())
            })
            .expect("the write commits")
            .expect("the records are stored");
    }
    server.restart();
    let client = server.client();
    (server, client, image, other_image, runs)
}

fn iso(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_json(text: Option<&str>) -> Value {
    serde_json::from_str(text.expect("JSON text")).expect("valid JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn executions_and_steps_read_as_stored() {
    let (_server, client, image, _, runs) = setup().await;

    // ListWorkflowExecutions: the image's executions in run order, every member.
    let out = client
        .list_workflow_executions()
        .image_build_version_arn(&image)
        .send()
        .await
        .expect("ListWorkflowExecutions");
    assert_eq!(out.image_build_version_arn(), Some(image.as_str()));
    assert_eq!(out.message(), None, "the image has not failed");
    let ids: Vec<&str> = out
        .workflow_executions()
        .iter()
        .map(|e| e.workflow_execution_id().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            runs.gate.execution_id.as_str(),
            &runs.soft.execution_id,
            &runs.overdue.execution_id,
            &runs.timed_out.execution_id
        ],
        "run order, and no other image's execution"
    );
    let gate = &out.workflow_executions()[0];
    assert_eq!(
        gate.workflow_build_version_arn(),
        Some(runs.gate.workflow_arn.as_str())
    );
    assert_eq!(gate.r#type(), Some(&WorkflowType::Build));
    assert_eq!(gate.status(), Some(&WorkflowExecutionStatus::Running));
    assert_eq!(gate.total_step_count(), 2);
    assert_eq!(gate.total_steps_succeeded(), 0);
    assert_eq!(gate.total_steps_failed(), 0);
    assert_eq!(gate.total_steps_skipped(), 0);
    assert_eq!(
        gate.start_time(),
        Some(iso(runs.gate.execution.start_time.unwrap()).as_str())
    );
    assert_eq!(gate.end_time(), None);
    assert_eq!(gate.parallel_group(), None);
    assert_eq!(gate.retried(), Some(false));
    assert_eq!(out.workflow_executions()[1].parallel_group(), Some("fast"));
    assert_eq!(
        out.workflow_executions()[1].r#type(),
        Some(&WorkflowType::Test)
    );
    let failed = &out.workflow_executions()[3];
    assert_eq!(failed.status(), Some(&WorkflowExecutionStatus::Failed));
    assert_eq!(failed.total_steps_failed(), 1);
    assert!(failed.end_time().is_some());
    assert!(
        failed.message().unwrap().contains("timed out"),
        "{:?}",
        failed.message()
    );

    // Pages of one.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_workflow_executions()
            .image_build_version_arn(&image)
            .max_results(1)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("a page");
        assert!(page.workflow_executions().len() <= 1);
        seen.extend(
            page.workflow_executions()
                .iter()
                .map(|e| e.workflow_execution_id().unwrap().to_string()),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ids);

    // GetWorkflowExecution: every member, and the image.
    let got = client
        .get_workflow_execution()
        .workflow_execution_id(&runs.soft.execution_id)
        .send()
        .await
        .expect("GetWorkflowExecution");
    assert_eq!(got.image_build_version_arn(), Some(image.as_str()));
    assert_eq!(
        got.workflow_execution_id(),
        Some(runs.soft.execution_id.as_str())
    );
    assert_eq!(
        got.workflow_build_version_arn(),
        Some(runs.soft.workflow_arn.as_str())
    );
    assert_eq!(got.r#type(), Some(&WorkflowType::Test));
    assert_eq!(got.status(), Some(&WorkflowExecutionStatus::Running));
    assert_eq!(got.parallel_group(), Some("fast"));
    assert_eq!(got.total_step_count(), 1);
    assert!(got.start_time().is_some() && got.end_time().is_none());

    // ListWorkflowStepExecutions: every step, started or not.
    let steps = client
        .list_workflow_step_executions()
        .workflow_execution_id(&runs.gate.execution_id)
        .send()
        .await
        .expect("ListWorkflowStepExecutions");
    assert_eq!(steps.image_build_version_arn(), Some(image.as_str()));
    assert_eq!(
        steps.workflow_execution_id(),
        Some(runs.gate.execution_id.as_str())
    );
    assert_eq!(
        steps.workflow_build_version_arn(),
        Some(runs.gate.workflow_arn.as_str())
    );
    assert_eq!(steps.steps().len(), 2);
    let approve = &steps.steps()[0];
    assert_eq!(
        approve.step_execution_id(),
        Some(runs.gate.step_id(0).as_str())
    );
    assert_eq!(approve.name(), Some("Approve"));
    assert_eq!(approve.description(), Some("a person approves the image"));
    assert_eq!(approve.action(), Some("WaitForAction"));
    assert_eq!(
        approve.status(),
        Some(&WorkflowStepExecutionStatus::Running),
        "a waiting step is RUNNING on the wire"
    );
    assert_eq!(
        parse_json(approve.inputs()),
        json!({"payload": "approve me"})
    );
    assert_eq!(approve.outputs(), None);
    assert_eq!(
        approve.start_time(),
        Some(iso(runs.gate.execution.steps[0].start_time.unwrap()).as_str())
    );
    // One attempt: AWS shows no attempt counters then.
    assert_eq!(approve.attempt_number(), None);
    assert_eq!(approve.max_attempts(), None);
    let after = &steps.steps()[1];
    assert_eq!(after.status(), Some(&WorkflowStepExecutionStatus::Pending));
    assert_eq!(after.inputs(), None);
    assert_eq!(after.start_time(), None);

    let page = client
        .list_workflow_step_executions()
        .workflow_execution_id(&runs.gate.execution_id)
        .max_results(1)
        .send()
        .await
        .expect("a page of steps");
    assert_eq!(page.steps().len(), 1);
    let token = page.next_token().expect("a second page").to_string();
    let second = client
        .list_workflow_step_executions()
        .workflow_execution_id(&runs.gate.execution_id)
        .next_token(&token)
        .send()
        .await
        .expect("the second page");
    assert_eq!(second.steps()[0].name(), Some("AfterApproval"));
    assert!(second.next_token().is_none());
    let elsewhere = client
        .list_workflow_step_executions()
        .workflow_execution_id(&runs.soft.execution_id)
        .next_token(&token)
        .send()
        .await;
    assert_eq!(error_code(&elsewhere), "InvalidPaginationTokenException");

    // GetWorkflowStepExecution: all members, the timeout above the model's 43200 included.
    let step = client
        .get_workflow_step_execution()
        .step_execution_id(runs.gate.step_id(0))
        .send()
        .await
        .expect("GetWorkflowStepExecution");
    assert_eq!(step.name(), Some("Approve"));
    assert_eq!(step.description(), Some("a person approves the image"));
    assert_eq!(step.action(), Some("WaitForAction"));
    assert_eq!(step.image_build_version_arn(), Some(image.as_str()));
    assert_eq!(
        step.workflow_execution_id(),
        Some(runs.gate.execution_id.as_str())
    );
    assert_eq!(
        step.workflow_build_version_arn(),
        Some(runs.gate.workflow_arn.as_str())
    );
    assert_eq!(step.on_failure(), Some("Abort"));
    assert_eq!(
        step.timeout_seconds(),
        Some(3 * 24 * 3600),
        "WaitForAction's default"
    );
    assert_eq!(step.status(), Some(&WorkflowStepExecutionStatus::Running));
    assert_eq!(step.rollback_status(), None);
    assert_eq!(parse_json(step.inputs()), json!({"payload": "approve me"}));

    // The recorded timeout: FAILED, saying so, the error as outputs, no rollback.
    let step = client
        .get_workflow_step_execution()
        .step_execution_id(runs.timed_out.step_id(0))
        .send()
        .await
        .expect("GetWorkflowStepExecution of a timed-out step");
    assert_eq!(step.status(), Some(&WorkflowStepExecutionStatus::Failed));
    assert!(step.message().unwrap().starts_with("Step timed out"));
    assert!(parse_json(step.outputs())["errorMessage"]
        .as_str()
        .unwrap()
        .contains("timed out"));
    assert_eq!(
        step.rollback_status(),
        Some(&WorkflowStepExecutionRollbackStatus::Skipped),
        "WaitForAction has no rollback"
    );
    assert_eq!(step.timeout_seconds(), Some(60));
    assert!(step.end_time().is_some());

    // A skipped step: the document's inputs (never resolved), no times; counted as skipped.
    let skipped = client
        .get_workflow_step_execution()
        .step_execution_id(runs.skipping.step_id(0))
        .send()
        .await
        .expect("GetWorkflowStepExecution of a skipped step");
    assert_eq!(
        skipped.status(),
        Some(&WorkflowStepExecutionStatus::Skipped)
    );
    assert_eq!(
        parse_json(skipped.inputs()),
        json!({"snsTopicArn.$": "$.stepOutputs.Nothing.topic"})
    );
    assert_eq!(skipped.outputs(), None);
    // AWS answers a skipped step with equal start and end times.
    assert!(skipped.start_time().is_some());
    assert_eq!(skipped.start_time(), skipped.end_time());
    let execution = client
        .get_workflow_execution()
        .workflow_execution_id(&runs.skipping.execution_id)
        .send()
        .await
        .expect("GetWorkflowExecution");
    assert_eq!(execution.total_steps_skipped(), 1);
    assert_eq!(execution.total_step_count(), 2);
    let shell = client
        .get_workflow_step_execution()
        .step_execution_id(runs.skipping.step_id(1))
        .send()
        .await
        .expect("the RunCommand step");
    assert_eq!(
        parse_json(shell.inputs()),
        json!({"instanceId": "i-0123456789abcdef0", "documentName": "AWS-RunShellScript",
               "parameters": {"commands": ["echo hi"]}})
    );
    assert_eq!(
        shell.timeout_seconds(),
        Some(720 * 60),
        "RunCommand's default"
    );

    let soft = client
        .get_workflow_step_execution()
        .step_execution_id(runs.soft.step_id(0))
        .send()
        .await
        .expect("GetWorkflowStepExecution");
    assert_eq!(soft.on_failure(), Some("Continue"));
    assert_eq!(soft.timeout_seconds(), Some(3600));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_malformed_and_other_accounts_ids() {
    let (server, client, image, _, runs) = setup().await;
    let other = server.client_as(OTHER_KEY, REGION);
    let west = server.client_as(common::DEFAULT_KEY, "us-west-2");

    // Another account's (or Region's) execution, step and image do not exist.
    for c in [&other, &west] {
        let r = c
            .get_workflow_execution()
            .workflow_execution_id(&runs.gate.execution_id)
            .send()
            .await;
        assert_eq!(error_code(&r), "ResourceNotFoundException");
        assert!(error_message(&r).contains(&runs.gate.execution_id));
        let r = c
            .list_workflow_step_executions()
            .workflow_execution_id(&runs.gate.execution_id)
            .send()
            .await;
        assert_eq!(error_code(&r), "ResourceNotFoundException");
        let r = c
            .get_workflow_step_execution()
            .step_execution_id(runs.gate.step_id(0))
            .send()
            .await;
        assert_eq!(error_code(&r), "ResourceNotFoundException");
        assert!(error_message(&r).contains(&runs.gate.step_id(0)));
        let r = c
            .list_waiting_workflow_steps()
            .send()
            .await
            .expect("ListWaitingWorkflowSteps");
        assert!(r.steps().is_empty(), "{:?}", r.steps());
        let r = c
            .send_workflow_step_action()
            .step_execution_id(runs.gate.step_id(0))
            .image_build_version_arn(&image)
            .action(WorkflowStepActionType::Resume)
            .client_token("other-account")
            .send()
            .await;
        assert_eq!(error_code(&r), "ResourceNotFoundException");
    }
    let r = other
        .list_workflow_executions()
        .image_build_version_arn(&image)
        .send()
        .await;
    assert_eq!(error_code(&r), "ResourceNotFoundException");
    assert!(error_message(&r).contains(&image), "{}", error_message(&r));

    // An image that does not exist, named in the caller's own account.
    let missing = image.replace("/1.0.0/1", "/1.0.0/99");
    let r = client
        .list_workflow_executions()
        .image_build_version_arn(&missing)
        .send()
        .await;
    assert_eq!(error_code(&r), "ResourceNotFoundException");
    assert!(error_message(&r).contains(&missing));

    // Well-formed ids Kiln never gave.
    let r = client
        .get_workflow_execution()
        .workflow_execution_id("wf-00000000-0000-0000-0000-000000000000")
        .send()
        .await;
    assert_eq!(error_code(&r), "ResourceNotFoundException");
    let never = format!("step-{}", &runs.gate.execution_id[3..]); // index digits 0000
    for id in [
        never,
        runs.gate.step_id(7),
        "step-00000000-0000-0000-0000-000000000001".into(),
    ] {
        let r = client
            .get_workflow_step_execution()
            .step_execution_id(&id)
            .send()
            .await;
        assert_eq!(error_code(&r), "ResourceNotFoundException", "{id}");
    }

    // Malformed ids: refused by the model's patterns, naming the member.
    let r = client
        .get_workflow_execution()
        .workflow_execution_id("wf-nope")
        .send()
        .await;
    assert_eq!(error_code(&r), "InvalidRequestException");
    assert!(error_message(&r).contains("workflowExecutionId"));
    let r = client
        .get_workflow_step_execution()
        .step_execution_id(&runs.gate.execution_id)
        .send()
        .await;
    assert_eq!(error_code(&r), "InvalidRequestException");
    assert!(error_message(&r).contains("stepExecutionId"));
    let r = client
        .list_workflow_step_executions()
        .workflow_execution_id(runs.gate.step_id(0))
        .send()
        .await;
    assert_eq!(error_code(&r), "InvalidRequestException");
    let r = client
        .send_workflow_step_action()
        .step_execution_id("step-1")
        .image_build_version_arn(&image)
        .action(WorkflowStepActionType::Resume)
        .client_token("malformed")
        .send()
        .await;
    assert_eq!(error_code(&r), "InvalidRequestException");
    assert!(error_message(&r).contains("stepExecutionId"));
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_steps_take_one_action() {
    let (mut server, client, image, other_image, runs) = setup().await;

    // Waiting: the two gates, oldest first; not the overdue one, nor a RunCommand.
    let waiting = client
        .list_waiting_workflow_steps()
        .send()
        .await
        .expect("ListWaitingWorkflowSteps");
    let ids: Vec<&str> = waiting
        .steps()
        .iter()
        .map(|s| s.step_execution_id().unwrap())
        .collect();
    assert_eq!(ids, [runs.gate.step_id(0), runs.soft.step_id(0)]);
    let first = &waiting.steps()[0];
    assert_eq!(first.image_build_version_arn(), Some(image.as_str()));
    assert_eq!(
        first.workflow_execution_id(),
        Some(runs.gate.execution_id.as_str())
    );
    assert_eq!(
        first.workflow_build_version_arn(),
        Some(runs.gate.workflow_arn.as_str())
    );
    assert_eq!(first.name(), Some("Approve"));
    assert_eq!(first.action(), Some("WaitForAction"));
    assert_eq!(
        first.start_time(),
        Some(iso(runs.gate.execution.steps[0].start_time.unwrap()).as_str())
    );
    let page = client
        .list_waiting_workflow_steps()
        .max_results(1)
        .send()
        .await
        .expect("a page");
    assert_eq!(page.steps().len(), 1);
    let rest = client
        .list_waiting_workflow_steps()
        .next_token(page.next_token().expect("more"))
        .send()
        .await
        .expect("the rest");
    assert_eq!(
        rest.steps()[0].step_execution_id(),
        Some(runs.soft.step_id(0).as_str())
    );

    let send = |step: String, image: String, action: WorkflowStepActionType, token: &str| {
        client
            .send_workflow_step_action()
            .step_execution_id(step)
            .image_build_version_arn(image)
            .action(action)
            .reason("looks good")
            .client_token(token)
            .send()
    };

    // The image ARN must be the step's.
    let r = send(
        runs.gate.step_id(0),
        other_image.clone(),
        WorkflowStepActionType::Resume,
        "wrong-image",
    )
    .await;
    assert_eq!(error_code(&r), "InvalidParameterValueException");
    assert!(error_message(&r).contains("imageBuildVersionArn"));

    // Not waiting: a step not started, a RunCommand, a timeout (recorded or not).
    let cases = [
        (runs.gate.step_id(1), image.clone(), "has not started"),
        (
            runs.command.step_id(0),
            other_image.clone(),
            "only a WaitForAction step",
        ),
        (runs.overdue.step_id(0), image.clone(), "timed out"),
        (runs.timed_out.step_id(0), image.clone(), "timed out"),
    ];
    for (i, (step, img, why)) in cases.into_iter().enumerate() {
        let r = send(
            step.clone(),
            img,
            WorkflowStepActionType::Resume,
            &format!("not-waiting-{i}"),
        )
        .await;
        assert_eq!(error_code(&r), "ResourceInUseException", "{step}");
        assert!(
            error_message(&r).contains(why),
            "{step}: {}",
            error_message(&r)
        );
    }

    // RESUME: the step completes with the action and the reason as outputs.
    let out = send(
        runs.gate.step_id(0),
        image.clone(),
        WorkflowStepActionType::Resume,
        "approve-1",
    )
    .await
    .expect("SendWorkflowStepAction");
    assert_eq!(out.step_execution_id(), Some(runs.gate.step_id(0).as_str()));
    assert_eq!(out.image_build_version_arn(), Some(image.as_str()));
    assert_eq!(out.client_token(), Some("approve-1"));
    let step = client
        .get_workflow_step_execution()
        .step_execution_id(runs.gate.step_id(0))
        .send()
        .await
        .expect("the resumed step");
    assert_eq!(step.status(), Some(&WorkflowStepExecutionStatus::Completed));
    assert_eq!(
        parse_json(step.outputs()),
        json!({"action": "RESUME", "reason": "looks good"})
    );
    assert!(step.end_time().is_some());
    let execution = client
        .get_workflow_execution()
        .workflow_execution_id(&runs.gate.execution_id)
        .send()
        .await
        .expect("the execution");
    assert_eq!(execution.total_steps_succeeded(), 1);

    // A replay answers the same; the same token with other parameters is refused; another
    // action on the same step is refused as already taken.
    let replay = send(
        runs.gate.step_id(0),
        image.clone(),
        WorkflowStepActionType::Resume,
        "approve-1",
    )
    .await
    .expect("a replay");
    assert_eq!(replay.step_execution_id(), out.step_execution_id());
    assert_eq!(
        replay.image_build_version_arn(),
        out.image_build_version_arn()
    );
    assert_eq!(replay.client_token(), out.client_token());
    let r = send(
        runs.gate.step_id(0),
        image.clone(),
        WorkflowStepActionType::Stop,
        "approve-1",
    )
    .await;
    assert_eq!(error_code(&r), "IdempotentParameterMismatchException");
    let r = send(
        runs.gate.step_id(0),
        image.clone(),
        WorkflowStepActionType::Stop,
        "approve-2",
    )
    .await;
    assert_eq!(error_code(&r), "ResourceInUseException");
    assert!(
        error_message(&r).contains("already actioned (RESUME)"),
        "{}",
        error_message(&r)
    );

    // STOP fails the step; its onFailure (Continue) lets the workflow go on.
    send(
        runs.soft.step_id(0),
        image.clone(),
        WorkflowStepActionType::Stop,
        "stop-1",
    )
    .await
    .expect("STOP");
    let step = client
        .get_workflow_step_execution()
        .step_execution_id(runs.soft.step_id(0))
        .send()
        .await
        .expect("the stopped step");
    assert_eq!(step.status(), Some(&WorkflowStepExecutionStatus::Failed));
    assert!(step.message().unwrap().contains("looks good"));
    assert_eq!(
        parse_json(step.outputs()),
        json!({"action": "STOP", "reason": "looks good"})
    );
    let execution = client
        .get_workflow_execution()
        .workflow_execution_id(&runs.soft.execution_id)
        .send()
        .await
        .expect("the execution");
    assert_eq!(
        execution.status(),
        Some(&WorkflowExecutionStatus::Running),
        "Continue: the worker carries on with the next step"
    );
    assert_eq!(execution.total_steps_failed(), 1);

    let waiting = client
        .list_waiting_workflow_steps()
        .send()
        .await
        .expect("ListWaitingWorkflowSteps");
    assert!(waiting.steps().is_empty(), "{:?}", waiting.steps());

    // The run's record of its actions answers a replay whose token record is gone.
    let old = client
        .send_workflow_step_action()
        .step_execution_id(runs.resumed.step_id(0))
        .image_build_version_arn(&other_image)
        .action(WorkflowStepActionType::Resume)
        .reason("earlier")
        .client_token("old-token")
        .send()
        .await
        .expect("a replay of an old action");
    assert_eq!(old.client_token(), Some("old-token"));
    let r = client
        .send_workflow_step_action()
        .step_execution_id(runs.resumed.step_id(0))
        .image_build_version_arn(&other_image)
        .action(WorkflowStepActionType::Resume)
        .reason("other")
        .client_token("old-token")
        .send()
        .await;
    assert_eq!(error_code(&r), "IdempotentParameterMismatchException");

    // Replays outlive a restart.
    server.restart();
    let client = server.client();
    let replay = client
        .send_workflow_step_action()
        .step_execution_id(runs.soft.step_id(0))
        .image_build_version_arn(&image)
        .action(WorkflowStepActionType::Stop)
        .reason("looks good")
        .client_token("stop-1")
        .send()
        .await
        .expect("a replay after a restart");
    assert_eq!(replay.client_token(), Some("stop-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_message_and_delete_image() {
    let (_server, client, image, _, runs) = setup().await;
    client
        .cancel_image_creation()
        .image_build_version_arn(&image)
        .send()
        .await
        .expect("CancelImageCreation");
    let out = client
        .list_workflow_executions()
        .image_build_version_arn(&image)
        .send()
        .await
        .expect("ListWorkflowExecutions");
    assert!(
        out.message().unwrap_or_default().contains("cancelled"),
        "{:?}",
        out.message()
    );
    // The image's waiting steps no longer wait.
    let waiting = client
        .list_waiting_workflow_steps()
        .send()
        .await
        .expect("ListWaitingWorkflowSteps");
    assert!(waiting.steps().is_empty(), "{:?}", waiting.steps());
    let r = client
        .send_workflow_step_action()
        .step_execution_id(runs.gate.step_id(0))
        .image_build_version_arn(&image)
        .action(WorkflowStepActionType::Resume)
        .client_token("after-cancel")
        .send()
        .await;
    assert_eq!(error_code(&r), "ResourceInUseException");
    assert!(
        error_message(&r).contains("CANCELLED"),
        "{}",
        error_message(&r)
    );
    client
        .delete_image()
        .image_build_version_arn(&image)
        .send()
        .await
        .expect("DeleteImage");
    let r = client
        .list_workflow_executions()
        .image_build_version_arn(&image)
        .send()
        .await;
    assert_eq!(error_code(&r), "ResourceNotFoundException");
    for run in [&runs.gate, &runs.soft, &runs.overdue, &runs.timed_out] {
        let r = client
            .get_workflow_execution()
            .workflow_execution_id(&run.execution_id)
            .send()
            .await;
        assert_eq!(error_code(&r), "ResourceNotFoundException");
    }
    // The other image's execution stays.
    client
        .get_workflow_execution()
        .workflow_execution_id(&runs.command.execution_id)
        .send()
        .await
        .expect("another image's execution");
    let waiting = client
        .list_waiting_workflow_steps()
        .send()
        .await
        .expect("ListWaitingWorkflowSteps");
    assert!(waiting.steps().is_empty());
}
