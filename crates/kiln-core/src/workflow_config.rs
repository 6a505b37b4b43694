//! The `workflows` a pipeline or an image names (`WorkflowConfiguration`), checked when the
//! pipeline or image is created, so that a build never fails over something knowable then.
//!
//! CreateImagePipeline, UpdateImagePipeline and CreateImage share [`check`]: the rules that need
//! nothing stored ([`kiln_domain::resources::pipeline::check_workflows`]: the execution role,
//! at most ten workflows with one BUILD and one DISTRIBUTION, `parallelGroup` and `onFailure`
//! on TEST workflows only, each parameter once), then, per workflow, what its document decides:
//!
//! - the ARN resolves ([`resolve_workflow`]): one of the caller's workflows (a version, a build
//!   or an `x` filter, resolved to the newest build now; the worker resolves it again when the
//!   build starts), or an AWS-managed one (`arn:aws:imagebuilder:<region>:aws:workflow/...`);
//! - the document parses as the engine reads it ([`kiln_workflow::Document`]);
//! - the workflow suits the recipe: the managed `*-image` workflows are for image recipes and
//!   `*-container` ones for container recipes, and a step that runs unconditionally may not
//!   distribute the other kind of output (DistributeContainerImage for an image recipe;
//!   DistributeImage, ModifyImageAttributes or ApplyImageConfigurations, which act on AMIs, for
//!   a container recipe);
//! - its `parameters` bind to the document's declarations with the engine's own code
//!   ([`kiln_workflow::params::bind`]): known names, values of the declared type, every
//!   parameter without a default given;
//! - its output names are not also another listed workflow's (outputs are passed to later
//!   workflows by name, "unique across all workflows in the pipeline").
//!
//! Errors are [`CoreError::Invalid`] whose message starts with the member at fault, such as
//! `workflows[1].parameters[0].value`.

use crate::caller::Caller;
use crate::error::{CoreError, CoreResult};
use crate::lookup::{decode_row, resolve};
use kiln_domain::arn::Arn;
use kiln_domain::resources::managed::OWNER;
use kiln_domain::resources::managed_workflows;
use kiln_domain::resources::pipeline::{check_workflows, PipelineWorkflow, RecipeKind};
use kiln_domain::resources::workflow::{Workflow, WorkflowType};
use kiln_store::Txn;
use kiln_workflow::params::{bind, ParamError};
use kiln_workflow::Document;

/// A workflow an image or pipeline names, as it resolves now.
#[derive(Debug, Clone)]
pub struct ResolvedWorkflow {
    pub workflow: Workflow,
    /// Whether it is an AWS-managed workflow (owner `aws`): those are not stored, so a pipeline
    /// records no reference to them.
    pub managed: bool,
}

/// The workflow `arn` names: the caller's own (newest matching build) or an AWS-managed one in
/// the caller's region. A reference to nothing is [`CoreError::Invalid`] naming `field`.
pub fn resolve_workflow(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    arn: &str,
    field: &str,
) -> CoreResult<ResolvedWorkflow> {
    let parsed = Arn::parse(arn).map_err(|e| CoreError::Invalid(format!("{field}: {e}")))?;
    let stage = WorkflowType::from_kind(parsed.kind).ok_or_else(|| {
        CoreError::Invalid(format!("{field}: '{arn}' is not the ARN of a workflow"))
    })?;
    if parsed.account == OWNER {
        // Another region's managed workflows do not exist for the caller.
        let found = if parsed.region == caller.region {
            managed_workflows::matching(&parsed)
        } else {
            Vec::new()
        };
        return match found.into_iter().next() {
            Some(workflow) => Ok(ResolvedWorkflow {
                workflow,
                managed: true,
            }),
            None => Err(CoreError::Invalid(format!(
                "{field}: there is no AWS-managed {} workflow '{arn}' in {}; ListWorkflows with owner Amazon lists them",
                stage.as_str(),
                caller.region
            ))),
        };
    }
    let row = resolve(tx, caller, arn, field)?.ok_or_else(|| {
        CoreError::Invalid(format!(
            "{field}: the {} workflow '{arn}' does not exist",
            stage.as_str()
        ))
    })?;
    Ok(ResolvedWorkflow {
        workflow: decode_row(&row)?,
        managed: false,
    })
}

