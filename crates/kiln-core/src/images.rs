//! Creating images and queueing their builds (CreateImage, a pipeline's manual or scheduled
//! run), and keeping a pipeline's last-run fields in step with its images.
//!
//! Creating an image fixes everything its build needs in the record (a [`BuildSnapshot`]: the
//! recipe, its components' documents, the configurations) and queues the build in the same
//! transaction; the build worker (`kiln-worker`) claims it once the transaction has committed
//! and moves the image through its statuses. Nothing here waits for a build.

use crate::caller::Caller;
use crate::error::{CoreError, CoreResult};
use crate::lookup::{decode_row, resolve_required};
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::component::Component;
use kiln_domain::resources::distribution::DistributionConfiguration;
use kiln_domain::resources::image::{
    BuildComponent, BuildSnapshot, BuildType, ContainerDestination, Image, ImageStatus,
    RecipeSnapshot, StatusChange,
};
use kiln_domain::resources::infrastructure::InfrastructureConfiguration;
use kiln_domain::resources::pipeline::{ImagePipeline, PipelineWorkflow, RecipeKind};
use kiln_domain::resources::recipe::{ContainerRecipe, ImageRecipe};
use kiln_domain::resources::scheduled_run::Dependencies;
use kiln_domain::version::SemVer;
use kiln_store::{ListQuery, Txn, TxnExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const KIND: ResourceKind = ResourceKind::Image;

/// What a new image is built from: a CreateImage request or a pipeline.
pub struct ImageOrder {
    pub recipe_kind: RecipeKind,
    pub recipe_arn: String,
    pub infrastructure_arn: String,
    pub distribution_arn: Option<String>,
    pub tests_enabled: bool,
    pub tests_timeout_minutes: i32,
    pub enhanced_metadata: bool,
    pub build_type: BuildType,
    /// The pipeline's ARN and name, for a pipeline's run.
    pub pipeline: Option<(String, String)>,
    pub tags: Option<BTreeMap<String, String>>,
    /// See [`Image::workflows`].
    pub workflows: Option<Vec<PipelineWorkflow>>,
    pub execution_role: Option<String>,
    /// See [`Image::scanning`].
    pub scanning: Option<kiln_domain::resources::pipeline::ImageScanning>,
}

/// A recipe with its references resolved as a build made now would use them.
pub struct ResolvedRecipe {
    /// The recipe's build version ARN.
    pub arn: String,
    pub recipe: RecipeSnapshot,
    /// The components, resolved to builds, in recipe order.
    pub components: Vec<BuildComponent>,
    /// See [`Image::resolved_parent`].
    pub resolved_parent: Option<String>,
}

impl ResolvedRecipe {
    /// What the schedule's dependency check compares (see [`Dependencies::of_image`]).
    pub fn dependencies(&self) -> Dependencies {
        Dependencies {
            parent: self
                .resolved_parent
                .clone()
                .unwrap_or_else(|| self.recipe.parent_image().to_string()),
            components: self.components.iter().map(|c| c.arn.clone()).collect(),
        }
    }
}

fn recipe_field(kind: RecipeKind) -> &'static str {
    match kind {
        RecipeKind::Image => "imageRecipeArn",
        RecipeKind::Container => "containerRecipeArn",
    }
}

/// Resolves a recipe reference, its components' references and its parent image.
pub fn resolve_recipe(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    kind: RecipeKind,
    arn: &str,
) -> CoreResult<ResolvedRecipe> {
    let recipe_field = recipe_field(kind);
    let recipe_row = crate::sharing::resolve_recipe(tx, caller, arn, recipe_field)?;
    // A recipe another account shares is used as its owner would use it (see
    // `sharing::recipe_scope`): its components and parent resolve in the owner's scope.
    let owner = recipe_row.account.clone();
    let scope = crate::sharing::recipe_scope(caller, &owner);
    let recipe = match kind {
        RecipeKind::Image => RecipeSnapshot::Image(decode_row::<ImageRecipe>(&recipe_row)?),
        RecipeKind::Container => {
            RecipeSnapshot::Container(decode_row::<ContainerRecipe>(&recipe_row)?)
        }
    };
    let configured = recipe.components();
    let mut components = Vec::with_capacity(configured.len());
    for (i, c) in configured.iter().enumerate() {
        let field = format!("{recipe_field}: the recipe's components[{i}]");
        let row = crate::sharing::resolve_visible(tx, scope, &c.component_arn, &field)?.ok_or_else(|| {
            CoreError::Invalid(format!(
                "{field}: the component '{}' no longer exists or is no longer shared with this account",
                c.component_arn
            ))
        })?;
        let component: Component = decode_row(&row)?;
        components.push(BuildComponent {
            arn: row.arn.clone(),
            name: component.name,
            data: component.data,
            parameters: c
                .parameters
                .iter()
                .map(|p| (p.name.clone(), p.value.join(",")))
                .collect(),
        });
    }
    let resolved_parent =
        crate::parents::resolved_parent(tx, scope.account_id, scope.region, recipe.parent_image())
            .map_err(CoreError::Internal)?;
    Ok(ResolvedRecipe {
        arn: recipe_row.arn,
        recipe,
        components,
        resolved_parent,
    })
}

