//! Image pipelines: Create, Get, List, Update, Delete, and ListImagePipelineImages.
//!
//! Create and Update carry the same definition (Update has no name, tags or dryRun), so both
//! go through [`Members`]: wire request -> domain definition -> the domain's cross-field checks
//! -> reference checks against storage. Every referenced resource must exist in the caller's
//! account and region; the pipeline records references to the resolved resources so that they
//! cannot be deleted from under it. `workflows` are checked by
//! [`kiln_core::workflow_config::check`] (as CreateImage checks them): AWS-managed workflows
//! (owner `aws`) are accepted and recorded as no reference.

use crate::convert::list_own;
use crate::convert::{
    caller, check_dry_run, check_name_free, check_no_referrers, date, domain_error, get_exact,
    new_arn, resolve_required, response_tags, StoreResultExt,
};
use crate::filters::Filters;
use crate::service::Service;
use kiln_core::lookup::scoped_arn;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::pipeline::{
    self as domain, pick_recipe, ImagePipeline as Pipeline, ImageScanning, ImageTests,
    PipelineDefinition, RecipeKind, ScanType, StartCondition, WorkflowFailureAction,
};
use kiln_store::{Read, Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};
use serde_json::Value;
use std::collections::BTreeMap;

const KIND: ResourceKind = ResourceKind::ImagePipeline;
const DEFAULT_PLATFORM: &str = "Linux";

/// The members Create and Update share.
struct Members {
    description: Option<String>,
    image_recipe_arn: Option<String>,
    container_recipe_arn: Option<String>,
    infrastructure_configuration_arn: Option<String>,
    distribution_configuration_arn: Option<String>,
    image_tests_configuration: Option<ImageTestsConfiguration>,
    enhanced_image_metadata_enabled: Option<bool>,
    schedule: Option<Schedule>,
    status: Option<PipelineStatus>,
    image_tags: Option<BTreeMap<String, String>>,
    image_scanning_configuration: Option<ImageScanningConfiguration>,
    workflows: Option<Vec<WorkflowConfiguration>>,
    execution_role: Option<String>,
    logging_configuration: Option<PipelineLoggingConfiguration>,
}

/// A pipeline's `ecrConfiguration` needs a registry for its scanned copies, as CreateImage's
/// does (checked when the pipeline is made, so that no scheduled run finds out).
fn check_scan_copy(
    svc: &Service,
    ctx: &RequestContext,
    definition: &PipelineDefinition,
) -> Result<(), ApiError> {
    let Some(scanning) = definition
        .image_scanning
        .as_ref()
        .filter(|s| s.ecr_configured)
    else {
        return Ok(());
    };
    let destination = kiln_domain::resources::image::ContainerDestination {
        region: ctx.region.clone(),
        repository: scanning
            .ecr_repository_name
            .clone()
            .unwrap_or_else(|| kiln_domain::resources::image::DEFAULT_SCAN_REPOSITORY.to_string()),
        tags: Vec::new(),
        source: "imageScanningConfiguration.ecrConfiguration".to_string(),
    };
    svc.container_registries
        .check_scan_copy(Some(&(destination, true)))
        .api()
}

/// `imageScanningConfiguration` as the domain keeps it (CreateImage's and the pipelines').
pub(crate) fn scanning_from_wire(s: ImageScanningConfiguration) -> ImageScanning {
    ImageScanning {
        enabled: s.image_scanning_enabled,
        ecr_configured: s.ecr_configuration.is_some(),
        ecr_repository_name: s
            .ecr_configuration
            .as_ref()
            .and_then(|e| e.repository_name.clone()),
        ecr_container_tags: s.ecr_configuration.and_then(|e| e.container_tags),
        scanning_types: s.image_scanning_types.map(|types| {
            types
                .into_iter()
                .map(|t| match t {
                    ImageScanningType::TestInstanceCve => ScanType::TestInstanceCve,
                    ImageScanningType::OnDemandAmiCve => ScanType::OnDemandAmiCve,
                })
                .collect()
        }),
        scan_result_condition: s
            .scan_result_condition
            .map(|c| domain::ScanResultCondition {
                maximum_severity_label: c
                    .maximum_severity_label
                    .map(|l| l.as_str().to_string())
                    .unwrap_or_default(),
                fix_available: c.fix_available.unwrap_or(true),
            }),
    }
}

