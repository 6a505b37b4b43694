//! Workflows: CreateWorkflow, GetWorkflow, ListWorkflows, ListWorkflowBuildVersions and
//! DeleteWorkflow.
//!
//! A workflow is a YAML document for one stage of image creation, stored per build version
//! (`workflow/<build|test|distribution>/<name>/<x.y.z>/<build>`). CreateWorkflow reads the
//! document once and refuses one Image Builder could not run:
//!
//! - valid YAML (with line and column), a mapping with `schemaVersion: 1.0`;
//! - a non-empty `steps` list of at most 15 steps, each a mapping with a unique `name` and an
//!   `action`, and an `onFailure` of `Abort` or `Continue` when it has one;
//! - actions that exist and suit the workflow's `type` (the API reference: "Image Builder
//!   validates the workflow document steps against the stage you specify"), see
//!   [`kiln_workflow::actions::check_actions`];
//! - `parameters` as a list of mappings with a unique `name`, a `type` among `string`,
//!   `integer`, `boolean` and `stringList` (omitted means `string`) and a default that fits it;
//! - `outputs`, when present, as a list of mappings with a `name` and a `value`.
//!
//! Builds, `data`/`uri`, latest-version references and list entries work as for components
//! (see the component module); the helpers are shared from there. Workflows have no state in
//! Kiln: the API's only workflow status is `DEPRECATED`, so `state` is left out.
//!
//! `owner` follows the ListWorkflows reference: `Self` (the default) lists the caller's
//! workflows; `Amazon` the managed ones (owner `aws`,
//! [`kiln_domain::resources::managed_workflows`], read-only, readable with GetWorkflow and
//! ListWorkflowBuildVersions, never deleted); `AWSMarketplace` lists nothing; `Shared` and
//! `ThirdParty` are refused.

use super::components::{
    any_version_arn, build_key, concrete_version, has_filter, latest_version_references, name_key,
    newest_per_key, version_key, INITIAL_VERSION,
};
use super::yaml_document as document;
use crate::convert::{
    check_dry_run, check_no_referrers, date, decode_row, get_exact, new_arn, not_found, resolve,
    response_tags, scoped_arn, version_error, StoreResultExt,
};
use crate::documents::document;
use crate::filters::Filters;
use crate::service::Service;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::component::{next_build, DocumentParameter};
use kiln_domain::resources::workflow::{
    self as domain, check_step_names, WorkflowType as Stage, ON_FAILURE_VALUES, PARAMETER_TYPES,
};
use kiln_domain::resources::{managed, managed_workflows};
use kiln_domain::version::VersionFilter;
use kiln_store::{ListQuery, Txn, TxnExt};
use kiln_toe::yaml::{Mapping, Value};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};
use kiln_workflow::actions::{check_actions, check_runnable};

/// Filter names ListWorkflows documents.
const LIST_FILTERS: [&str; 4] = ["name", "version", "description", "type"];

/// What CreateWorkflow keeps from a valid document.
#[derive(Debug)]
struct WorkflowOutline {
    parameters: Vec<DocumentParameter>,
}

/// Checks a workflow document for a workflow of type `stage` and extracts its parameters.
/// Errors start with the path of the offending member inside the document.
fn read_workflow_document(data: &str, stage: Stage) -> Result<WorkflowOutline, String> {
    let doc = document::parse(data)?;
    document::check_schema_version(&doc)?;
    read_steps(&doc, stage)?;
    let parameters = read_parameters(&doc)?;
    read_outputs(&doc)?;
    Ok(WorkflowOutline { parameters })
}

fn read_steps(doc: &Mapping, stage: Stage) -> Result<(), String> {
    let steps = document::required_list(doc, "steps", "", "steps")?;
    let mut names = Vec::with_capacity(steps.len());
    let mut actions = Vec::with_capacity(steps.len());
    let mut conditional = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let path = format!("steps[{i}]");
        let step = document::as_mapping(step, &path)?;
        let member_path = format!("{path}.");
        names.push(document::required_string(step, "name", &member_path)?);
        actions.push(document::required_string(step, "action", &member_path)?);
        conditional.push(document::get(step, "if").is_some());
        if let Some(on_failure) = document::optional_string(step, "onFailure", &member_path)? {
            if !ON_FAILURE_VALUES.contains(&on_failure.as_str()) {
                return Err(format!(
                    "{path}.onFailure: '{on_failure}' is not one of {}",
                    ON_FAILURE_VALUES.join(", ")
                ));
            }
        }
    }
    check_step_names(&names)?;
    check_actions(&actions, stage)?;
    check_runnable(&actions, &conditional)
}