/// An image [`create_image`] made: its build version ARN and its semantic version.
pub struct NewImage {
    pub arn: Arn,
    pub version: SemVer,
    /// Where its container image will be pushed (none for an AMI), for
    /// [`crate::containers::ContainerRegistries::check`].
    pub container_destinations: Vec<ContainerDestination>,
    /// Where the copy a scan looks at goes, and whether `ecrConfiguration` named it (see
    /// [`crate::containers::ContainerRegistries::check_scan_copy`]).
    pub scan_copy: Option<(ContainerDestination, bool)>,
}

/// Creates the image record of `order` (PENDING), queues its build, and answers its ARN.
pub fn create_image(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    order: ImageOrder,
) -> CoreResult<NewImage> {
    let ResolvedRecipe {
        arn: recipe_arn,
        recipe,
        components: build_components,
        resolved_parent,
    } = resolve_recipe(tx, caller, order.recipe_kind, &order.recipe_arn)?;
    let infra_row = resolve_required(
        tx,
        caller,
        &order.infrastructure_arn,
        "infrastructureConfigurationArn",
    )?;
    let infrastructure: InfrastructureConfiguration = decode_row(&infra_row)?;
    let distribution = match &order.distribution_arn {
        Some(arn) => Some(decode_row::<DistributionConfiguration>(&resolve_required(
            tx,
            caller,
            arn,
            "distributionConfigurationArn",
        )?)?),
        None => None,
    };
    let version = recipe.version();
    let recipe_name = &recipe.arn().name;
    let build = next_build(tx, caller.account_id, caller.region, recipe_name, &version)?;
    let arn = Arn::new(caller.region, caller.account_id, KIND, &recipe.arn().name)
        .with_version(version)
        .with_build(build);
    let arn_text = arn.to_string();
    let build_id = build_id_of(&arn_text);
    let image = Image {
        arn,
        name: recipe.name().to_string(),
        image_type: recipe.image_type(),
        build_type: order.build_type,
        status: ImageStatus::Pending,
        reason: None,
        history: vec![StatusChange {
            status: ImageStatus::Pending,
            reason: None,
            at: caller.now_millis,
        }],
        pipeline_arn: order.pipeline.as_ref().map(|(arn, _)| arn.clone()),
        recipe_arn,
        infrastructure_configuration_arn: infra_row.arn.clone(),
        distribution_configuration_arn: distribution.as_ref().map(|d| d.arn.to_string()),
        image_tests_enabled: order.tests_enabled,
        enhanced_image_metadata_enabled: order.enhanced_metadata,
        platform: recipe.platform().as_str().to_string(),
        os_version: None,
        output_resources: Vec::new(),
        owner: caller.account_id.to_string(),
        date_created: caller.now_millis,
        snapshot: Some(BuildSnapshot {
            recipe,
            infrastructure,
            distribution,
            components: build_components,
            image_tests_timeout_minutes: order.tests_timeout_minutes,
        }),
        build_id,
        pipeline_name: order.pipeline.map(|(_, name)| name),
        image_digest: None,
        packages: Vec::new(),
        kept_instance: None,
        resolved_parent,
        containers: Vec::new(),
        amis: Vec::new(),
        failure: None,
        resume_at: None,
        distributes: None,
        import: None,
        workflows: order.workflows,
        execution_role: order.execution_role,
        scan_state: order
            .scanning
            .as_ref()
            .filter(|s| s.enabled == Some(true))
            .map(|_| kiln_domain::resources::scan::ScanState {
                status: kiln_domain::resources::scan::ScanStatus::Pending,
                reason: None,
            }),
        scanning: order.scanning,
        lifecycle_execution_id: None,
        deprecation_time: None,
    };
    tx.put_tagged(&image, order.tags.as_ref())?;
    tx.enqueue_build(&arn_text, caller.now_millis)?;
    Ok(NewImage {
        container_destinations: image.container_destinations(),
        scan_copy: image.scan_copy_destination().map(|d| {
            let named = image.scanning.as_ref().is_some_and(|s| s.ecr_configured);
            (d, named)
        }),
        arn: image.arn,
        version,
    })
}

