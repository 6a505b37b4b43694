//! What a build runs, decided when it starts (contract §1.6): the image's `workflows` with
//! their `x` filters resolved now and their parameters bound, or the managed defaults
//! (build-image + test-image, or the container pair, when tests are enabled). Each becomes a
//! [`WorkflowRun`] stored PENDING before anything runs. Distribution with no DISTRIBUTION
//! workflow is the implicit one (the distribution configuration, as today): it has no run.

use kiln_core::workflow_runs::{self, WorkflowRun};
use kiln_domain::arn::Arn;
use kiln_domain::resources::image::{Image, ImageType};
use kiln_domain::resources::managed_workflows;
use kiln_domain::resources::pipeline::{PipelineWorkflow, WorkflowFailureAction};
use kiln_domain::resources::workflow::Workflow;
use kiln_store::Txn;
use kiln_workflow::execution::Context;
use kiln_workflow::{Document, Execution};
use serde_json::{json, Map};

/// Whether a failure of `run` leaves the build going on: its `onFailure: CONTINUE` in the
/// image's `workflows` (where its `ordinal` points; ABORT by default).
pub fn continues_on_failure(image: &Image, run: &WorkflowRun) -> bool {
    image
        .workflows
        .as_ref()
        .and_then(|w| w.get(run.ordinal as usize))
        .is_some_and(|w| w.on_failure == Some(WorkflowFailureAction::Continue))
}

/// `$.imagebuilder` of the image's runs.
pub fn imagebuilder_context(image: &Image) -> serde_json::Value {
    json!({
        "imageType": match image.image_type {
            ImageType::Ami => "AMI",
            ImageType::Docker => "DOCKER",
        },
        "platform": image.platform,
        "collectImageMetadata": image.enhanced_image_metadata_enabled,
        "collectImageScanFindings": image.scanning.as_ref().is_some_and(|s| s.is_on()),
        "imageBuildVersionArn": image.arn.to_string(),
        "imageArn": image.arn.to_string(),
    })
}

/// The managed workflow `name` of `kind` in the image's Region.
fn managed(image: &Image, name: &str) -> Result<Workflow, String> {
    managed_workflows::all(&image.arn.region)
        .into_iter()
        .find(|w| w.name == name)
        .ok_or_else(|| format!("Kiln has no managed workflow {name}"))
}

/// The newest build the (possibly `x`-filtered) `arn` names now, of the image's account or an
/// AWS-managed one: the same resolution CreateImage and the pipeline calls checked it with.
fn resolve(tx: &mut dyn Txn, image: &Image, arn: &str) -> Result<Workflow, String> {
    let caller = kiln_core::caller::Caller {
        account_id: &image.arn.account,
        region: &image.arn.region,
        now_millis: 0,
    };
    kiln_core::workflow_config::resolve_workflow(tx, caller, arn, "workflowArn")
        .map(|resolved| resolved.workflow)
        .map_err(|e| e.to_string())
}

/// The runs of `image`, in order: BUILD, then TEST (in the order given), then DISTRIBUTION.
pub fn plan(tx: &mut dyn Txn, image: &Image, has_tests: bool) -> Result<Vec<WorkflowRun>, String> {
    let container = image.image_type == ImageType::Docker;
    let chosen: Vec<(Workflow, Option<&PipelineWorkflow>)> = match &image.workflows {
        None => {
            let mut defaults = vec![(
                managed(
                    image,
                    if container {
                        "build-container"
                    } else {
                        "build-image"
                    },
                )?,
                None,
            )];
            // The fixed path tested only images whose components have a test phase; a test
            // workflow with nothing to run would launch an instance for nothing.
            // A scan runs in the test stage, so scanning wants the test workflow too.
            let scans = image.scanning.as_ref().is_some_and(|s| s.is_on());
            if image.image_tests_enabled && (has_tests || scans) {
                defaults.push((
                    managed(
                        image,
                        if container {
                            "test-container"
                        } else {
                            "test-image"
                        },
                    )?,
                    None,
                ));
            }
            defaults
        }
        Some(list) => {
            let mut chosen = Vec::new();
            for w in list {
                chosen.push((resolve(tx, image, &w.workflow_arn)?, Some(w)));
            }
            chosen
        }
    };
    let mut runs = Vec::new();
    for (index, (workflow, given)) in chosen.into_iter().enumerate() {
        let document = Document::parse(&workflow.data)
            .map_err(|e| format!("workflow {}: its document: {e}", workflow.arn))?;
        let parameters: Vec<(String, Vec<String>)> = given
            .and_then(|g| g.parameters.as_ref())
            .map(|ps| {
                ps.iter()
                    .map(|p| (p.name.clone(), p.values.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut imagebuilder = imagebuilder_context(image);
        imagebuilder["workflowPhase"] = json!(workflow.workflow_type.as_str());
        let context = Context {
            imagebuilder,
            workflow_outputs: Map::new(),
        };
        let execution = Execution::start(document, &parameters, context)
            .map_err(|e| format!("workflow {}: parameters: {e}", workflow.arn))?;
        let execution_id = workflow_runs::new_execution_id();
        runs.push(WorkflowRun {
            arn: WorkflowRun::key(&image.arn.region, &image.arn.account, &execution_id),
            execution_id,
            image_arn: image.arn.to_string(),
            workflow_arn: workflow.arn.to_string(),
            workflow_type: workflow.workflow_type,
            parallel_group: given.and_then(|g| g.parallel_group.clone()),
            ordinal: index as u32,
            execution,
            step_actions: Vec::new(),
            attempt: 0,
        });
    }
    // The stages run in their fixed order whatever order the list gave them in; `ordinal`
    // stays the place in the image's `workflows` (see [`continues_on_failure`]).
    runs.sort_by_key(|r| (workflow_runs::stage_rank(r.workflow_type), r.ordinal));
    Ok(runs)
}

/// The short name of a run's workflow (`build-image`), for the log.
pub fn workflow_name(run: &WorkflowRun) -> String {
    Arn::parse(&run.workflow_arn)
        .map(|a| a.name)
        .unwrap_or_else(|_| run.workflow_arn.clone())
}