fn read_parameters(doc: &Mapping) -> Result<Vec<DocumentParameter>, String> {
    let mut parameters: Vec<DocumentParameter> = Vec::new();
    for (i, item) in document::optional_list(doc, "parameters", "")?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("parameters[{i}]");
        let parameter = read_parameter(document::as_mapping(item, &path)?, &path)?;
        if parameters.iter().any(|p| p.name == parameter.name) {
            return Err(format!(
                "{path}.name: the parameter '{}' is declared more than once; parameter names must be unique",
                parameter.name
            ));
        }
        parameters.push(parameter);
    }
    Ok(parameters)
}

fn read_parameter(body: &Mapping, path: &str) -> Result<DocumentParameter, String> {
    let member_path = format!("{path}.");
    let name = document::required_string(body, "name", &member_path)?;
    let kind = document::optional_string(body, "type", &member_path)?
        .unwrap_or_else(|| "string".to_string());
    if !PARAMETER_TYPES.contains(&kind.as_str()) {
        return Err(format!(
            "{path}.type: '{kind}' is not a workflow parameter type; use one of: {}",
            PARAMETER_TYPES.join(", ")
        ));
    }
    let default_value = match document::get(body, "default") {
        None => None,
        Some(value) => Some(default_values(value, &kind, &format!("{path}.default"))?),
    };
    Ok(DocumentParameter {
        name,
        kind,
        default_value,
        description: document::optional_string(body, "description", &member_path)?,
    })
}

/// A default as the API returns it (a list of strings), after checking it fits the type.
fn default_values(value: &Value, kind: &str, path: &str) -> Result<Vec<String>, String> {
    let wrong = || {
        format!(
            "{path}: {} is not a valid default for a parameter of type {kind}",
            document::describe(value)
        )
    };
    match (kind, value) {
        ("stringList", Value::Sequence(items)) => items
            .iter()
            .map(|item| document::scalar_text(item).ok_or_else(wrong))
            .collect(),
        ("stringList", _) => Err(wrong()),
        ("boolean", Value::Bool(b)) => Ok(vec![b.to_string()]),
        // A quoted "true" or "42" still means the value, as it will when the workflow runs.
        ("boolean", Value::String(s)) if s == "true" || s == "false" => Ok(vec![s.clone()]),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(vec![n.to_string()]),
        ("integer", Value::String(s)) if s.trim().parse::<i64>().is_ok() => Ok(vec![s.clone()]),
        ("string", _) => document::scalar_text(value)
            .map(|text| vec![text])
            .ok_or_else(wrong),
        _ => Err(wrong()),
    }
}

fn read_outputs(doc: &Mapping) -> Result<(), String> {
    for (i, item) in document::optional_list(doc, "outputs", "")?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("outputs[{i}]");
        let output = document::as_mapping(item, &path)?;
        document::required_string(output, "name", &format!("{path}."))?;
        document::required_string(output, "value", &format!("{path}."))?;
    }
    Ok(())
}

fn stage_from_wire(t: &WorkflowType) -> Stage {
    match t {
        WorkflowType::Build => Stage::Build,
        WorkflowType::Test => Stage::Test,
        WorkflowType::Distribution => Stage::Distribution,
    }
}

fn stage_to_wire(stage: Stage) -> WorkflowType {
    match stage {
        Stage::Build => WorkflowType::Build,
        Stage::Test => WorkflowType::Test,
        Stage::Distribution => WorkflowType::Distribution,
    }
}

fn is_workflow(kind: ResourceKind) -> bool {
    Stage::from_kind(kind).is_some()
}

fn list_kind(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    kind: ResourceKind,
    name: Option<&str>,
) -> Result<Vec<domain::Workflow>, ApiError> {
    tx.list(&ListQuery {
        account: account.to_string(),
        region: region.to_string(),
        kind,
        name: name.map(str::to_string),
        after: None,
    })
    .api()
}