/// Checks a `workflows` list and its `executionRole` for a build of a `recipe` recipe (see the
/// module docs) and answers the resolved ARNs of the caller's own workflows, which a pipeline
/// records as references so that they cannot be deleted from under it.
pub fn check(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    workflows: Option<&[PipelineWorkflow]>,
    execution_role: Option<&str>,
    recipe: RecipeKind,
) -> CoreResult<Vec<String>> {
    check_workflows(workflows, execution_role).map_err(|e| CoreError::Invalid(e.to_string()))?;
    let mut references = Vec::new();
    // (output name, index of the workflow that has it)
    let mut outputs: Vec<(String, usize)> = Vec::new();
    for (i, configured) in workflows.unwrap_or(&[]).iter().enumerate() {
        let field = format!("workflows[{i}]");
        let resolved = resolve_workflow(
            tx,
            caller,
            &configured.workflow_arn,
            &format!("{field}.workflowArn"),
        )?;
        let workflow = &resolved.workflow;
        let document = Document::parse(&workflow.data).map_err(|e| {
            CoreError::Invalid(format!(
                "{field}.workflowArn: the document of '{}' cannot run: {e}",
                workflow.arn
            ))
        })?;
        check_fits_recipe(&resolved, &document, recipe)
            .map_err(|why| CoreError::Invalid(format!("{field}.workflowArn: {why}")))?;
        check_parameters(configured, &document, &field)?;
        for output in &document.outputs {
            if let Some((_, first)) = outputs.iter().find(|(name, _)| *name == output.name) {
                return Err(CoreError::Invalid(format!(
                    "{field}.workflowArn: the workflow's output '{}' is also an output of workflows[{first}]; output names must be unique across the workflows of an image",
                    output.name
                )));
            }
        }
        outputs.extend(document.outputs.iter().map(|o| (o.name.clone(), i)));
        if !resolved.managed {
            references.push(workflow.arn.to_string());
        }
    }
    Ok(references)
}

/// Actions that act on AMIs, and the one that pushes a container image.
const AMI_ONLY_ACTIONS: [&str; 3] = [
    "DistributeImage",
    "ModifyImageAttributes",
    "ApplyImageConfigurations",
];
const CONTAINER_ONLY_ACTIONS: [&str; 1] = ["DistributeContainerImage"];

/// Whether the workflow can serve a build of `recipe`; the reason when it cannot.
fn check_fits_recipe(
    resolved: &ResolvedWorkflow,
    document: &Document,
    recipe: RecipeKind,
) -> Result<(), String> {
    let (recipe_label, other_suffix, wrong_actions): (_, _, &[&str]) = match recipe {
        RecipeKind::Image => ("an image recipe", "-container", &CONTAINER_ONLY_ACTIONS),
        RecipeKind::Container => ("a container recipe", "-image", &AMI_ONLY_ACTIONS),
    };
    let name = &resolved.workflow.name;
    if resolved.managed && name.ends_with(other_suffix) {
        let wanted_suffix = match recipe {
            RecipeKind::Image => "-image",
            RecipeKind::Container => "-container",
        };
        let fitting = name.trim_end_matches(other_suffix).to_string() + wanted_suffix;
        let instead = if managed_workflows::DOCUMENTS
            .iter()
            .any(|(n, _, _)| *n == fitting)
        {
            format!("use '{fitting}'")
        } else {
            format!("use a managed '*{wanted_suffix}' workflow or your own")
        };
        return Err(format!(
            "the AWS-managed workflow '{name}' cannot build, test or distribute {recipe_label}; {instead}"
        ));
    }
    // A step behind an `if` may be meant for the other kind of image and skipped.
    if let Some((i, step)) = document
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| s.condition.is_none() && wrong_actions.contains(&s.action.as_str()))
    {
        return Err(format!(
            "the workflow '{}' runs {} (steps[{i}], '{}') unconditionally, which cannot act on the output of {recipe_label}",
            resolved.workflow.arn, step.action, step.name
        ));
    }
    Ok(())
}