/// A request's `workflows` as the domain keeps them (pipelines and CreateImage).
pub(crate) fn workflows_from_wire(
    list: Vec<WorkflowConfiguration>,
) -> Vec<domain::PipelineWorkflow> {
    list.into_iter()
        .map(|w| domain::PipelineWorkflow {
            workflow_arn: w.workflow_arn.unwrap_or_default(),
            parameters: w.parameters.map(|ps| {
                ps.into_iter()
                    .map(|p| domain::WorkflowParameter {
                        name: p.name.unwrap_or_default(),
                        values: p.value.unwrap_or_default(),
                    })
                    .collect()
            }),
            parallel_group: w.parallel_group,
            on_failure: w.on_failure.map(|f| match f {
                OnWorkflowFailure::Continue => WorkflowFailureAction::Continue,
                OnWorkflowFailure::Abort => WorkflowFailureAction::Abort,
            }),
        })
        .collect()
}

/// Stored `workflows` as GetImagePipeline and GetImage answer them: as given.
pub(crate) fn workflows_to_wire(list: &[domain::PipelineWorkflow]) -> Vec<WorkflowConfiguration> {
    list.iter()
        .map(|w| WorkflowConfiguration {
            workflow_arn: Some(w.workflow_arn.clone()),
            parameters: w.parameters.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| WorkflowParameter {
                        name: Some(p.name.clone()),
                        value: Some(p.values.clone()),
                    })
                    .collect()
            }),
            parallel_group: w.parallel_group.clone(),
            on_failure: w.on_failure.map(|f| match f {
                WorkflowFailureAction::Continue => OnWorkflowFailure::Continue,
                WorkflowFailureAction::Abort => OnWorkflowFailure::Abort,
            }),
        })
        .collect()
}

fn definition(m: Members) -> Result<PipelineDefinition, ApiError> {
    let recipe = pick_recipe(
        m.image_recipe_arn.as_deref(),
        m.container_recipe_arn.as_deref(),
    )
    .map_err(domain_error)?;
    let schedule = match m.schedule {
        None => None,
        Some(s) => Some(domain::Schedule {
            expression: s.schedule_expression.ok_or_else(|| {
                ApiError::invalid_request(
                    "schedule.scheduleExpression: required when a schedule is given",
                )
            })?,
            timezone: s
                .timezone
                .unwrap_or_else(|| domain::DEFAULT_TIMEZONE.to_string()),
            start_condition: match s.pipeline_execution_start_condition {
                Some(PipelineExecutionStartCondition::ExpressionMatchOnly) => {
                    StartCondition::ExpressionMatchOnly
                }
                _ => StartCondition::ExpressionMatchAndDependencyUpdatesAvailable,
            },
            auto_disable_failure_count: s.auto_disable_policy.and_then(|p| p.failure_count),
        }),
    };
    let image_tests = m
        .image_tests_configuration
        .map_or_else(ImageTests::default, |t| ImageTests {
            enabled: t.image_tests_enabled.unwrap_or(true),
            timeout_minutes: t
                .timeout_minutes
                .unwrap_or(domain::DEFAULT_TEST_TIMEOUT_MINUTES),
        });
    let image_scanning = m.image_scanning_configuration.map(scanning_from_wire);
    let workflows = m.workflows.map(workflows_from_wire);
    let definition = PipelineDefinition {
        description: m.description,
        recipe,
        infrastructure_configuration_arn: m.infrastructure_configuration_arn.unwrap_or_default(),
        distribution_configuration_arn: m.distribution_configuration_arn,
        image_tests,
        enhanced_image_metadata_enabled: m.enhanced_image_metadata_enabled.unwrap_or(true),
        schedule,
        status: match m.status {
            Some(PipelineStatus::Disabled) => domain::PipelineStatus::Disabled,
            _ => domain::PipelineStatus::Enabled,
        },
        image_tags: m.image_tags,
        image_scanning,
        workflows,
        execution_role: m.execution_role,
        logging: m.logging_configuration.map(|l| domain::Logging {
            image_log_group_name: l.image_log_group_name,
            pipeline_log_group_name: l.pipeline_log_group_name,
        }),
    };
    definition.check().map_err(domain_error)?;
    Ok(definition.with_defaults())
}