fn all_own(tx: &mut dyn Txn, ctx: &RequestContext) -> Result<Vec<domain::Workflow>, ApiError> {
    let mut all = Vec::new();
    for stage in Stage::ALL {
        all.extend(list_kind(
            tx,
            &ctx.account_id,
            &ctx.region,
            stage.kind(),
            None,
        )?);
    }
    Ok(all)
}

/// The builds under a (possibly wildcard) version ARN.
fn builds_matching(
    tx: &mut dyn Txn,
    arn: &Arn,
    filter: &VersionFilter,
) -> Result<Vec<domain::Workflow>, ApiError> {
    Ok(
        list_kind(tx, &arn.account, &arn.region, arn.kind, Some(&arn.name))?
            .into_iter()
            .filter(|w| filter.matches(&w.version))
            .collect(),
    )
}

fn parameters_to_wire(parameters: &[DocumentParameter]) -> Option<Vec<WorkflowParameterDetail>> {
    (!parameters.is_empty()).then(|| {
        parameters
            .iter()
            .map(|p| WorkflowParameterDetail {
                name: Some(p.name.clone()),
                r#type: Some(p.kind.clone()),
                default_value: p.default_value.clone(),
                description: p.description.clone(),
            })
            .collect()
    })
}

fn to_wire(tx: &mut dyn Txn, w: &domain::Workflow) -> Result<Workflow, ApiError> {
    let arn = w.arn.to_string();
    Ok(Workflow {
        arn: Some(arn.clone()),
        name: Some(w.name.clone()),
        version: Some(w.version.to_string()),
        description: w.description.clone(),
        change_description: w.change_description.clone(),
        r#type: Some(stage_to_wire(w.workflow_type)),
        state: None,
        owner: Some(w.owner.clone()),
        data: Some(w.data.clone()),
        kms_key_id: w.kms_key_id.clone(),
        date_created: Some(date(w.date_created)),
        tags: response_tags(tx, &arn)?,
        parameters: parameters_to_wire(&w.parameters),
    })
}

fn to_summary(tx: &mut dyn Txn, w: &domain::Workflow) -> Result<WorkflowSummary, ApiError> {
    let arn = w.arn.to_string();
    Ok(WorkflowSummary {
        arn: Some(arn.clone()),
        name: Some(w.name.clone()),
        version: Some(w.version.to_string()),
        description: w.description.clone(),
        change_description: w.change_description.clone(),
        r#type: Some(stage_to_wire(w.workflow_type)),
        owner: Some(w.owner.clone()),
        state: None,
        date_created: Some(date(w.date_created)),
        tags: response_tags(tx, &arn)?,
    })
}

fn to_version_entry(w: &domain::Workflow, arn: String) -> WorkflowVersion {
    WorkflowVersion {
        arn: Some(arn),
        name: Some(w.name.clone()),
        version: Some(w.version.to_string()),
        description: w.description.clone(),
        r#type: Some(stage_to_wire(w.workflow_type)),
        owner: Some(w.owner.clone()),
        date_created: Some(date(w.date_created)),
    }
}

