//! Images: CreateImage and StartImagePipelineExecution (which create an image and queue its
//! build), GetImage, ListImages, ListImageBuildVersions, ListImagePipelineImages,
//! ListImagePackages, CancelImageCreation and DeleteImage.
//!
//! Creating an image and queueing its build is the core's ([`kiln_core::images`]); the handlers
//! here turn requests into its orders and its answers into responses, and never wait for a
//! build.
//! CreateImage's `workflows` and `executionRole` are checked as a pipeline's are
//! ([`kiln_core::workflow_config::check`]) and stored on the image; GetImage answers them.
//!
//! Cancelling moves a running image to CANCELLED at once; the worker notices and stops the
//! build. Deleting moves a finished image to DELETED, which hides it from every operation, and
//! queues it: the worker removes its image-store entry, then the record.
//!
//! Kiln's managed base images (owner `aws`, [`managed`]) are not records: they are answered
//! from the built-in list.

use crate::convert::{
    caller, date, decode_row, get_exact, not_found, response_tags, scoped_arn, version_error,
    StoreResultExt,
};
use crate::filters::Filters;
use crate::handlers::components::newest_per_key;
use crate::handlers::{container_recipes, distribution, image_recipes, infrastructure};
use crate::service::Service;
use kiln_core::images::{create_image, start_pipeline_build, sync_pipeline_status, ImageOrder};
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::ami::AmiOutput;
use kiln_domain::resources::image::{
    self as domain, BuildType as DomainBuildType, ImageStatus as DomainStatus,
    ImageType as DomainImageType, RecipeSnapshot,
};
use kiln_domain::resources::managed::{self, ManagedImage};
use kiln_domain::resources::pipeline::ImagePipeline as DomainPipeline;
use kiln_domain::version::SemVer;
use kiln_store::{Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

const KIND: ResourceKind = ResourceKind::Image;

pub fn create(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateImageRequest,
) -> Result<CreateImageResponse, ApiError> {
    let recipe = kiln_domain::resources::pipeline::pick_recipe(
        input.image_recipe_arn.as_deref(),
        input.container_recipe_arn.as_deref(),
    )
    .map_err(crate::convert::domain_error)?;
    // Checked as a pipeline's are; stored on the image, which GetImage echoes and the worker
    // runs (resolving `x` filters again when the build starts).
    let workflows = input.workflows.map(super::pipelines::workflows_from_wire);
    kiln_core::workflow_config::check(
        tx,
        caller(ctx),
        workflows.as_deref(),
        input.execution_role.as_deref(),
        recipe.kind,
    )
    .api()?;
    let tests = input.image_tests_configuration.unwrap_or_default();
    let tests_enabled = tests.image_tests_enabled.unwrap_or(true);
    let scanning = match input.image_scanning_configuration {
        Some(wire) => {
            let mut scanning = super::pipelines::scanning_from_wire(wire);
            scanning
                .check(recipe.kind, tests_enabled)
                .map_err(crate::convert::domain_error)?;
            scanning.fill_defaults(recipe.kind);
            Some(scanning)
        }
        None => None,
    };
    let image = create_image(
        tx,
        caller(ctx),
        ImageOrder {
            recipe_kind: recipe.kind,
            recipe_arn: recipe.arn,
            infrastructure_arn: input.infrastructure_configuration_arn.unwrap_or_default(),
            distribution_arn: input.distribution_configuration_arn,
            tests_enabled,
            tests_timeout_minutes: tests.timeout_minutes.unwrap_or(720),
            enhanced_metadata: input.enhanced_image_metadata_enabled.unwrap_or(true),
            build_type: DomainBuildType::UserInitiated,
            pipeline: None,
            tags: input.tags,
            workflows,
            execution_role: input.execution_role,
            scanning,
        },
    )
    .api()?;
    // Refused here, the image and its queued build roll back with the transaction.
    svc.container_registries
        .check(&image.container_destinations)
        .api()?;
    svc.container_registries
        .check_scan_copy(image.scan_copy.as_ref())
        .api()?;
    Ok(CreateImageResponse {
        request_id: None,
        client_token: input.client_token,
        image_build_version_arn: Some(image.arn.to_string()),
        latest_version_references: Some(super::components::latest_version_references(
            &image.arn,
            &image.version,
        )),
    })
}

pub fn start_pipeline_execution(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: StartImagePipelineExecutionRequest,
) -> Result<StartImagePipelineExecutionResponse, ApiError> {
    let pipeline_arn = input.image_pipeline_arn.unwrap_or_default();
    let mut pipeline: DomainPipeline = get_exact(
        tx,
        ctx,
        ResourceKind::ImagePipeline,
        &pipeline_arn,
        "imagePipelineArn",
    )?;
    // "Builds that you start manually use the tags from the StartImagePipelineExecution
    // request instead" (of the pipeline's imageTags).
    let image = start_pipeline_build(
        tx,
        caller(ctx),
        &mut pipeline,
        DomainBuildType::UserInitiated,
        input.tags,
    )
    .api()?;
    svc.container_registries
        .check(&image.container_destinations)
        .api()?;
    svc.container_registries
        .check_scan_copy(image.scan_copy.as_ref())
        .api()?;
    tx.put(&pipeline).api()?;
    Ok(StartImagePipelineExecutionResponse {
        request_id: None,
        client_token: input.client_token,
        image_build_version_arn: Some(image.arn.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading images.

/// An image the caller can see: its own, not DELETED.
fn visible(image: &domain::Image) -> bool {
    image.status != DomainStatus::Deleted
}

/// The build version `arn` names exactly, unless it does not exist or is DELETED.
pub(crate) fn get_visible(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
) -> Result<domain::Image, ApiError> {
    let image: domain::Image = get_exact(tx, ctx, KIND, arn, "imageBuildVersionArn")?;
    if visible(&image) {
        Ok(image)
    } else {
        Err(not_found(KIND, arn))
    }
}

fn status_to_wire(s: DomainStatus) -> ImageStatus {
    ImageStatus::from_wire(s.as_str()).unwrap_or(ImageStatus::Pending)
}

fn state(image: &domain::Image) -> ImageState {
    ImageState {
        status: Some(status_to_wire(image.status)),
        reason: image.reason.clone(),
        // The model: set only when the status is FAILED.
        failure_context: image
            .failure
            .as_ref()
            .filter(|_| image.status == DomainStatus::Failed)
            .map(failure_context),
    }
}

fn failure_context(f: &domain::FailureContext) -> ImageFailureContext {
    ImageFailureContext {
        image_status: Some(status_to_wire(f.image_status)),
        failed_step: f.failed_step.clone(),
        distribution_failure: f.distribution.as_ref().map(|d| DistributionFailureContext {
            error_message: Some(d.error_message.clone()),
            region_failures: (!d.region_failures.is_empty()).then(|| {
                d.region_failures
                    .iter()
                    .map(|r| RegionFailure {
                        region: Some(r.region.clone()),
                        status: RegionFailureStatus::from_wire(&r.status),
                        image_configuration_step: r
                            .image_configuration_step
                            .as_deref()
                            .and_then(ImageConfigurationStep::from_wire),
                        error_message: Some(r.error_message.clone()),
                        target_account_id: r.target_account_id.clone(),
                    })
                    .collect()
            }),
        }),
        workflow_execution_id: f.workflow_execution_id.clone(),
        workflow_arn: f.workflow_arn.clone(),
        step_execution_id: f.step_execution_id.clone(),
        component_failure: f.component.as_ref().map(|c| ComponentFailureContext {
            component_arn: Some(c.component_arn.clone()),
            phase_name: Some(c.phase_name.clone()),
            step_name: Some(c.step_name.clone()),
            action: Some(c.action.clone()),
            error_message: Some(c.error_message.clone()),
        }),
    }
}

fn image_type_to_wire(t: DomainImageType) -> ImageType {
    match t {
        DomainImageType::Ami => ImageType::Ami,
        DomainImageType::Docker => ImageType::Docker,
    }
}

fn build_type_to_wire(t: DomainBuildType) -> BuildType {
    match t {
        DomainBuildType::UserInitiated => BuildType::UserInitiated,
        DomainBuildType::Scheduled => BuildType::Scheduled,
        DomainBuildType::Import => BuildType::Import,
    }
}

/// `1.0.0/3`: the version member of images names the build.
fn build_version(arn: &Arn) -> String {
    match (&arn.version, arn.build) {
        (Some(v), Some(b)) => format!("{v}/{b}"),
        (Some(v), None) => v.clone(),
        _ => String::new(),
    }
}

/// The AMIs of an image: one per Region and account it was distributed to, or for an image
/// built before distribution made AMI records, its one id in the build Region.
fn amis_of(image: &domain::Image) -> Vec<AmiOutput> {
    if !image.amis.is_empty() {
        return image.amis.clone();
    }
    image
        .output_resources
        .iter()
        .map(|id| AmiOutput {
            region: image.arn.region.clone(),
            image_id: id.clone(),
            name: format!("{} {}", image.name, build_version(&image.arn)),
            // AWS shows none on the AMIs of a build (list-image-build-versions.rst); a
            // description comes only from a recipe or distribution that has one.
            description: None,
            account_id: image.owner.clone(),
        })
        .collect()
}

fn ami_to_wire(a: &AmiOutput) -> Ami {
    Ami {
        region: Some(a.region.clone()),
        image: Some(a.image_id.clone()),
        name: Some(a.name.clone()),
        description: a.description.clone(),
        state: None,
        account_id: Some(a.account_id.clone()),
    }
}

fn output_resources(image: &domain::Image) -> Option<OutputResources> {
    if image.output_resources.is_empty() && image.amis.is_empty() {
        return None;
    }
    Some(match image.image_type {
        DomainImageType::Ami => OutputResources {
            amis: Some(amis_of(image).iter().map(ami_to_wire).collect()),
            containers: None,
        },
        // Pushed to registries: one entry per Region, as AWS answers.
        DomainImageType::Docker if !image.containers.is_empty() => OutputResources {
            amis: None,
            containers: Some(
                image
                    .containers
                    .iter()
                    .map(|c| Container {
                        region: Some(c.region.clone()),
                        image_uris: Some(c.image_uris.clone()),
                    })
                    .collect(),
            ),
        },
        // Kept in the local image store (no --ecr-registry): its `oci:` URI.
        DomainImageType::Docker => OutputResources {
            amis: None,
            containers: Some(vec![Container {
                region: Some(image.arn.region.clone()),
                image_uris: Some(image.output_resources.clone()),
            }]),
        },
    })
}

/// GetImage shows the caller only its own tags: those of a shared image, and of the recipe
/// another account shared that the caller's image was built from, are the owner's.
fn foreign_tags_hidden(ctx: &RequestContext, mut image: Image) -> Image {
    let image_arn = image.arn.clone();
    super::sharing::hide_foreign_tags(ctx, image_arn.as_deref(), &mut image.tags);
    if let Some(r) = image.image_recipe.as_mut() {
        super::sharing::hide_foreign_tags(ctx, r.arn.as_deref(), &mut r.tags);
    }
    if let Some(r) = image.container_recipe.as_mut() {
        super::sharing::hide_foreign_tags(ctx, r.arn.as_deref(), &mut r.tags);
    }
    // The configurations are the image's owner's.
    if let Some(c) = image.infrastructure_configuration.as_mut() {
        super::sharing::hide_foreign_tags(ctx, image_arn.as_deref(), &mut c.tags);
    }
    if let Some(c) = image.distribution_configuration.as_mut() {
        super::sharing::hide_foreign_tags(ctx, image_arn.as_deref(), &mut c.tags);
    }
    image
}

fn to_wire(tx: &mut dyn Txn, image: &domain::Image) -> Result<Image, ApiError> {
    let arn = image.arn.to_string();
    let snapshot = image.snapshot.as_ref();
    let (image_recipe, container_recipe) = match snapshot.map(|s| &s.recipe) {
        Some(RecipeSnapshot::Image(r)) => (Some(image_recipes::to_wire(tx, r)?), None),
        Some(RecipeSnapshot::Container(r)) => (None, Some(container_recipes::to_wire(tx, r)?)),
        None => (None, None),
    };
    let import = image.import.as_ref();
    let infrastructure = snapshot
        .map(|s| &s.infrastructure)
        .or_else(|| import.and_then(|i| i.infrastructure.as_ref()));
    let infrastructure_configuration = match infrastructure {
        Some(i) => Some(infrastructure::to_wire(tx, i)?),
        None => None,
    };
    let distribution_configuration = match snapshot.and_then(|s| s.distribution.as_ref()) {
        Some(d) => Some(distribution::to_wire(tx, d)?),
        None => None,
    };
    Ok(Image {
        arn: Some(arn.clone()),
        r#type: Some(image_type_to_wire(image.image_type)),
        name: Some(image.name.clone()),
        version: Some(build_version(&image.arn)),
        platform: Platform::from_wire(&image.platform),
        enhanced_image_metadata_enabled: Some(image.enhanced_image_metadata_enabled),
        os_version: image.os_version.clone(),
        state: Some(state(image)),
        image_recipe,
        container_recipe,
        source_pipeline_name: image.pipeline_name.clone(),
        source_pipeline_arn: image.pipeline_arn.clone(),
        infrastructure_configuration,
        distribution_configuration,
        image_tests_configuration: Some(ImageTestsConfiguration {
            image_tests_enabled: Some(image.image_tests_enabled),
            timeout_minutes: snapshot.map(|s| s.image_tests_timeout_minutes),
        }),
        date_created: Some(date(image.date_created)),
        output_resources: output_resources(image),
        tags: response_tags(tx, &arn)?,
        build_type: Some(build_type_to_wire(image.build_type)),
        image_source: image_source(image),
        execution_role: image
            .execution_role
            .clone()
            .or_else(|| import.and_then(|i| i.execution_role.clone())),
        workflows: image
            .workflows
            .as_deref()
            .map(super::pipelines::workflows_to_wire),
        logging_configuration: import.and_then(|i| i.log_group.clone()).map(|group| {
            ImageLoggingConfiguration {
                log_group_name: Some(group),
            }
        }),
        image_scanning_configuration: image
            .scanning
            .as_ref()
            .map(super::pipelines::scanning_to_wire),
        scan_state: image.scan_state.as_ref().map(|s| ImageScanState {
            status: ImageScanStatus::from_wire(s.status.as_str()),
            reason: s.reason.clone(),
        }),
        lifecycle_execution_id: image.lifecycle_execution_id.clone(),
        deprecation_time: image.deprecation_time.map(|t| t as f64 / 1000.0),
    })
}

/// AWS shows imageSource on its managed images and on imported ones (IMPORTED): no image
/// built from a recipe in the aws CLI examples (get-image, list-images,
/// list-image-build-versions) carries it.
fn image_source(image: &domain::Image) -> Option<ImageSource> {
    image.import.as_ref().map(|_| ImageSource::Imported)
}

fn to_summary(tx: &mut dyn Txn, image: &domain::Image) -> Result<ImageSummary, ApiError> {
    let arn = image.arn.to_string();
    Ok(ImageSummary {
        arn: Some(arn.clone()),
        name: Some(image.name.clone()),
        r#type: Some(image_type_to_wire(image.image_type)),
        version: Some(build_version(&image.arn)),
        platform: Platform::from_wire(&image.platform),
        os_version: image.os_version.clone(),
        state: Some(state(image)),
        owner: Some(image.owner.clone()),
        date_created: Some(date(image.date_created)),
        output_resources: output_resources(image),
        tags: response_tags(tx, &arn)?,
        build_type: Some(build_type_to_wire(image.build_type)),
        image_source: image_source(image),
        lifecycle_execution_id: image.lifecycle_execution_id.clone(),
        deprecation_time: image.deprecation_time.map(|t| t as f64 / 1000.0),
        ..Default::default()
    })
}

fn managed_to_wire(m: &ManagedImage, region: &str) -> Image {
    Image {
        arn: Some(m.arn(region).to_string()),
        r#type: Some(ImageType::Ami),
        name: Some(m.name.to_string()),
        version: Some(format!("{}/1", m.version)),
        platform: Some(Platform::Linux),
        os_version: Some(m.os_version.to_string()),
        state: Some(ImageState {
            status: Some(ImageStatus::Available),
            reason: None,
            failure_context: None,
        }),
        date_created: Some(date(m.date_created)),
        build_type: Some(BuildType::Import),
        image_source: Some(ImageSource::AmazonManaged),
        ..Default::default()
    }
}

fn managed_version(m: &ManagedImage, region: &str) -> ImageVersion {
    let arn = Arn::new(region, managed::OWNER, KIND, m.name).with_version(m.version);
    ImageVersion {
        arn: Some(arn.to_string()),
        name: Some(m.name.to_string()),
        r#type: Some(ImageType::Ami),
        version: Some(m.version.to_string()),
        platform: Some(Platform::Linux),
        os_version: Some(m.os_version.to_string()),
        owner: Some("Amazon".to_string()),
        date_created: Some(date(m.date_created)),
        build_type: Some(BuildType::Import),
        image_source: Some(ImageSource::AmazonManaged),
    }
}

/// The image an ARN names: a build version, or the newest build of a version or filter.
fn find_image(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
    field: &str,
) -> Result<domain::Image, ApiError> {
    match super::sharing::resolve_visible(tx, ctx, arn, field)? {
        Some(row) if row.kind == KIND => {
            let image: domain::Image = decode_row(&row)?;
            if visible(&image) {
                return Ok(image);
            }
            Err(not_found(KIND, arn))
        }
        _ => Err(not_found(KIND, arn)),
    }
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetImageRequest,
) -> Result<GetImageResponse, ApiError> {
    let arn = input.image_build_version_arn.unwrap_or_default();
    if let Ok(parsed) = Arn::parse(&arn) {
        if parsed.account == managed::OWNER {
            let m = managed::find(&parsed)
                .filter(|_| parsed.region == ctx.region)
                .ok_or_else(|| not_found(KIND, &arn))?;
            return Ok(GetImageResponse {
                request_id: None,
                image: Some(managed_to_wire(m, &ctx.region)),
                latest_version_references: None,
            });
        }
    }
    let image = find_image(tx, ctx, &arn, "imageBuildVersionArn")?;
    let version = SemVer::parse(image.arn.version.as_deref().unwrap_or_default())
        .unwrap_or(SemVer::new(0, 0, 0));
    Ok(GetImageResponse {
        request_id: None,
        latest_version_references: Some(image_recipes::latest_version_references(
            &image.arn.without_build(),
            &version,
        )),
        image: Some(foreign_tags_hidden(ctx, to_wire(tx, &image)?)),
    })
}

const VERSION_FILTERS: &[&str] = &["name", "osVersion", "platform", "type", "version"];

fn filter_value(image: &domain::Image, filter: &str) -> Option<String> {
    match filter {
        "name" => Some(image.name.clone()),
        "osVersion" => image.os_version.clone(),
        "platform" => Some(image.platform.clone()),
        "type" => Some(image.image_type.as_str().to_string()),
        "version" => image.arn.version.clone(),
        _ => None,
    }
}

fn own_images(tx: &mut dyn Txn, ctx: &RequestContext) -> Result<Vec<domain::Image>, ApiError> {
    let all: Vec<domain::Image> = crate::convert::list_own(tx, ctx, KIND, None, None)?;
    Ok(all.into_iter().filter(visible).collect())
}

fn rank(image: &domain::Image) -> (SemVer, u32) {
    (
        SemVer::parse(image.arn.version.as_deref().unwrap_or_default())
            .unwrap_or(SemVer::new(0, 0, 0)),
        image.arn.build.unwrap_or(0),
    )
}

fn version_key(image: &domain::Image) -> String {
    format!(
        "{}/{}",
        image.arn.name,
        image.arn.version.clone().unwrap_or_default()
    )
}

fn build_key(image: &domain::Image) -> String {
    format!(
        "{}/{}/{:010}",
        image.arn.name,
        image.arn.version.clone().unwrap_or_default(),
        image.arn.build.unwrap_or(0)
    )
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImagesRequest,
) -> Result<ListImagesResponse, ApiError> {
    const OP: &str = "ListImages";
    let filters = Filters::parse(input.filters.as_ref(), VERSION_FILTERS)?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let by_name = input.by_name == Some(true);
    let versions: Vec<ImageVersion> = match input.owner {
        None | Some(Ownership::SelfOwned) | Some(Ownership::Shared) => {
            let listed: Vec<domain::Image> =
                super::sharing::listed(tx, ctx, KIND, input.owner.as_ref(), None)?;
            let images = listed
                .into_iter()
                .filter(visible)
                .filter(|i| filters.accept(|f| filter_value(i, f)));
            let key: fn(&domain::Image) -> String = if by_name {
                |i| i.arn.name.clone()
            } else {
                version_key
            };
            newest_per_key(images, key, rank, None)
                .into_iter()
                .map(|i| {
                    let mut arn = i.arn.without_build();
                    if by_name {
                        arn.version = Some("x.x.x".to_string());
                    }
                    ImageVersion {
                        arn: Some(arn.to_string()),
                        name: Some(i.name.clone()),
                        r#type: Some(image_type_to_wire(i.image_type)),
                        version: i.arn.version.clone(),
                        platform: Platform::from_wire(&i.platform),
                        os_version: i.os_version.clone(),
                        owner: Some(i.owner.clone()),
                        date_created: Some(date(i.date_created)),
                        build_type: Some(build_type_to_wire(i.build_type)),
                        image_source: image_source(&i), // as on the images themselves
                    }
                })
                .collect()
        }
        Some(Ownership::Amazon) => managed::IMAGES
            .iter()
            .map(|m| managed_version(m, &ctx.region))
            .filter(|v| {
                filters.accept(|f| match f {
                    "name" => v.name.clone(),
                    "osVersion" => v.os_version.clone(),
                    "platform" => Some("Linux".into()),
                    "type" => Some("AMI".into()),
                    "version" => v.version.clone(),
                    _ => None,
                })
            })
            .collect(),
        Some(_) => Vec::new(),
    };
    let key = |v: &ImageVersion| v.arn.clone().unwrap_or_default();
    let mut versions = versions;
    versions.sort_by_key(key);
    let rest = versions
        .into_iter()
        .filter(|v| after.as_deref().is_none_or(|a| key(v).as_str() > a));
    let page = svc.pager.page(OP, ctx, rest, input.max_results, key);
    Ok(ListImagesResponse {
        request_id: None,
        image_version_list: Some(page.items),
        next_token: page.next_token,
    })
}

fn summaries(
    svc: &Service,
    op: &str,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    images: Vec<domain::Image>,
    next_token: Option<&str>,
    max_results: Option<i32>,
) -> Result<(Vec<ImageSummary>, Option<String>), ApiError> {
    let after = svc.pager.decode(op, ctx, next_token)?;
    let mut images = images;
    images.sort_by_key(build_key);
    let rest = images
        .into_iter()
        .filter(|i| after.as_deref().is_none_or(|a| build_key(i).as_str() > a));
    let page = svc.pager.page(op, ctx, rest, max_results, build_key);
    let mut list = Vec::with_capacity(page.items.len());
    for image in &page.items {
        let mut summary = to_summary(tx, image)?;
        super::sharing::hide_foreign_tags(ctx, summary.arn.as_deref(), &mut summary.tags);
        list.push(summary);
    }
    Ok((list, page.next_token))
}

pub fn list_build_versions(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImageBuildVersionsRequest,
) -> Result<ListImageBuildVersionsResponse, ApiError> {
    const OP: &str = "ListImageBuildVersions";
    let filters = Filters::parse(input.filters.as_ref(), VERSION_FILTERS)?;
    let images = match input.image_version_arn.as_deref() {
        None => own_images(tx, ctx)?,
        Some(arn) => match scoped_arn(ctx, arn, "imageVersionArn")? {
            // Another account's version: the builds of it shared with the caller.
            None => super::sharing::shared_builds(tx, ctx, KIND, arn, "imageVersionArn")?,
            Some(parsed) => {
                let version = SemVer::parse(parsed.version.as_deref().unwrap_or_default())
                    .map_err(|e| version_error("imageVersionArn", e))?
                    .to_string();
                own_images(tx, ctx)?
                    .into_iter()
                    .filter(|i| {
                        i.arn.name == parsed.name && i.arn.version.as_deref() == Some(&version)
                    })
                    .collect()
            }
        },
    };
    let images = images
        .into_iter()
        .filter(|i| filters.accept(|f| filter_value(i, f)))
        .collect();
    let (list, next_token) = summaries(
        svc,
        OP,
        ctx,
        tx,
        images,
        input.next_token.as_deref(),
        input.max_results,
    )?;
    Ok(ListImageBuildVersionsResponse {
        request_id: None,
        image_summary_list: Some(list),
        next_token,
    })
}

/// A pipeline that does not exist answers an empty list, as documented.
pub fn list_pipeline_images(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImagePipelineImagesRequest,
) -> Result<ListImagePipelineImagesResponse, ApiError> {
    const OP: &str = "ListImagePipelineImages";
    let arn = input.image_pipeline_arn.unwrap_or_default();
    let filters = Filters::parse(input.filters.as_ref(), &["name", "version"])?;
    let images = match scoped_arn(ctx, &arn, "imagePipelineArn")? {
        None => Vec::new(),
        Some(_) => own_images(tx, ctx)?
            .into_iter()
            .filter(|i| i.pipeline_arn.as_deref() == Some(arn.as_str()))
            .filter(|i| filters.accept(|f| filter_value(i, f)))
            .collect(),
    };
    let (list, next_token) = summaries(
        svc,
        OP,
        ctx,
        tx,
        images,
        input.next_token.as_deref(),
        input.max_results,
    )?;
    Ok(ListImagePipelineImagesResponse {
        request_id: None,
        image_summary_list: Some(list),
        next_token,
    })
}

pub fn list_packages(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImagePackagesRequest,
) -> Result<ListImagePackagesResponse, ApiError> {
    const OP: &str = "ListImagePackages";
    let arn = input.image_build_version_arn.unwrap_or_default();
    let image = get_visible(tx, ctx, &arn)?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let key = |p: &&domain::Package| p.name.clone();
    let mut packages: Vec<&domain::Package> = image.packages.iter().collect();
    packages.sort_by_key(key);
    let rest = packages
        .into_iter()
        .filter(|p| after.as_deref().is_none_or(|a| p.name.as_str() > a));
    let page = svc.pager.page(OP, ctx, rest, input.max_results, key);
    Ok(ListImagePackagesResponse {
        request_id: None,
        image_package_list: Some(
            page.items
                .into_iter()
                .map(|p| ImagePackage {
                    package_name: Some(p.name.clone()),
                    package_version: Some(p.version.clone()),
                })
                .collect(),
        ),
        next_token: page.next_token,
    })
}

// ---------------------------------------------------------------------------------------------
// Cancelling and deleting.

/// The reason a cancelled image shows.
pub const CANCELLED_REASON: &str = "cancelled by CancelImageCreation";

pub fn cancel(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CancelImageCreationRequest,
) -> Result<CancelImageCreationResponse, ApiError> {
    let arn = input.image_build_version_arn.unwrap_or_default();
    let mut image = get_visible(tx, ctx, &arn)?;
    if !image.status.in_progress() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUseException,
            format!(
                "imageBuildVersionArn: the image '{arn}' is {}; only an image whose build is in progress can be cancelled",
                image.status.as_str()
            ),
        ));
    }
    image
        .advance(
            DomainStatus::Cancelled,
            Some(CANCELLED_REASON.to_string()),
            ctx.now_millis,
        )
        .map_err(|e| ApiError::service(e.to_string()))?;
    tx.put(&image).api()?;
    // The worker (when it has claimed the build) sees the status and stops; a build nobody
    // claimed yet is simply dropped from the queue.
    sync_pipeline_status(tx, &image, ctx.now_millis).api()?;
    Ok(CancelImageCreationResponse {
        request_id: None,
        client_token: input.client_token,
        image_build_version_arn: Some(arn),
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteImageRequest,
) -> Result<DeleteImageResponse, ApiError> {
    let arn = input.image_build_version_arn.unwrap_or_default();
    let mut image = get_visible(tx, ctx, &arn)?;
    if image.status.in_progress() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUseException,
            format!(
                "imageBuildVersionArn: the image '{arn}' is {}; cancel its build (CancelImageCreation) before deleting it",
                image.status.as_str()
            ),
        ));
    }
    crate::convert::check_no_referrers(tx, &arn, KIND.label())?;
    kiln_core::deletion::delete_image(tx, &mut image, ctx.now_millis).api()?;
    Ok(DeleteImageResponse {
        request_id: None,
        image_build_version_arn: Some(arn),
    })
}