/// The platform a recipe record declares; recipes store it as `platform`.
#[derive(serde::Deserialize)]
struct RecipePlatform {
    #[serde(default)]
    platform: Option<String>,
}

/// Checks that every referenced resource exists and returns the ARNs the pipeline depends on
/// (resolved to concrete versions) and the platform inherited from the recipe.
fn check_references(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    d: &PipelineDefinition,
) -> Result<(Vec<String>, String), ApiError> {
    let recipe_field = match d.recipe.kind {
        RecipeKind::Image => "imageRecipeArn",
        RecipeKind::Container => "containerRecipeArn",
    };
    // The caller's own recipe or one shared with it (`kiln_core::sharing::resolve_recipe`).
    let recipe =
        kiln_core::sharing::resolve_recipe(tx, caller(ctx), &d.recipe.arn, recipe_field).api()?;
    let platform = serde_json::from_str::<RecipePlatform>(&recipe.body)
        .ok()
        .and_then(|r| r.platform)
        .unwrap_or_else(|| DEFAULT_PLATFORM.to_string());
    // References are per account: a grantee's pipeline never keeps the owner from deleting the
    // recipe it shared (the pipeline's next run then fails, naming the recipe).
    let mut references = Vec::new();
    if recipe.account == ctx.account_id {
        references.push(recipe.arn);
    }
    references.push(
        resolve_required(
            tx,
            ctx,
            &d.infrastructure_configuration_arn,
            "infrastructureConfigurationArn",
        )?
        .arn,
    );
    if let Some(arn) = &d.distribution_configuration_arn {
        references.push(resolve_required(tx, ctx, arn, "distributionConfigurationArn")?.arn);
    }
    references.extend(
        kiln_core::workflow_config::check(
            tx,
            caller(ctx),
            d.workflows.as_deref(),
            d.execution_role.as_deref(),
            d.recipe.kind,
        )
        .api()?,
    );
    Ok((references, platform))
}

/// Parsed schedules, by expression and zone: every Get and List reports `dateNextRun`, and
/// parsing costs more than computing the next run. Bounded, per thread.
fn schedule_to_wire(s: &domain::Schedule) -> Schedule {
    Schedule {
        schedule_expression: Some(s.expression.clone()),
        timezone: Some(s.timezone.clone()),
        pipeline_execution_start_condition: Some(match s.start_condition {
            StartCondition::ExpressionMatchOnly => {
                PipelineExecutionStartCondition::ExpressionMatchOnly
            }
            StartCondition::ExpressionMatchAndDependencyUpdatesAvailable => {
                PipelineExecutionStartCondition::ExpressionMatchAndDependencyUpdatesAvailable
            }
        }),
        auto_disable_policy: s.auto_disable_failure_count.map(|n| AutoDisablePolicy {
            failure_count: Some(n),
        }),
    }
}