pub fn create(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateWorkflowRequest,
) -> Result<CreateWorkflowResponse, ApiError> {
    let name = input.name.clone().unwrap_or_default();
    let version = concrete_version(input.semantic_version.as_deref())?;
    // The wire layer requires `type`; BUILD only stands in should that ever change.
    let stage = input.r#type.as_ref().map_or(Stage::Build, stage_from_wire);
    let (data, field) = document(ctx, input.data.as_deref(), input.uri.as_deref())?;
    let outline = read_workflow_document(data, stage)
        .map_err(|problem| ApiError::invalid_request(format!("{field}: {problem}")))?;
    let version_arn = new_arn(ctx, stage.kind(), &name).with_version(version);
    let same_name = builds_matching(tx, &version_arn, &VersionFilter::ANY)?;
    let change_description = input.change_description.or_else(|| {
        let first = same_name.iter().min_by_key(|w| (w.date_created, w.build));
        first
            .is_none_or(|w| w.version == version)
            .then(|| INITIAL_VERSION.to_string())
    });
    let mut workflow = domain::Workflow {
        arn: version_arn.clone(),
        name,
        version,
        build: 0,
        workflow_type: stage,
        description: input.description,
        change_description,
        parameters: outline.parameters,
        owner: ctx.account_id.clone(),
        data: data.to_string(),
        kms_key_id: input.kms_key_id,
        date_created: ctx.now_millis,
    };
    let existing: Vec<domain::Workflow> = same_name
        .into_iter()
        .filter(|w| w.version == version)
        .collect();
    if let Some(newest) = existing.iter().max_by_key(|w| w.build) {
        if newest.same_content(&workflow) {
            return Err(ApiError::already_exists(format!(
                "The workflow '{}' already exists with the same content; change the document or settings to create a new build, or use a new semanticVersion.",
                newest.arn
            )));
        }
    }
    let build = next_build(existing.iter().map(|w| w.build)).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ServiceQuotaExceededException,
            format!("The workflow version '{version_arn}' has no build numbers left."),
        )
    })?;
    check_dry_run(input.dry_run, "CreateWorkflow")?;
    workflow.arn = version_arn.with_build(build);
    workflow.build = build;
    tx.put_tagged(&workflow, input.tags.as_ref()).api()?;
    let arn = workflow.arn.to_string();
    Ok(CreateWorkflowResponse {
        client_token: input.client_token,
        workflow_build_version_arn: Some(arn),
        latest_version_references: Some(latest_version_references(&workflow.arn, &version)),
    })
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetWorkflowRequest,
) -> Result<GetWorkflowResponse, ApiError> {
    let arn = input.workflow_build_version_arn.unwrap_or_default();
    let workflow: domain::Workflow = match managed_in_region(ctx, &arn) {
        Some(found) => found
            .into_iter()
            .next()
            .ok_or_else(|| not_found(ResourceKind::BuildWorkflow, &arn))?,
        None => {
            let row = resolve(tx, ctx, &arn, "workflowBuildVersionArn")?
                .filter(|row| is_workflow(row.kind))
                .ok_or_else(|| not_found(ResourceKind::BuildWorkflow, &arn))?;
            decode_row(&row)?
        }
    };
    Ok(GetWorkflowResponse {
        latest_version_references: Some(latest_version_references(
            &workflow.arn,
            &workflow.version,
        )),
        workflow: Some(to_wire(tx, &workflow)?),
    })
}

/// Whether a build passes the ListWorkflows filters (`Filters` matches the name as written or
/// normalised).
fn passes(filters: &Filters, w: &domain::Workflow) -> bool {
    filters.accept(|filter| match filter {
        "name" => Some(w.name.clone()),
        "version" => Some(w.version.to_string()),
        "description" => w.description.clone(),
        "type" => Some(w.workflow_type.as_str().to_string()),
        _ => None,
    })
}

/// For an ARN of owner `aws`: the managed workflows it names in the caller's region (none in
/// another region: resources of other regions do not exist for a caller); `None` for other
/// owners.
fn managed_in_region(ctx: &RequestContext, arn: &str) -> Option<Vec<domain::Workflow>> {
    let parsed = Arn::parse(arn).ok()?;
    if parsed.account != managed::OWNER {
        return None;
    }
    if parsed.region != ctx.region {
        return Some(Vec::new());
    }
    Some(managed_workflows::matching(&parsed))
}

/// Whose workflows ListWorkflows lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Own,
    Managed,
    Nothing,
}

/// Whose workflows are listed; `Shared` and `ThirdParty` are refused.
fn listed(owner: Option<&Ownership>) -> Result<Listed, ApiError> {
    match owner {
        None | Some(Ownership::SelfOwned) => Ok(Listed::Own),
        Some(Ownership::Amazon) => Ok(Listed::Managed),
        Some(Ownership::AWSMarketplace) => Ok(Listed::Nothing),
        Some(other) => Err(ApiError::invalid_request(format!(
            "owner: '{}' is not supported for workflows; use Self, Amazon or AWSMarketplace",
            other.as_str()
        ))),
    }
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListWorkflowsRequest,
) -> Result<ListWorkflowsResponse, ApiError> {
    const OP: &str = "ListWorkflows";
    let filters = Filters::parse(input.filters.as_ref(), &LIST_FILTERS)?;
    let by_name = input.by_name == Some(true);
    if by_name && has_filter(input.filters.as_ref(), "version") {
        return Err(ApiError::new(
            ErrorKind::InvalidParameterCombinationException,
            "byName and filters: byName cannot be combined with the version filter",
        ));
    }
    let listed = listed(input.owner.as_ref())?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let all = match listed {
        Listed::Own => all_own(tx, ctx)?,
        Listed::Managed => managed_workflows::all(&ctx.region),
        Listed::Nothing => Vec::new(),
    };
    let key = |w: &domain::Workflow| {
        if by_name {
            name_key(&w.arn)
        } else {
            version_key(&w.arn, &w.version)
        }
    };
    let entries = newest_per_key(
        all.into_iter().filter(|w| passes(&filters, w)),
        key,
        |w| (w.version, w.build),
        after.as_deref(),
    );
    let page = svc.pager.page(OP, ctx, entries, input.max_results, key);
    let versions = page
        .items
        .iter()
        .map(|w| {
            let arn = if by_name {
                any_version_arn(&w.arn)
            } else {
                w.version_arn().to_string()
            };
            to_version_entry(w, arn)
        })
        .collect();
    Ok(ListWorkflowsResponse {
        workflow_version_list: Some(versions),
        next_token: page.next_token,
    })
}