/// 16 hex digits that name a build's instances, logs and contents. Unique because a build
/// number whose contents AMIs still name is never used again ([`keep_build_number`]).
pub fn build_id_of(arn: &str) -> String {
    Sha256::digest(arn.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// DistributeImage: a new image that tracks the distribution of `source`'s contents with the
/// distribution configuration `distribution_arn`. It has `source`'s name, version, recipe and
/// build outputs, the next build number, and starts at the distribution stage (the worker
/// skips building it).
pub fn create_distribution_image(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    source: &Image,
    distribution_arn: &str,
    tags: Option<&BTreeMap<String, String>>,
) -> CoreResult<Arn> {
    let distribution: DistributionConfiguration = decode_row(&resolve_required(
        tx,
        caller,
        distribution_arn,
        "distributionConfigurationArn",
    )?)?;
    if distribution
        .distributions
        .iter()
        .all(|d| d.container_distribution_configuration.is_some())
    {
        return Err(CoreError::Invalid(format!(
            "distributionConfigurationArn: {distribution_arn} distributes container images only; DistributeImage distributes AMIs"
        )));
    }
    let snapshot = source.snapshot.clone().map(|s| BuildSnapshot {
        distribution: Some(distribution.clone()),
        ..s
    });
    let version = source
        .arn
        .version
        .as_deref()
        .and_then(|v| SemVer::parse(v).ok())
        .ok_or_else(|| CoreError::Internal(format!("{} has no version", source.arn)))?;
    let build = next_build(
        tx,
        &source.arn.account,
        &source.arn.region,
        &source.arn.name,
        &version,
    )?;
    let arn = source.arn.without_build().with_build(build);
    let arn_text = arn.to_string();
    let image = Image {
        arn: arn.clone(),
        build_type: BuildType::UserInitiated,
        status: ImageStatus::Pending,
        reason: None,
        history: vec![StatusChange {
            status: ImageStatus::Pending,
            reason: Some(format!("DistributeImage of {}", source.arn)),
            at: caller.now_millis,
        }],
        pipeline_arn: None,
        pipeline_name: None,
        distribution_configuration_arn: Some(distribution.arn.to_string()),
        output_resources: Vec::new(),
        date_created: caller.now_millis,
        snapshot,
        build_id: build_id_of(&arn_text),
        kept_instance: None,
        containers: Vec::new(),
        amis: Vec::new(),
        failure: None,
        resume_at: Some(ImageStatus::Distributing),
        distributes: Some(source.contents()),
        lifecycle_execution_id: None,
        deprecation_time: None,
        ..source.clone()
    };
    tx.put_tagged(&image, tags)?;
    tx.enqueue_build(&arn_text, caller.now_millis)?;
    Ok(arn)
}

fn build_mark_key(account: &str, region: &str, name: &str, version: &str) -> String {
    format!("kiln.build-mark/{account}/{region}/{name}/{version}")
}

/// Called when a deleted image goes while AMIs still name its contents: its build number is
/// not used again for that version, so a later build never gets its build id (and store tag).
pub fn keep_build_number(tx: &mut dyn Txn, image: &Arn) -> CoreResult<()> {
    let (Some(version), Some(build)) = (&image.version, image.build) else {
        return Ok(());
    };
    let key = build_mark_key(&image.account, &image.region, &image.name, version);
    let mark = tx
        .get_setting(&key)?
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    if build > mark {
        tx.put_setting(&key, &build.to_string())?;
    }
    Ok(())
}

/// The next build number of the images called `name` (an ARN name) at `version` in an account
/// and region: build numbers are never reused while an image of the version exists, nor while
/// AMIs name a deleted one's contents ([`keep_build_number`]).
pub(crate) fn next_build(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    name: &str,
    version: &SemVer,
) -> CoreResult<u32> {
    let rows = tx.list_rows(&ListQuery {
        account: account.to_string(),
        region: region.to_string(),
        kind: KIND,
        name: Some(name.to_string()),
        after: None,
    })?;
    let version = version.to_string();
    let kept = tx
        .get_setting(&build_mark_key(account, region, name, &version))?
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    Ok(rows
        .iter()
        .filter(|r| r.version.as_deref() == Some(version.as_str()))
        .filter_map(|r| r.build)
        .max()
        .unwrap_or(0)
        .max(kept)
        + 1)
}

/// Creates and queues a build of `pipeline` (a manual run or a scheduled one) and marks it the
/// pipeline's last run; the caller stores the pipeline.
pub fn start_pipeline_build(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    pipeline: &mut ImagePipeline,
    build_type: BuildType,
    tags: Option<BTreeMap<String, String>>,
) -> CoreResult<NewImage> {
    let d = &pipeline.definition;
    let image = create_image(
        tx,
        caller,
        ImageOrder {
            recipe_kind: d.recipe.kind,
            recipe_arn: d.recipe.arn.clone(),
            infrastructure_arn: d.infrastructure_configuration_arn.clone(),
            distribution_arn: d.distribution_configuration_arn.clone(),
            tests_enabled: d.image_tests.enabled,
            tests_timeout_minutes: d.image_tests.timeout_minutes,
            enhanced_metadata: d.enhanced_image_metadata_enabled,
            build_type,
            pipeline: Some((pipeline.arn.to_string(), pipeline.name.clone())),
            tags,
            workflows: d.workflows.clone(),
            execution_role: d.execution_role.clone(),
            scanning: d.image_scanning.clone(),
        },
    )?;
    pipeline.date_last_run = Some(caller.now_millis);
    pipeline.last_run_status = Some(ImageStatus::Pending.as_str().to_string());
    Ok(image)
}

/// Keeps a pipeline's `lastRunStatus` in step with the image of its latest run, and counts
/// finished builds towards auto-disable (which may disable the pipeline).
pub fn sync_pipeline_status(tx: &mut dyn Txn, image: &Image, now: i64) -> CoreResult<()> {
    let Some(pipeline_arn) = &image.pipeline_arn else {
        return Ok(());
    };
    let Some(mut pipeline) = tx.get::<ImagePipeline>(pipeline_arn)? else {
        return Ok(()); // deleted since; its images live on
    };
    let latest = pipeline
        .date_last_run
        .is_none_or(|t| t <= image.date_created);
    if !latest && !image.status.is_final() {
        return Ok(()); // a later run is the last one, and this one is not over
    }
    if latest {
        pipeline.last_run_status = Some(image.status.as_str().to_string());
    }
    if image.status.is_final() {
        let image_arn = image.arn.to_string();
        crate::scheduled::count_build_end(
            tx,
            &mut pipeline,
            image.status,
            image.build_type,
            Some(&image_arn),
            now,
        )?;
    }
    tx.put(&pipeline)?;
    Ok(())
}

/// Moves the image `arn` to `status` (with `reason`), after `edit` changed its record, if the
/// state machine allows it, and keeps its pipeline's last-run fields in step: every status
/// change of a build, by its worker or by whoever ends the build of a lost worker. `false`
/// when the move was refused (the image ended meanwhile: cancelled, failed, deleted) or the
/// image is gone; a refused move drops the edit with the record.
pub fn move_image(
    tx: &mut dyn Txn,
    arn: &str,
    status: ImageStatus,
    reason: Option<String>,
    now: i64,
    edit: impl FnOnce(&mut Image),
) -> Result<bool, kiln_store::StoreError> {
    let Some(mut image) = tx.get::<Image>(arn)? else {
        return Ok(false);
    };
    edit(&mut image);
    if image.advance(status, reason, now).is_err() {
        return Ok(false);
    }
    crate::scans::abandon_if_unfinished(&mut image);
    tx.put(&image)?;
    if let Err(e) = sync_pipeline_status(tx, &image, now) {
        tracing::warn!(arn, error = %e, "updating the pipeline's last run status failed");
    }
    Ok(true)
}
