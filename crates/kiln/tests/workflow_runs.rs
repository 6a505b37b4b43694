//! Every build is a run of workflows, stored step by step: after a default build the store
//! holds the managed build-image execution with each step's status, times, inputs and outputs
//! (what the runtime APIs answer from). Builds run real build instances (root).

mod common;

use common::{Server, BUSYBOX};
use kiln_core::workflow_runs;
use kiln_domain::arn::Arn;
use serde_json::{json, Value};

fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_build_stores_its_build_image_execution_step_by_step() {
    let mut server = Server::start();
    let client = server.client();
    let recipe = common::bash_recipe(&client, "wfruns", BUSYBOX, &["echo built"]).await;
    let infra = common::create_infra(&client, "wfruns").await;
    let arn = common::create_image(&client, &recipe, &infra).await;
    let image = common::wait_final(&client, &arn).await;
    let (status, reason) = common::status_and_reason(&image);
    assert_eq!(status, "AVAILABLE", "{reason}");
    server.kill();

    let core = kiln_core::Core::open(&server.data_dir(), kiln_store::sqlite::Sync::Normal)
        .expect("opening the store");
    let parsed = Arn::parse(&arn).expect("an image ARN");
    let runs = core
        .store
        .read(|tx| workflow_runs::of_image(tx, &parsed))
        .expect("reading")
        .expect("the executions");
    // No component has a test phase: the build workflow only (as the fixed path tested none).
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert!(
        run.workflow_arn
            .ends_with(":aws:workflow/build/build-image/1.0.0/1"),
        "{}",
        run.workflow_arn
    );
    assert!(run.execution_id.starts_with("wf-"));
    assert_eq!(word(&run.execution.status), "COMPLETED");
    let steps: Vec<(String, String)> = run
        .execution
        .steps
        .iter()
        .map(|s| (s.name.clone(), word(&s.status)))
        .collect();
    let expected = [
        ("LaunchBuildInstance", "COMPLETED"),
        ("ApplyBuildComponents", "COMPLETED"),
        ("InventoryCollection", "COMPLETED"),
        ("RunSanitizeScript", "COMPLETED"),
        ("RunSysPrepScript", "SKIPPED"),
        ("CreateOutputAMI", "COMPLETED"),
        ("TerminateBuildInstance", "COMPLETED"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(steps, expected);
    for step in run
        .execution
        .steps
        .iter()
        .filter(|s| word(&s.status) == "COMPLETED")
    {
        let (start, end) = (
            step.start_time.expect("started"),
            step.end_time.expect("ended"),
        );
        assert!(start <= end, "{}", step.name);
        assert_eq!(step.attempts, 1, "{}", step.name);
    }
    let launched = run.execution.steps[0].outputs.clone().expect("outputs");
    let instance = launched["instanceId"]
        .as_str()
        .expect("an instance id")
        .to_string();
    assert!(instance.ends_with("-build"), "{instance}");
    assert_eq!(
        run.execution.steps[1].inputs.clone(),
        Some(json!({ "instanceId": instance }))
    );
    let ami = image
        .output_resources()
        .and_then(|o| o.amis().first().cloned());
    let image_id = run
        .execution
        .outputs
        .get("ImageId")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        image_id.as_str().is_some_and(|id| id.starts_with("ami-")),
        "{image_id}"
    );
    if let Some(ami) = ami {
        assert_eq!(
            ami.image().map(str::to_string),
            image_id.as_str().map(str::to_string)
        );
    }
}