/// The builds a ListWorkflowBuildVersions request covers: those matching a version ARN (which
/// may use `x` wildcards), or all of the caller's. An ARN that matches nothing lists nothing.
fn builds_to_list(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    version_arn: Option<&str>,
) -> Result<Vec<domain::Workflow>, ApiError> {
    const FIELD: &str = "workflowVersionArn";
    let Some(version_arn) = version_arn else {
        return all_own(tx, ctx);
    };
    if let Some(found) = managed_in_region(ctx, version_arn) {
        return Ok(found);
    }
    let Some(parsed) = scoped_arn(ctx, version_arn, FIELD)? else {
        return Ok(Vec::new());
    };
    let filter = VersionFilter::parse(parsed.version.as_deref().unwrap_or("x.x.x"))
        .map_err(|e| version_error(FIELD, e))?;
    if !is_workflow(parsed.kind) {
        return Ok(Vec::new());
    }
    builds_matching(tx, &parsed, &filter)
}

pub fn list_build_versions(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListWorkflowBuildVersionsRequest,
) -> Result<ListWorkflowBuildVersionsResponse, ApiError> {
    const OP: &str = "ListWorkflowBuildVersions";
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let builds = builds_to_list(tx, ctx, input.workflow_version_arn.as_deref())?;
    let key = |w: &domain::Workflow| build_key(&w.arn, &w.version, w.build);
    let sorted = newest_per_key(builds, key, |w| (w.version, w.build), after.as_deref());
    let page = svc.pager.page(OP, ctx, sorted, input.max_results, key);
    let mut summaries = Vec::with_capacity(page.items.len());
    for w in &page.items {
        summaries.push(to_summary(tx, w)?);
    }
    Ok(ListWorkflowBuildVersionsResponse {
        workflow_summary_list: Some(summaries),
        next_token: page.next_token,
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteWorkflowRequest,
) -> Result<DeleteWorkflowResponse, ApiError> {
    const FIELD: &str = "workflowBuildVersionArn";
    let arn = input.workflow_build_version_arn.unwrap_or_default();
    if managed_in_region(ctx, &arn).is_some() {
        return Err(ApiError::new(
            ErrorKind::InvalidRequestException,
            format!("workflowBuildVersionArn: '{arn}' is a managed workflow (owner aws); managed workflows cannot be deleted"),
        ));
    }
    let kind = Arn::parse(&arn)
        .map(|a| a.kind)
        .ok()
        .filter(|k| is_workflow(*k))
        .ok_or_else(|| not_found(ResourceKind::BuildWorkflow, &arn))?;
    let _: domain::Workflow = get_exact(tx, ctx, kind, &arn, FIELD)?;
    check_no_referrers(tx, &arn, kind.label())?;
    tx.delete_row(&arn).api()?;
    Ok(DeleteWorkflowResponse {
        workflow_build_version_arn: Some(arn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The managed build-image document, as the aws-cdk tests copy it.
    const BUILD_IMAGE: &str = r#"name: build-image
description: Workflow to build an AMI
schemaVersion: 1.0

steps:
  - name: LaunchBuildInstance
    action: LaunchInstance
    onFailure: Abort
    inputs:
      waitFor: "ssmAgent"

  - name: ApplyBuildComponents
    action: ExecuteComponents
    onFailure: Abort
    inputs:
      instanceId.$: "$.stepOutputs.LaunchBuildInstance.instanceId"

  - name: CreateOutputAMI
    action: CreateImage
    onFailure: Abort
    if:
      stringEquals: "AMI"
      value: "$.imagebuilder.imageType"
    inputs:
      instanceId.$: "$.stepOutputs.LaunchBuildInstance.instanceId"

  - name: TerminateBuildInstance
    action: TerminateInstance
    onFailure: Continue
    inputs:
      instanceId.$: "$.stepOutputs.LaunchBuildInstance.instanceId"

outputs:
  - name: "ImageId"
    value: "$.stepOutputs.CreateOutputAMI.imageId"
"#;

    #[test]
    fn the_managed_documents_pass_createworkflows_checks() {
        for (name, stage, data) in managed_workflows::DOCUMENTS {
            if let Err(e) = read_workflow_document(data, stage) {
                panic!("{name}: {e}");
            }
        }
    }

    #[test]
    fn accepts_a_build_workflow_and_refuses_it_for_distribution() {
        let outline = read_workflow_document(BUILD_IMAGE, Stage::Build).unwrap();
        assert!(outline.parameters.is_empty());
        let err = read_workflow_document(BUILD_IMAGE, Stage::Distribution).unwrap_err();
        assert!(
            err.starts_with(
                "steps[1].action: 'ExecuteComponents' can only be used in BUILD and TEST"
            ),
            "{err}"
        );
    }

    #[test]
    fn reads_parameters_with_their_types_and_defaults() {
        let data = "schemaVersion: 1.0\nparameters:\n  - name: waitForActionAtEnd\n    type: boolean\n    default: true\n  - name: regions\n    type: stringList\n    default: [us-east-1, eu-west-1]\n    description: where\n  - name: untyped\n  - name: count\n    type: integer\n    default: 3\nsteps:\n  - name: Launch\n    action: LaunchInstance\n";
        let outline = read_workflow_document(data, Stage::Test).unwrap();
        let got: Vec<(&str, &str, Option<Vec<String>>)> = outline
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.kind.as_str(), p.default_value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("waitForActionAtEnd", "boolean", Some(vec!["true".into()])),
                (
                    "regions",
                    "stringList",
                    Some(vec!["us-east-1".into(), "eu-west-1".into()])
                ),
                ("untyped", "string", None),
                ("count", "integer", Some(vec!["3".into()])),
            ]
        );
        assert_eq!(outline.parameters[1].description.as_deref(), Some("where"));
    }

    fn steps(n: usize) -> String {
        let mut text = "schemaVersion: 1.0\nsteps:\n".to_string();
        for i in 0..n {
            text.push_str(&format!("  - name: Step{i}\n    action: WaitForAction\n"));
        }
        text
    }

    #[test]
    fn allows_fifteen_steps_and_no_more() {
        assert!(read_workflow_document(&steps(15), Stage::Build).is_ok());
        let err = read_workflow_document(&steps(16), Stage::Build).unwrap_err();
        assert_eq!(
            err,
            "steps: the workflow has 16 steps; a workflow can have at most 15"
        );
    }

    const ONE_STEP: &str = "steps:\n  - {name: Launch, action: LaunchInstance}\n";

    #[test]
    fn rejects_malformed_documents_with_a_message_naming_the_member() {
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "the document is empty"),
            ("steps: [\n".into(), "the document is not valid YAML: "),
            (ONE_STEP.into(), "schemaVersion: is required"),
            ("schemaVersion: 1.0\n".into(), "steps: is required"),
            ("schemaVersion: 1.0\nsteps: []\n".into(), "steps: is empty"),
            (
                "schemaVersion: 1.0\nsteps:\n  - name: A\n".into(),
                "steps[0].action: is required",
            ),
            (
                "schemaVersion: 1.0\nsteps:\n  - {name: A, action: Teleport}\n".into(),
                "steps[0].action: 'Teleport' is not a workflow step action",
            ),
            (
                "schemaVersion: 1.0\nsteps:\n  - {name: A, action: LaunchInstance, onFailure: Ignore}\n"
                    .into(),
                "steps[0].onFailure: 'Ignore' is not one of Abort, Continue",
            ),
            (
                "schemaVersion: 1.0\nsteps:\n  - {name: A, action: LaunchInstance}\n  - {name: A, action: TerminateInstance}\n"
                    .into(),
                "steps[1].name: the step name 'A' is used more than once",
            ),
            (
                format!("schemaVersion: 1.0\nparameters:\n  - type: string\n{ONE_STEP}"),
                "parameters[0].name: is required",
            ),
            (
                format!("schemaVersion: 1.0\nparameters:\n  - {{name: p, type: number}}\n{ONE_STEP}"),
                "parameters[0].type: 'number' is not a workflow parameter type",
            ),
            (
                format!("schemaVersion: 1.0\nparameters:\n  - {{name: p, type: boolean, default: maybe}}\n{ONE_STEP}"),
                "parameters[0].default: a string is not a valid default for a parameter of type boolean",
            ),
            (
                format!("schemaVersion: 1.0\nparameters:\n  - {{name: p}}\n  - {{name: p}}\n{ONE_STEP}"),
                "parameters[1].name: the parameter 'p' is declared more than once",
            ),
            (
                format!("schemaVersion: 1.0\noutputs:\n  - {{name: ImageId}}\n{ONE_STEP}"),
                "outputs[0].value: is required",
            ),
        ];
        for (data, expected) in cases {
            let err = read_workflow_document(&data, Stage::Build).expect_err(&data);
            assert!(
                err.starts_with(expected),
                "document:\n{data}\nexpected a message starting with: {expected}\ngot: {err}"
            );
        }
    }

    /// The public corpus of real workflow documents (tests/corpus): all must be accepted for the stage they were written for.
    #[test]
    fn corpus_documents_are_accepted_or_refused_for_what_kiln_cannot_run() {
        let root = std::env::var("KILN_CORPUS_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus").to_string()
        });
        let entries =
            std::fs::read_dir(format!("{root}/workflows")).expect("tests/corpus/workflows");
        let stage_of = |file: &str| {
            if file.contains("Distribution") {
                Stage::Distribution
            } else if ["test_test", "OsCheck", "ValidateAmi", "workflow_test"]
                .iter()
                .any(|hint| file.contains(hint))
            {
                Stage::Test
            } else {
                Stage::Build
            }
        };
        let mut checked = 0;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            let data = std::fs::read_to_string(entry.path()).unwrap();
            let read = read_workflow_document(&data, stage_of(&file));
            if file.contains("ValidateAmi") {
                // It starts a Step Functions state machine, which Kiln has not.
                let e = read.err().unwrap_or_default();
                assert!(
                    e.contains("'ExecuteStateMachine' cannot run on Kiln"),
                    "{file}: {e}"
                );
            } else if let Err(e) = read {
                panic!("{file} rejected: {e}");
            }
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} corpus documents were read");
    }

    #[test]
    fn owner_values() {
        assert_eq!(listed(None).unwrap(), Listed::Own);
        assert_eq!(listed(Some(&Ownership::SelfOwned)).unwrap(), Listed::Own);
        assert_eq!(listed(Some(&Ownership::Amazon)).unwrap(), Listed::Managed);
        assert_eq!(
            listed(Some(&Ownership::AWSMarketplace)).unwrap(),
            Listed::Nothing
        );
        let err = listed(Some(&Ownership::Shared)).unwrap_err();
        assert!(
            err.message.starts_with("owner: 'Shared'"),
            "{}",
            err.message
        );
        assert!(listed(Some(&Ownership::ThirdParty)).is_err());
    }

    use crate::handlers::components::tests::Harness;
    use kiln_wire::Operation as Op;
    use serde_json::json;

    const PREFIX: &str = "arn:aws:imagebuilder:us-east-1:123456789012:workflow/";

    fn create(
        h: &Harness,
        name: &str,
        version: &str,
        stage: &str,
        data: &str,
    ) -> Result<serde_json::Value, ApiError> {
        h.call(
            Op::CreateWorkflow,
            json!({"name": name, "semanticVersion": version, "type": stage, "data": data,
                   "clientToken": uuid::Uuid::new_v4().to_string()}),
        )
    }

    #[test]
    fn create_get_list_and_delete() {
        let h = Harness::new();
        let out = create(&h, "Web Build", "1.0.0", "BUILD", BUILD_IMAGE).unwrap();
        assert_eq!(
            out["workflowBuildVersionArn"],
            format!("{PREFIX}build/web-build/1.0.0/1")
        );
        assert_eq!(
            out["latestVersionReferences"]["latestMajorVersionArn"],
            format!("{PREFIX}build/web-build/1.x.x")
        );
        let again = create(&h, "web_build", "1.0.0", "BUILD", BUILD_IMAGE).unwrap_err();
        assert_eq!(again.kind, ErrorKind::ResourceAlreadyExistsException);
        create(&h, "Web Build", "1.2.0", "BUILD", BUILD_IMAGE).unwrap();
        create(&h, "Web Build", "1.2.0", "TEST", &steps(2)).unwrap();
        let wrong_stage = create(&h, "dist", "1.0.0", "DISTRIBUTION", BUILD_IMAGE).unwrap_err();
        assert_eq!(wrong_stage.kind, ErrorKind::InvalidRequestException);
        assert!(
            wrong_stage.message.starts_with("data: steps[1].action"),
            "{}",
            wrong_stage.message
        );

        let got = h
            .call(
                Op::GetWorkflow,
                json!({"workflowBuildVersionArn": format!("{PREFIX}build/web-build/x.x.x")}),
            )
            .unwrap();
        assert_eq!(
            got["workflow"]["arn"],
            format!("{PREFIX}build/web-build/1.2.0/1")
        );
        assert_eq!(got["workflow"]["type"], "BUILD");
        assert_eq!(got["workflow"]["data"], BUILD_IMAGE);
        let missing = h
            .call(
                Op::GetWorkflow,
                json!({"workflowBuildVersionArn": format!("{PREFIX}distribution/web-build/x.x.x")}),
            )
            .unwrap_err();
        assert_eq!(missing.kind, ErrorKind::ResourceNotFoundException);

        let list = h.call(Op::ListWorkflows, json!({})).unwrap();
        let arns: Vec<&str> = list["workflowVersionList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["arn"].as_str().unwrap())
            .collect();
        assert_eq!(
            arns,
            vec![
                format!("{PREFIX}build/web-build/1.0.0"),
                format!("{PREFIX}build/web-build/1.2.0"),
                format!("{PREFIX}test/web-build/1.2.0"),
            ]
        );
        let tests = h
            .call(
                Op::ListWorkflows,
                json!({"filters": [{"name": "type", "values": ["TEST"]}]}),
            )
            .unwrap();
        assert_eq!(tests["workflowVersionList"].as_array().unwrap().len(), 1);
        let by_name = h.call(Op::ListWorkflows, json!({"byName": true})).unwrap();
        assert_eq!(
            by_name["workflowVersionList"][0]["arn"],
            format!("{PREFIX}build/web-build/x.x.x")
        );
        assert_eq!(by_name["workflowVersionList"][0]["version"], "1.2.0");
        let shared = h
            .call(Op::ListWorkflows, json!({"owner": "Shared"}))
            .unwrap_err();
        assert_eq!(shared.kind, ErrorKind::InvalidRequestException);

        let builds = h
            .call(
                Op::ListWorkflowBuildVersions,
                json!({"workflowVersionArn": format!("{PREFIX}build/web-build/1.x.x")}),
            )
            .unwrap();
        assert_eq!(builds["workflowSummaryList"].as_array().unwrap().len(), 2);
        let all = h.call(Op::ListWorkflowBuildVersions, json!({})).unwrap();
        assert_eq!(all["workflowSummaryList"].as_array().unwrap().len(), 3);

        let arn = format!("{PREFIX}build/web-build/1.0.0/1");
        h.call(Op::DeleteWorkflow, json!({"workflowBuildVersionArn": arn}))
            .unwrap();
        let gone = h
            .call(Op::DeleteWorkflow, json!({"workflowBuildVersionArn": arn}))
            .unwrap_err();
        assert_eq!(gone.kind, ErrorKind::ResourceNotFoundException);
    }

    #[test]
    fn delete_refuses_a_workflow_in_use() {
        let h = Harness::new();
        let out = create(&h, "used-wf", "1.0.0", "TEST", &steps(1)).unwrap();
        let arn = out["workflowBuildVersionArn"].as_str().unwrap().to_string();
        let pipeline = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p";
        h.svc_write(|tx| tx.set_references(pipeline, std::slice::from_ref(&arn)));
        let err = h
            .call(Op::DeleteWorkflow, json!({"workflowBuildVersionArn": arn}))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ResourceDependencyException);
        assert!(err.message.contains(pipeline), "{}", err.message);
    }
}