pub(crate) fn scanning_to_wire(s: &ImageScanning) -> ImageScanningConfiguration {
    ImageScanningConfiguration {
        image_scanning_enabled: Some(s.enabled.unwrap_or(false)),
        ecr_configuration: s.ecr_configured.then(|| EcrConfiguration {
            repository_name: s.ecr_repository_name.clone(),
            container_tags: s.ecr_container_tags.clone(),
        }),
        image_scanning_types: s.scanning_types.as_ref().map(|types| {
            types
                .iter()
                .map(|t| match t {
                    ScanType::TestInstanceCve => ImageScanningType::TestInstanceCve,
                    ScanType::OnDemandAmiCve => ImageScanningType::OnDemandAmiCve,
                })
                .collect()
        }),
        scan_result_condition: s
            .scan_result_condition
            .as_ref()
            .map(|c| ScanResultCondition {
                maximum_severity_label: MaximumSeverityLabel::from_wire(&c.maximum_severity_label),
                fix_available: Some(c.fix_available),
            }),
    }
}

fn to_wire(tx: &mut dyn Txn, p: &Pipeline) -> Result<ImagePipeline, ApiError> {
    let next_run = p.date_next_run;
    let arn = p.arn.to_string();
    let d = &p.definition;
    let (image_recipe_arn, container_recipe_arn) = match d.recipe.kind {
        RecipeKind::Image => (Some(d.recipe.arn.clone()), None),
        RecipeKind::Container => (None, Some(d.recipe.arn.clone())),
    };
    Ok(ImagePipeline {
        arn: Some(arn.clone()),
        name: Some(p.name.clone()),
        description: d.description.clone(),
        platform: Platform::from_wire(&p.platform),
        enhanced_image_metadata_enabled: Some(d.enhanced_image_metadata_enabled),
        image_recipe_arn,
        container_recipe_arn,
        infrastructure_configuration_arn: Some(d.infrastructure_configuration_arn.clone()),
        distribution_configuration_arn: d.distribution_configuration_arn.clone(),
        image_tests_configuration: Some(ImageTestsConfiguration {
            image_tests_enabled: Some(d.image_tests.enabled),
            timeout_minutes: Some(d.image_tests.timeout_minutes),
        }),
        schedule: d.schedule.as_ref().map(schedule_to_wire),
        status: Some(match d.status {
            domain::PipelineStatus::Enabled => PipelineStatus::Enabled,
            domain::PipelineStatus::Disabled => PipelineStatus::Disabled,
        }),
        date_created: Some(date(p.date_created)),
        date_updated: Some(date(p.date_updated)),
        date_last_run: p.date_last_run.map(date),
        last_run_status: p
            .last_run_status
            .as_deref()
            .and_then(ImageStatus::from_wire),
        date_next_run: next_run.map(date),
        tags: response_tags(tx, &arn)?,
        // A pipeline created without scanning settings shows none (get-image-pipeline.rst).
        image_scanning_configuration: d.image_scanning.as_ref().map(scanning_to_wire),
        image_tags: d.image_tags.clone(),
        execution_role: d.execution_role.clone(),
        workflows: d.workflows.as_deref().map(workflows_to_wire),
        logging_configuration: d.logging.as_ref().map(|l| PipelineLoggingConfiguration {
            image_log_group_name: l.image_log_group_name.clone(),
            pipeline_log_group_name: l.pipeline_log_group_name.clone(),
        }),
        // Absent while zero, as AWS answers a pipeline with no failed scheduled run
        // (get-image-pipeline and list-image-pipelines examples).
        consecutive_failures: (p.consecutive_failures > 0).then_some(p.consecutive_failures),
    })
}