/// Binds the given parameters with the engine's code, and names the member at fault.
fn check_parameters(
    configured: &PipelineWorkflow,
    document: &Document,
    field: &str,
) -> CoreResult<()> {
    let given: Vec<(String, Vec<String>)> = configured
        .parameters
        .iter()
        .flatten()
        .map(|p| (p.name.clone(), p.values.clone()))
        .collect();
    let index_of = |name: &str| given.iter().position(|(n, _)| n == name).unwrap_or(0);
    let message = match bind(document, &given) {
        Ok(_) => return Ok(()),
        Err(ParamError::Unknown(name)) => {
            let declared: Vec<&str> = document
                .parameters
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            format!(
                "{field}.parameters[{}].name: the workflow declares no parameter '{name}'; it declares {}",
                index_of(&name),
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            )
        }
        Err(ParamError::Duplicate(name)) => {
            let second = given
                .iter()
                .enumerate()
                .filter(|(_, (n, _))| *n == name)
                .nth(1)
                .map_or(0, |(j, _)| j);
            format!(
                "{field}.parameters[{second}].name: the parameter '{name}' is given more than once"
            )
        }
        Err(ParamError::Invalid { name, message }) => format!(
            "{field}.parameters[{}].value: parameter '{name}': {message}",
            index_of(&name)
        ),
        Err(ParamError::Missing(names)) => format!(
            "{field}.parameters: the workflow needs a value for {} (declared without a default)",
            names.join(", ")
        ),
    };
    Err(CoreError::Invalid(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_domain::resources::pipeline::{WorkflowFailureAction, WorkflowParameter};

    /// Runs `f` in a write transaction of a fresh store.
    fn in_store(f: impl FnOnce(&mut dyn Txn)) {
        let dir = tempfile::tempdir().unwrap();
        let database = kiln_store::Database::Sqlite(dir.path().join("kiln.db"));
        let store = kiln_store::Store::open(&database, kiln_store::sqlite::Sync::Normal).unwrap();
        store
            .write(|tx| {
                f(tx);
                Ok::<(), kiln_store::StoreError>(())
            })
            .unwrap()
            .unwrap();
    }

    const REGION: &str = "us-east-1";
    const ACCOUNT: &str = "123456789012";

    fn caller() -> Caller<'static> {
        Caller {
            account_id: ACCOUNT,
            region: REGION,
            now_millis: 0,
        }
    }

    fn managed(kind: &str, name: &str) -> String {
        format!("arn:aws:imagebuilder:{REGION}:aws:workflow/{kind}/{name}/x.x.x")
    }

    fn configured(arn: &str, parameters: &[(&str, &[&str])]) -> PipelineWorkflow {
        PipelineWorkflow {
            workflow_arn: arn.to_string(),
            parameters: (!parameters.is_empty()).then(|| {
                parameters
                    .iter()
                    .map(|(n, v)| WorkflowParameter {
                        name: n.to_string(),
                        values: v.iter().map(|s| s.to_string()).collect(),
                    })
                    .collect()
            }),
            parallel_group: None,
            on_failure: None,
        }
    }

    const GATE: &str = "\
schemaVersion: 1.0
parameters:
  - { name: topic, type: string }
  - { name: wait, type: boolean, default: true }
  - { name: count, type: integer, default: 1 }
steps:
  - { name: Gate, action: WaitForAction, inputs: {} }
outputs:
  - { name: Approved, value: $.stepOutputs.Gate.action }
";

    fn store_workflow(tx: &mut dyn Txn, name: &str, stage: WorkflowType, data: &str) -> String {
        use kiln_domain::version::SemVer;
        let version = SemVer::new(1, 0, 0);
        let arn = Arn::new(REGION, ACCOUNT, stage.kind(), name)
            .with_version(version)
            .with_build(1);
        let workflow = Workflow {
            arn: arn.clone(),
            name: name.to_string(),
            version,
            build: 1,
            workflow_type: stage,
            description: None,
            change_description: None,
            parameters: Vec::new(),
            owner: ACCOUNT.to_string(),
            data: data.to_string(),
            kms_key_id: None,
            date_created: 0,
        };
        kiln_store::TxnExt::put(tx, &workflow).unwrap();
        arn.to_string()
    }

    fn run(
        tx: &mut dyn Txn,
        list: &[PipelineWorkflow],
        recipe: RecipeKind,
    ) -> Result<Vec<String>, String> {
        check(tx, caller(), Some(list), Some("role"), recipe).map_err(|e| e.to_string())
    }

    #[test]
    fn managed_workflows_with_x_filters_pass_and_are_not_references() {
        in_store(|tx| {
            let list = [
                configured(&managed("build", "build-image"), &[]),
                configured(&managed("test", "test-image"), &[]),
                configured(&managed("distribution", "distribute-image"), &[]),
            ];
            assert_eq!(run(tx, &list, RecipeKind::Image), Ok(Vec::new()));
            let container = [
                configured(&managed("build", "build-container"), &[]),
                configured(&managed("distribution", "distribute-container"), &[]),
            ];
            assert_eq!(run(tx, &container, RecipeKind::Container), Ok(Vec::new()));
        });
    }

    #[test]
    fn refusals_name_the_member() {
        in_store(|tx| {
            let gate = store_workflow(tx, "gate", WorkflowType::Test, GATE);
            let version_arn = gate.trim_end_matches("/1").to_string();
            let ok = run(
                tx,
                &[configured(&version_arn, &[("topic", &["t"])])],
                RecipeKind::Image,
            );
            assert_eq!(ok, Ok(vec![gate.clone()]));
            type Case<'a> = (Vec<PipelineWorkflow>, RecipeKind, &'a str);
            let cases: Vec<Case> = vec![
            (
                vec![configured(&gate, &[])],
                RecipeKind::Image,
                "workflows[0].parameters: the workflow needs a value for topic",
            ),
            (
                vec![configured(&gate, &[("topic", &["t"]), ("nope", &["1"])])],
                RecipeKind::Image,
                "workflows[0].parameters[1].name: the workflow declares no parameter 'nope'",
            ),
            (
                vec![configured(&gate, &[("topic", &["t"]), ("count", &["many"])])],
                RecipeKind::Image,
                "workflows[0].parameters[1].value: parameter 'count': 'many' is not an integer",
            ),
            (
                vec![configured(&gate, &[("topic", &["t"]), ("wait", &["yes"])])],
                RecipeKind::Image,
                "workflows[0].parameters[1].value: parameter 'wait'",
            ),
            (
                vec![configured(&gate, &[("topic", &["a", "b"])])],
                RecipeKind::Image,
                "workflows[0].parameters[0].value: parameter 'topic': a string parameter takes exactly one value",
            ),
            (
                vec![configured(&gate, &[("topic", &["a"]), ("topic", &["b"])])],
                RecipeKind::Image,
                "workflows[0].parameters[1].name",
            ),
            (
                vec![
                    configured(&gate, &[("topic", &["a"])]),
                    configured(&gate, &[("topic", &["b"])]),
                ],
                RecipeKind::Image,
                "workflows[1].workflowArn: the workflow's output 'Approved' is also an output of workflows[0]",
            ),
            (
                vec![configured(&managed("build", "build-container"), &[])],
                RecipeKind::Image,
                "workflows[0].workflowArn: the AWS-managed workflow 'build-container' cannot build, test or distribute an image recipe; use 'build-image'",
            ),
            (
                vec![configured(&managed("distribution", "distribute-image"), &[])],
                RecipeKind::Container,
                "workflows[0].workflowArn: the AWS-managed workflow 'distribute-image'",
            ),
            (
                vec![configured(&managed("test", "express-test-image"), &[])],
                RecipeKind::Container,
                "workflows[0].workflowArn: the AWS-managed workflow 'express-test-image' cannot build, test or distribute a container recipe; use a managed '*-container' workflow",
            ),
            (
                vec![configured(&managed("build", "no-such"), &[])],
                RecipeKind::Image,
                "workflows[0].workflowArn: there is no AWS-managed BUILD workflow",
            ),
            (
                vec![configured(
                    "arn:aws:imagebuilder:eu-west-1:aws:workflow/build/build-image/x.x.x",
                    &[],
                )],
                RecipeKind::Image,
                "workflows[0].workflowArn: there is no AWS-managed BUILD workflow",
            ),
            (
                vec![configured(
                    &format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:workflow/test/missing/1.x.x"),
                    &[],
                )],
                RecipeKind::Image,
                "workflows[0].workflowArn: the TEST workflow '",
            ),
        ];
            for (list, recipe, want) in cases {
                let got = run(tx, &list, recipe).unwrap_err();
                assert!(got.starts_with(want), "wanted {want:?}, got {got:?}");
            }
        });
    }

    #[test]
    fn a_distribution_step_must_suit_the_recipe_unless_it_is_conditional() {
        in_store(|tx| {
            let push = "\
schemaVersion: 1.0
steps:
  - { name: Push, action: DistributeContainerImage, inputs: { instanceId: i-1 } }
";
            let arn = store_workflow(tx, "push", WorkflowType::Distribution, push);
            let err = run(tx, &[configured(&arn, &[])], RecipeKind::Image).unwrap_err();
            assert!(
                err.contains("runs DistributeContainerImage (steps[0], 'Push') unconditionally"),
                "{err}"
            );
            assert!(run(tx, &[configured(&arn, &[])], RecipeKind::Container).is_ok());
            let guarded = "\
schemaVersion: 1.0
steps:
  - name: Push
    action: DistributeContainerImage
    if: { stringEquals: DOCKER, value: $.imagebuilder.imageType }
    inputs: { instanceId: i-1 }
";
            let arn = store_workflow(tx, "guarded", WorkflowType::Distribution, guarded);
            assert!(run(tx, &[configured(&arn, &[])], RecipeKind::Image).is_ok());
        });
    }

    #[test]
    fn domain_rules_come_first() {
        in_store(|tx| {
            let mut build = configured(&managed("build", "build-image"), &[]);
            build.on_failure = Some(WorkflowFailureAction::Continue);
            let err = run(tx, &[build], RecipeKind::Image).unwrap_err();
            assert!(err.starts_with("workflows[0].onFailure"), "{err}");
            let err = check(
                tx,
                caller(),
                Some(&[configured(&managed("build", "build-image"), &[])]),
                None,
                RecipeKind::Image,
            )
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("executionRole"), "{err}");
        });
    }
}