/// The reads [`create`] makes, named ahead (see `Txn::prefetch`): the resources it references
/// and the name it takes.
pub fn create_reads(ctx: &RequestContext, input: &Value) -> Vec<Read> {
    let caller = caller(ctx);
    let referenced = [
        "imageRecipeArn",
        "containerRecipeArn",
        "infrastructureConfigurationArn",
        "distributionConfigurationArn",
    ]
    .iter()
    .filter_map(|member| input.get(member))
    .chain(
        input
            .get("workflows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("workflowArn")),
    )
    .filter_map(Value::as_str)
    .filter_map(|arn| kiln_core::lookup::resolve_read(caller, arn));
    let name = input
        .get("name")
        .and_then(Value::as_str)
        .map(|name| Read::Row(new_arn(ctx, KIND, name).to_string()));
    referenced.chain(name).collect()
}

pub fn create(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateImagePipelineRequest,
) -> Result<CreateImagePipelineResponse, ApiError> {
    let name = input.name.clone().unwrap_or_default();
    let definition = definition(Members {
        description: input.description,
        image_recipe_arn: input.image_recipe_arn,
        container_recipe_arn: input.container_recipe_arn,
        infrastructure_configuration_arn: input.infrastructure_configuration_arn,
        distribution_configuration_arn: input.distribution_configuration_arn,
        image_tests_configuration: input.image_tests_configuration,
        enhanced_image_metadata_enabled: input.enhanced_image_metadata_enabled,
        schedule: input.schedule,
        status: input.status,
        image_tags: input.image_tags,
        image_scanning_configuration: input.image_scanning_configuration,
        workflows: input.workflows,
        execution_role: input.execution_role,
        logging_configuration: input.logging_configuration,
    })?;
    let (references, platform) = check_references(tx, ctx, &definition)?;
    check_scan_copy(svc, ctx, &definition)?;
    check_name_free(tx, ctx, KIND, &name)?;
    check_dry_run(input.dry_run, "CreateImagePipeline")?;
    let arn = new_arn(ctx, KIND, &name);
    let mut pipeline = Pipeline {
        arn: arn.clone(),
        name,
        platform,
        definition,
        date_created: ctx.now_millis,
        date_updated: ctx.now_millis,
        date_last_run: None,
        last_run_status: None,
        consecutive_failures: 0,
        date_next_run: None,
        schedule_events: Vec::new(),
    };
    let arn = arn.to_string();
    kiln_core::scheduled::reschedule(tx, &mut pipeline, ctx.now_millis).api()?;
    tx.put_tagged(&pipeline, input.tags.as_ref()).api()?;
    tx.set_references(&arn, &references).api()?;
    Ok(CreateImagePipelineResponse {
        request_id: None,
        client_token: input.client_token,
        image_pipeline_arn: Some(arn),
    })
}

/// The reads [`get`] makes, named ahead: the pipeline and its tags.
pub fn get_reads(ctx: &RequestContext, input: &Value) -> Vec<Read> {
    let arn = input.get("imagePipelineArn").and_then(Value::as_str);
    match arn.filter(|arn| scoped_arn(caller(ctx), arn, "").is_ok_and(|a| a.is_some())) {
        Some(arn) => vec![Read::Row(arn.to_string()), Read::Tags(arn.to_string())],
        None => Vec::new(),
    }
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetImagePipelineRequest,
) -> Result<GetImagePipelineResponse, ApiError> {
    let arn = input.image_pipeline_arn.unwrap_or_default();
    let pipeline: Pipeline = get_exact(tx, ctx, KIND, &arn, "imagePipelineArn")?;
    Ok(GetImagePipelineResponse {
        request_id: None,
        image_pipeline: Some(to_wire(tx, &pipeline)?),
    })
}

const LIST_FILTERS: &[&str] = &[
    "description",
    "distributionConfigurationArn",
    "imageRecipeArn",
    "infrastructureConfigurationArn",
    "name",
    "status",
];

/// A pipeline's value for a ListImagePipelines filter. The name filter matches the name as
/// written or its normalised ARN form.
fn filter_value(p: &Pipeline, filter: &str) -> Option<String> {
    let d = &p.definition;
    match filter {
        "name" => Some(p.name.clone()),
        "description" => d.description.clone(),
        "distributionConfigurationArn" => d.distribution_configuration_arn.clone(),
        "imageRecipeArn" => (d.recipe.kind == RecipeKind::Image).then(|| d.recipe.arn.clone()),
        "infrastructureConfigurationArn" => Some(d.infrastructure_configuration_arn.clone()),
        "status" => Some(match d.status {
            domain::PipelineStatus::Enabled => "ENABLED".to_string(),
            domain::PipelineStatus::Disabled => "DISABLED".to_string(),
        }),
        _ => None,
    }
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImagePipelinesRequest,
) -> Result<ListImagePipelinesResponse, ApiError> {
    const OP: &str = "ListImagePipelines";
    let filters = Filters::parse(input.filters.as_ref(), LIST_FILTERS)?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let all: Vec<Pipeline> = list_own(tx, ctx, KIND, None, after)?;
    let matching = all
        .into_iter()
        .filter(|p| filters.accept(|f| filter_value(p, f)));
    let page = svc
        .pager
        .page(OP, ctx, matching, input.max_results, |p| p.arn.to_string());
    let mut list = Vec::with_capacity(page.items.len());
    for pipeline in &page.items {
        list.push(to_wire(tx, pipeline)?);
    }
    Ok(ListImagePipelinesResponse {
        request_id: None,
        image_pipeline_list: Some(list),
        next_token: page.next_token,
    })
}

pub fn update(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: UpdateImagePipelineRequest,
) -> Result<UpdateImagePipelineResponse, ApiError> {
    let arn = input.image_pipeline_arn.clone().unwrap_or_default();
    let mut pipeline: Pipeline = get_exact(tx, ctx, KIND, &arn, "imagePipelineArn")?;
    let definition = definition(Members {
        description: input.description,
        image_recipe_arn: input.image_recipe_arn,
        container_recipe_arn: input.container_recipe_arn,
        infrastructure_configuration_arn: input.infrastructure_configuration_arn,
        distribution_configuration_arn: input.distribution_configuration_arn,
        image_tests_configuration: input.image_tests_configuration,
        enhanced_image_metadata_enabled: input.enhanced_image_metadata_enabled,
        schedule: input.schedule,
        status: input.status,
        image_tags: input.image_tags,
        image_scanning_configuration: input.image_scanning_configuration,
        workflows: input.workflows,
        execution_role: input.execution_role,
        logging_configuration: input.logging_configuration,
    })?;
    if definition.recipe.kind != pipeline.definition.recipe.kind {
        let (was, now) = match pipeline.definition.recipe.kind {
            RecipeKind::Image => ("an image recipe", "containerRecipeArn"),
            RecipeKind::Container => ("a container recipe", "imageRecipeArn"),
        };
        return Err(ApiError::invalid_request(format!(
            "{now}: the pipeline builds {was}; the recipe of a pipeline cannot change between image and container"
        )));
    }
    let (references, platform) = check_references(tx, ctx, &definition)?;
    check_scan_copy(svc, ctx, &definition)?;
    pipeline.definition = definition;
    pipeline.platform = platform;
    pipeline.date_updated = ctx.now_millis;
    // "The consecutive failure count is also reset to zero when the pipeline configuration is updated."
    pipeline.consecutive_failures = 0;
    kiln_core::scheduled::reschedule(tx, &mut pipeline, ctx.now_millis).api()?;
    tx.put(&pipeline).api()?;
    tx.set_references(&arn, &references).api()?;
    Ok(UpdateImagePipelineResponse {
        request_id: None,
        // AWS answers an update with its ARN only, not the client token (the aws CLI examples).
        client_token: None,
        image_pipeline_arn: Some(arn),
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteImagePipelineRequest,
) -> Result<DeleteImagePipelineResponse, ApiError> {
    let arn = input.image_pipeline_arn.unwrap_or_default();
    let _: Pipeline = get_exact(tx, ctx, KIND, &arn, "imagePipelineArn")?;
    check_no_referrers(tx, &arn, KIND.label())?;
    tx.delete_row(&arn).api()?;
    tx.set_next_run(&arn, None).api()?;
    Ok(DeleteImagePipelineResponse {
        request_id: None,
        image_pipeline_arn: Some(arn),
    })
}
