//! One claimed queue entry: a build to run, or a deleted image to remove.
//!
//! Every status change is a write transaction that re-reads the image and applies the move
//! only if the state machine allows it. That is what makes cancellation safe: once
//! CancelImageCreation has moved the image to CANCELLED, the build's later moves (TESTING,
//! AVAILABLE, FAILED) are refused and the image stays CANCELLED whatever the build was doing.

use crate::logs::BuildLog;
use crate::Shared;
use kiln_build::container::ContainerSpec;
use kiln_build::{BuildError, BuildRequest, Stage};
use kiln_core::images::move_image;
use kiln_domain::resources::image::{
    BuildSnapshot, DistributionFailure, FailureContext, Image, ImageStatus, ImageType, Package,
    RecipeSnapshot,
};
use kiln_instance::{for_instance_types, Instance};
use kiln_store::TxnExt;
use kiln_toe::engine::{EngineConfig, SourceDocument};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a running build checks whether it was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// The reason of builds a stopping or crashed server left unfinished.
pub const INTERRUPTED: &str = "interrupted: kiln stopped while the image was being built";

/// The store tag of an image Kiln built.
pub fn store_tag(build_id: &str) -> String {
    format!("kiln-{build_id}")
}

/// Reads an image record.
pub fn read_image(shared: &Shared, arn: &str) -> Option<Image> {
    match shared.core.store.read(|tx| tx.get::<Image>(arn)) {
        Ok(Ok(image)) => image,
        Ok(Err(e)) | Err(e) => {
            tracing::error!(arn, error = %e, "reading an image failed");
            None
        }
    }
}

/// Moves the image to `status` (with `reason`), after `edit` changed the record, if the state
/// machine allows it; keeps the pipeline's last run status in step. `false` when the move was
/// refused (the image was cancelled or deleted meanwhile).
pub fn transition(
    shared: &Shared,
    arn: &str,
    status: ImageStatus,
    reason: Option<String>,
    edit: impl FnOnce(&mut Image),
) -> bool {
    let now = shared.core.clock.now_millis();
    let result = shared
        .core
        .store
        .write(|tx| move_image(tx, arn, status, reason, now, edit));
    match result {
        Ok(Ok(moved)) => moved,
        Ok(Err(e)) | Err(e) => {
            tracing::error!(arn, error = %e, "updating an image failed");
            false
        }
    }
}

fn finish(shared: &Shared, arn: &str) {
    if let Err(e) = shared.core.store.write(|tx| tx.finish_build(arn)) {
        tracing::error!(arn, error = %e, "removing a build from the queue failed");
    }
}

/// Ends a build that could not finish normally: FAILED with `reason` (unless it already
/// ended), and out of the queue.
pub fn abandon(shared: &Shared, arn: &str, reason: &str) {
    transition(
        shared,
        arn,
        ImageStatus::Failed,
        Some(reason.to_string()),
        |_| {},
    );
    finish(shared, arn);
}

/// Runs what the queue entry `arn` asks for, and removes it from the queue.
pub fn process(shared: &Arc<Shared>, arn: &str) {
    match read_image(shared, arn) {
        Some(image) if image.status == ImageStatus::Deleted => remove(shared, &image),
        // ImportDiskImage and ImportVmImage: a disk to import, not a recipe to build.
        Some(image) if image.status == ImageStatus::Pending && image.import.is_some() => {
            crate::imports::run(shared, image)
        }
        Some(image) if image.status == ImageStatus::Pending => {
            if !build(shared, image) {
                return; // suspended: it stays queued for the next start
            }
        }
        // A build a restart found waiting (see `recover`): its workflows go on.
        Some(image) if image.status.in_progress() => {
            if crate::workflows::resume::resume(shared, image)
                == crate::workflows::Outcome::Suspended
            {
                return;
            }
        }
        // Gone: what AMIs kept of it may be left, once the last of them was deregistered.
        None => sweep(shared, arn),
        // Cancelled before it started, or while it waited to go on after a restart: its
        // executions (if it has any) end with it.
        Some(image) => end_runs(shared, &image),
    }
    finish(shared, arn);
}

/// Ends the unfinished workflow executions of an image that ended without its build running
/// them: CANCELLED (PENDING ones SKIPPED).
fn end_runs(shared: &Shared, image: &Image) {
    let now = shared.core.clock.now_millis();
    let ended = shared.core.store.write(|tx| {
        for mut run in kiln_core::workflow_runs::of_image(tx, &image.arn)? {
            let exec = &mut run.execution;
            let changed = match exec.status {
                kiln_workflow::execution::ExecutionStatus::Pending => exec
                    .skip("the image creation ended before the workflow ran", now)
                    .is_ok(),
                _ => exec.cancel(now).is_ok(),
            };
            if changed {
                kiln_core::workflow_runs::put(tx, &run)?;
            }
        }
        Ok::<_, kiln_core::error::CoreError>(())
    });
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(arn = %image.arn, error = %e, "ending workflow executions"),
        Err(e) => tracing::warn!(arn = %image.arn, error = %e, "ending workflow executions"),
    }
}

/// The contents of a deleted image that AMIs kept, once no AMI names them (the last was
/// deregistered): from the store and the shared registry.
fn sweep(shared: &Shared, arn: &str) {
    let Ok(parsed) = kiln_domain::arn::Arn::parse(arn) else {
        return;
    };
    let build_id = kiln_core::images::build_id_of(arn);
    let named = shared
        .core
        .store
        .read(|tx| kiln_core::amis::naming_build(tx, &build_id));
    if !matches!(named, Ok(Ok(ref ids)) if ids.is_empty()) {
        return;
    }
    match shared.store.delete(&store_tag(&build_id)) {
        Ok(()) => tracing::info!(
            arn,
            "removed the contents of a deleted image: its last AMI was deregistered"
        ),
        Err(kiln_image::Error::UnknownTag(_)) => {}
        Err(e) => tracing::warn!(arn, error = %e, "removing a deleted image's contents failed"),
    }
    crate::registry::remove_build(shared, &parsed, &build_id);
    collect(shared, arn);
}

/// A deleted image: its kept instance, its store entry, its logs, then its record.
pub(crate) fn remove(shared: &Shared, image: &Image) {
    let arn = image.arn.to_string();
    if let Some(id) = &image.kept_instance {
        let dir = shared.config.instances_dir();
        match Instance::attach(shared.sys.clone(), &dir, id).map(Instance::terminate) {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(arn, instance = %id, error = %e, "removing the kept instance failed")
            }
        }
    }
    // DeleteImage does not deregister the AMIs distributed from the image (as on AWS): while
    // one names the build, its contents stay in the store and the shared registry.
    let amis = shared.core.store.read(|tx| {
        let named = kiln_core::amis::naming_build(tx, &image.build_id)?;
        let mut made_left = false;
        for a in &image.amis {
            made_left |= kiln_core::amis::find(tx, &a.region, &a.image_id)?.is_some();
        }
        Ok::<_, kiln_core::error::CoreError>((named, made_left))
    });
    let (named_by_amis, made_amis_left) = match amis {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(arn, error = %e, "reading AMIs failed; the image's contents stay");
            (vec!["?".to_string()], true)
        }
        Err(e) => {
            tracing::warn!(arn, error = %e, "reading AMIs failed; the image's contents stay");
            (vec!["?".to_string()], true)
        }
    };
    if image.image_digest.is_some() && named_by_amis.is_empty() {
        match shared.store.delete(&store_tag(&image.build_id)) {
            Ok(()) | Err(kiln_image::Error::UnknownTag(_)) => {}
            Err(e) => tracing::warn!(arn, error = %e, "removing the image from the store failed"),
        }
        crate::registry::remove(shared, image);
    } else if !named_by_amis.is_empty() {
        tracing::info!(arn, amis = ?named_by_amis, "the image's contents stay for the AMIs distributed from it");
    }
    // Layers no other image (and no running build: they pin what they use) needs go now,
    // before the record: when the record is gone, so are the bytes. Layers shared with other
    // images stay. A crash from here on leaves the DELETED record, and the removal runs again.
    collect(shared, &arn);
    let logs = shared.config.logs_dir().join(&image.build_id);
    if !image.build_id.is_empty() {
        let _ = std::fs::remove_dir_all(logs);
    }
    let build_id = image.build_id.as_str();
    // Its build number is not used again while AMIs it made or whose contents it has remain:
    // a new build with the same number would get the same build id, AMI id and store tag.
    let keep_number = !named_by_amis.is_empty() || made_amis_left;
    let deleted = shared.core.store.write(|tx| {
        if !build_id.is_empty() {
            tx.delete_build_log(build_id)?;
        }
        if keep_number {
            kiln_core::images::keep_build_number(tx, &image.arn).map_err(|e| match e {
                kiln_core::error::CoreError::Storage(e) => e,
                other => kiln_store::StoreError::Corrupt {
                    arn: arn.clone(),
                    message: other.to_string(),
                },
            })?;
        }
        tx.delete_row(&arn)
    });
    if let Err(e) = deleted.and_then(|r| r) {
        tracing::error!(arn, error = %e, "removing a deleted image's record failed");
    }
}

/// Garbage-collects the image store after `arn`'s contents were removed (see
/// [`kiln_image::ImageStore::gc`]). A failure is logged; the next removal or start-up collects.
pub(crate) fn collect(shared: &Shared, arn: &str) {
    match shared.store.gc(Duration::ZERO) {
        Ok(report) => tracing::info!(
            arn,
            blobs = report.blobs.len(),
            unpacked = report.unpacked.len(),
            bytes = report.bytes + report.unpacked_bytes,
            "collected the image store"
        ),
        Err(e) => tracing::warn!(arn, error = %e, "collecting unused layers failed"),
    }
}

/// The build log of `image` (on a shared database also written to the database).
pub(crate) fn open_log(shared: &Shared, image: &Image) -> std::io::Result<BuildLog> {
    let arn = image.arn.to_string();
    if image.resume_at.is_some() && shared.core.store.is_shared() {
        // A retried build's database log starts again (the local file keeps appending).
        if let Err(e) = shared
            .core
            .store
            .write(|tx| tx.delete_build_log(&image.build_id))
        {
            tracing::warn!(arn, error = %e, "clearing a retried build's database log failed");
        }
    }
    BuildLog::create(
        &shared.config.logs_dir(),
        &image.build_id,
        &arn,
        shared.core.clock.clone(),
    )
    .and_then(|log| match shared.core.store.is_shared() {
        true => log.with_database(shared.core.clone(), &image.build_id),
        false => Ok(log),
    })
}

/// Runs the build of a PENDING image as workflow executions (see [`crate::workflows`]).
/// `false` when it is suspended: it stays queued, to go on after a restart.
fn build(shared: &Arc<Shared>, image: Image) -> bool {
    let arn = image.arn.to_string();
    let log = match open_log(shared, &image) {
        Ok(log) => log,
        Err(e) => {
            let reason = format!("build stage failed: creating the build log: {e}");
            transition(shared, &arn, ImageStatus::Failed, Some(reason), |_| {});
            return true;
        }
    };
    if image.resume_at == Some(ImageStatus::Distributing) {
        resume_distribution(shared, &image, &log);
        return true;
    }
    if !transition(shared, &arn, ImageStatus::Building, None, |_| {}) {
        return true;
    }
    log.event(&format!("image {arn}: BUILDING"));
    crate::workflows::start(shared, image, &log) == crate::workflows::Outcome::Done
}

pub(crate) fn end_cancelled(shared: &Shared, arn: &str, log: &BuildLog, interrupted: bool) {
    if interrupted {
        log.event(&format!("FAILED: {INTERRUPTED}"));
        transition(
            shared,
            arn,
            ImageStatus::Failed,
            Some(INTERRUPTED.to_string()),
            |_| {},
        );
    } else {
        match read_image(shared, arn) {
            Some(image) if image.status == ImageStatus::Failed => log.event(&format!(
                "FAILED: {}",
                image
                    .reason
                    .as_deref()
                    .unwrap_or("ended by another Kiln process")
            )),
            _ => log.event("CANCELLED: the build was stopped"),
        }
    }
}

/// What a build's workflows need, made when it starts: the build request (components,
/// limits, the store tag...), the component engine's settings and the resolved parent.
pub(crate) fn prepare(
    shared: &Arc<Shared>,
    image: &Image,
    log: &BuildLog,
    cancel: &Arc<AtomicBool>,
) -> Result<(BuildRequest, EngineConfig, crate::parent::Parent), String> {
    let snapshot = image
        .snapshot
        .as_ref()
        .ok_or_else(|| "the image has no build snapshot".to_string())?;
    let infrastructure = &snapshot.infrastructure;
    let limits = for_instance_types(&infrastructure.instance_types)
        .map_err(|e| format!("infrastructure configuration: {e}"))?;
    log.event(&format!("parent image {}", snapshot.parent_image()));
    let parent = crate::parent::resolve(shared, image, snapshot.parent_image())
        .map_err(|e| format!("parent image {}: {e}", snapshot.parent_image()))?;
    let container = match container_spec(snapshot) {
        Ok(c) => c,
        Err(e) => {
            parent.release(shared);
            return Err(e.reason);
        }
    };
    let request = BuildRequest {
        container,
        build_id: image.build_id.clone(),
        parent: parent.image.clone(),
        components: snapshot
            .components
            .iter()
            .map(|c| SourceDocument {
                name: c.name.clone(),
                text: c.data.clone(),
                parameters: c.parameters.clone(),
            })
            .collect(),
        limits,
        network: crate::parent::network_allowed(infrastructure),
        // Tests are test workflows now: the build request never runs them itself.
        tests_enabled: false,
        enhanced_metadata: image.enhanced_image_metadata_enabled,
        tag: store_tag(&image.build_id),
        log_directory: shared.config.logs_dir().join(&image.build_id).join("toe"),
        instances_directory: shared.config.instances_dir(),
        keep_failed_instance: !infrastructure.terminate_instance_on_failure,
    };
    let engine = EngineConfig {
        actions: kiln_toe::actions::ActionConfig {
            network: crate::parent::build_network_access(shared, infrastructure),
            ..Default::default()
        },
        cancel: Some(cancel.clone()),
        ssm_parameters: ssm_parameters(shared, image, snapshot),
        working_directory: snapshot.working_directory().map(str::to_string),
        clock: Some(engine_clock(shared.core.clock.clone())),
        ..EngineConfig::default()
    };
    Ok((request, engine, parent))
}

/// The SSM parameters the build's documents read (`{{ aws:ssm:resolve(name) }}`), from the
/// image's account and Region: distribution writes AMI ids there. A parameter that does not
/// exist is left out, so the step that reads it fails naming it.
fn ssm_parameters(
    shared: &Shared,
    image: &Image,
    snapshot: &BuildSnapshot,
) -> std::collections::HashMap<String, String> {
    let mut names: Vec<String> = Vec::new();
    for c in &snapshot.components {
        names.extend(kiln_toe::variables::ssm_parameter_names(&c.data));
    }
    if let RecipeSnapshot::Container(r) = &snapshot.recipe {
        names.extend(kiln_toe::variables::ssm_parameter_names(
            &r.dockerfile_template_data,
        ));
    }
    let (account, region) = (&image.arn.account, &image.arn.region);
    let read = shared.core.store.read(|tx| {
        let mut values = std::collections::HashMap::new();
        for name in &names {
            if let Some(p) = kiln_core::amis::get_parameter(tx, account, region, name)? {
                values.insert(name.clone(), p.value);
            }
        }
        Ok::<_, kiln_core::error::CoreError>(values)
    });
    match read {
        Ok(Ok(values)) => values,
        Ok(Err(e)) => {
            tracing::warn!(arn = %image.arn, error = %e, "reading SSM parameters failed");
            Default::default()
        }
        Err(e) => {
            tracing::warn!(arn = %image.arn, error = %e, "reading SSM parameters failed");
            Default::default()
        }
    }
}

/// A container recipe's Dockerfile, its template expanded: what the build runs. The text the
/// parent image is written as in the recipe stands for it in `FROM`.
fn container_spec(snapshot: &BuildSnapshot) -> Result<Option<ContainerSpec>, BuildError> {
    let RecipeSnapshot::Container(recipe) = &snapshot.recipe else {
        return Ok(None);
    };
    let parent_reference = recipe.parent_image.clone();
    let dockerfile = kiln_dockerfile::template::expand_template(
        &recipe.dockerfile_template_data,
        &parent_reference,
    )
    .and_then(|d| kiln_dockerfile::validate::validate(&d).map(|()| d))
    .map_err(|e| BuildError {
        stage: Stage::Build,
        reason: format!("the recipe's Dockerfile template: {e}"),
        kept_instance: None,
    })?;
    Ok(Some(ContainerSpec {
        dockerfile,
        parent_reference,
    }))
}

/// The service clock as the component engine reads time.
fn engine_clock(clock: Arc<dyn kiln_core::clock::Clock>) -> kiln_toe::engine::Clock {
    Arc::new(move || {
        chrono::DateTime::from_timestamp_millis(clock.now_millis()).unwrap_or_default()
    })
}

/// Until the build ends: when the image is no longer this build's (cancelled, deleted, or
/// FAILED because this worker's lease was taken) or the worker stops, raise the engine's cancel
/// flag and kill every process of the build's instances (every instance named after the build).
pub(crate) fn watch_for_cancel(
    shared: &Shared,
    image: &Image,
    cancel: &AtomicBool,
    finished: std::sync::mpsc::Receiver<()>,
) {
    let arn = image.arn.to_string();
    let prefix = format!("{}-", image.build_id);
    // The build dropping its sender ends the wait (and the watch) at once.
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(CANCEL_POLL) {
        if !cancel.load(Ordering::SeqCst) {
            // Cancelled, deleted, or FAILED by another process that found this worker's
            // lease expired (it was cut off from the database): no longer this build's.
            let status = read_image(shared, &arn).map(|i| i.status);
            let taken = status.is_none_or(|s| !s.in_progress());
            if taken || shared.stopping() {
                cancel.store(true, Ordering::SeqCst);
            }
        }
        if cancel.load(Ordering::SeqCst) {
            let dir = shared.config.instances_dir();
            let ids: Vec<String> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|name| name.starts_with(&prefix))
                        .collect()
                })
                .unwrap_or_default();
            for id in ids {
                let cgroups = shared.sys.cgroup_paths(&id);
                if let Err(e) = shared.sys.stop_processes(&dir.join(&id), &cgroups) {
                    tracing::debug!(arn, error = %e, "killing a cancelled build's processes");
                }
            }
        }
    }
}

/// After the test stage: DISTRIBUTING (with the build's digest, OS and packages recorded, so
/// that a failed distribution keeps what was built for RetryImage); the image as recorded, or
/// `None` when the move was refused (cancelled or deleted meanwhile). `osVersion` is what the
/// built root says of itself (its os-release, with enhanced metadata) or else its parent's, as
/// an Image Builder image always has one. An image already DISTRIBUTING (a build going on
/// after a restart) stays as it is.
pub(crate) fn enter_distributing(
    shared: &Shared,
    image: &Image,
    built: Option<&kiln_image::ImageRef>,
    metadata: Option<kiln_build::metadata::Metadata>,
    parent_os: Option<String>,
) -> Option<Image> {
    let arn = image.arn.to_string();
    if let Some(current) = read_image(shared, &arn) {
        if current.status == ImageStatus::Distributing {
            return Some(current);
        }
    }
    let os_version = metadata
        .as_ref()
        .and_then(|m| m.os.as_ref())
        .map(|os| os.os_version())
        .or(parent_os);
    let packages: Vec<Package> = metadata
        .map(|m| {
            m.packages
                .into_iter()
                .map(|p| Package {
                    name: p.name,
                    version: p.version,
                })
                .collect()
        })
        .unwrap_or_default();
    let digest = built.map(|b| b.digest.clone());
    let mut recorded = None;
    let moved = transition(shared, &arn, ImageStatus::Distributing, None, |i| {
        i.image_digest = digest;
        i.os_version = os_version;
        i.packages = packages;
        recorded = Some(i.clone());
    });
    recorded.filter(|_| moved)
}

/// What a DISTRIBUTION workflow's DistributeImage made.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    pub containers: Vec<kiln_domain::resources::image::ContainerOutput>,
    pub amis: Vec<kiln_domain::resources::ami::AmiOutput>,
}

/// The distribution itself, for a DISTRIBUTION workflow's DistributeImage: a container image
/// to its registries, any image to the shared registry, an AMI-type image's AMIs (with their
/// post-copy configurations). A failure names the Regions; the AMIs made stay recorded.
/// The AMIs of an AMI-type image (none for a container image), made while the image is still
/// distributing and Kiln is not stopping.
fn make_amis(
    shared: &Shared,
    image: &Image,
    built: &kiln_image::ImageRef,
    log: &BuildLog,
) -> crate::amis::Distributed {
    let arn = image.arn.to_string();
    let still_ours = || {
        read_image(shared, &arn).is_some_and(|i| {
            matches!(
                i.status,
                ImageStatus::Distributing | ImageStatus::Integrating
            )
        }) && !shared.stopping()
    };
    match image.image_type {
        ImageType::Ami => crate::amis::distribute(
            shared,
            image,
            &built.digest,
            image.os_version.as_deref(),
            log,
            &still_ours,
        ),
        ImageType::Docker => crate::amis::Distributed::default(),
    }
}

pub(crate) fn distribute_outputs(
    shared: &Shared,
    image: &Image,
    built: &kiln_image::ImageRef,
    log: &BuildLog,
) -> Result<Delivered, String> {
    let arn = image.arn.to_string();
    log.event("stage distribute started");
    let containers = crate::containers::push(shared, image, built, log)
        .and_then(|containers| crate::registry::push(shared, image, built).map(|_| containers))?;
    let distributed = make_amis(shared, image, built, log);
    if distributed.cancelled {
        record_amis(shared, &arn, distributed.amis);
        return Err("the distribution was stopped (the AMIs made so far stay)".into());
    }
    if let Some(failure) = distributed.failure() {
        record_amis(shared, &arn, distributed.amis);
        return Err(failure.error_message);
    }
    Ok(Delivered {
        containers,
        amis: distributed.amis,
    })
}

/// AVAILABLE with the outputs of a distribution (see [`deliver`]).
pub(crate) fn finish_available(
    shared: &Shared,
    image: &Image,
    built: &kiln_image::ImageRef,
    delivered: Delivered,
    log: &BuildLog,
) {
    let arn = image.arn.to_string();
    // A container image's URI is the store itself, an OCI layout that skopeo, umoci and
    // another recipe's `parentImage` (oci:...) can read; an AMI-type image answers to an id.
    let output = match image.image_type {
        ImageType::Docker => format!(
            "oci:{}:{}",
            shared.config.images_dir().display(),
            store_tag(&image.build_id)
        ),
        ImageType::Ami => image.ami_id(),
    };
    let moved = transition(shared, &arn, ImageStatus::Available, None, |i| {
        i.output_resources = vec![output.clone()];
        i.containers = delivered.containers;
        i.amis = delivered.amis;
        i.failure = None;
        i.resume_at = None;
    });
    if moved {
        log.event(&format!("AVAILABLE: {output} ({})", built.digest));
    } else {
        // Cancelled while it was pushed: no machine will ask the registry for it. Container
        // images pushed to --ecr-registry and AMIs stay, as AWS keeps what a cancelled build
        // made.
        crate::registry::remove(shared, image);
        log.event("CANCELLED: the build was stopped");
    }
}

/// The distribution stage of an image in DISTRIBUTING whose build is `built` in the store: a
/// container image to its registries, any image to the shared registry, an AMI-type image's
/// AMIs; then AVAILABLE with the outputs, or FAILED with the Regions that failed. RetryImage
/// and DistributeImage start here.
pub(crate) fn deliver(
    shared: &Shared,
    image: &Image,
    built: &kiln_image::ImageRef,
    log: &BuildLog,
) {
    let arn = image.arn.to_string();
    log.event("stage distribute started");
    let fail = |reason: String, failure: Option<FailureContext>| {
        log.event(&format!("FAILED: {reason}"));
        transition(shared, &arn, ImageStatus::Failed, Some(reason), |i| {
            i.failure = failure;
            i.resume_at = Some(ImageStatus::Distributing);
        });
    };
    // A container image goes to its registries (`--ecr-registry`); other machines build on and
    // export an image only once it is in the shared registry.
    let pushed = crate::containers::push(shared, image, built, log)
        .and_then(|containers| crate::registry::push(shared, image, built).map(|_| containers));
    let containers = match pushed {
        Ok(containers) => containers,
        Err(e) => {
            let failure = FailureContext {
                image_status: ImageStatus::Distributing,
                failed_step: Some("DistributeImage".to_string()),
                distribution: Some(DistributionFailure {
                    error_message: e.clone(),
                    region_failures: Vec::new(),
                }),
                workflow_execution_id: None,
                workflow_arn: None,
                step_execution_id: None,
                component: None,
            };
            return fail(format!("distribute stage failed: {e}"), Some(failure));
        }
    };
    let distributed = make_amis(shared, image, built, log);
    if distributed.cancelled {
        log.event(if shared.stopping() {
            "stopped during distribution: kiln is stopping (the AMIs made so far stay; RetryImage distributes the rest)"
        } else {
            "CANCELLED: the build was stopped during distribution (the AMIs made so far stay)"
        });
        record_amis(shared, &arn, distributed.amis);
        return;
    }
    if let Some(failure) = distributed.failure() {
        let status = read_image(shared, &arn).map_or(ImageStatus::Distributing, |i| i.status);
        let reason = format!("distribute stage failed: {}", failure.error_message);
        let context = FailureContext {
            image_status: status,
            failed_step: Some("DistributeImage".to_string()),
            distribution: Some(failure),
            workflow_execution_id: None,
            workflow_arn: None,
            step_execution_id: None,
            component: None,
        };
        let amis = distributed.amis;
        log.event(&format!("FAILED: {reason}"));
        transition(shared, &arn, ImageStatus::Failed, Some(reason), |i| {
            i.failure = Some(context);
            i.resume_at = Some(ImageStatus::Distributing);
            i.amis = amis;
        });
        return;
    }
    finish_available(
        shared,
        image,
        built,
        Delivered {
            containers,
            amis: distributed.amis,
        },
        log,
    );
}

/// RetryImage of an image whose distribution failed, and DistributeImage: the build's contents
/// are in the store (or the shared registry), so only the distribution stage runs.
fn resume_distribution(shared: &Shared, image: &Image, log: &BuildLog) {
    let arn = image.arn.to_string();
    let contents = image.contents();
    let built = kiln_domain::arn::Arn::parse(&contents.image)
        .map_err(|e| e.to_string())
        .and_then(|source| {
            crate::registry::local_or_pulled_build(shared, &source, &contents.build_id)
        });
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            let reason = format!(
                "distribute stage failed: the contents of {} are gone ({e}); create the image again",
                contents.image
            );
            log.event(&format!("FAILED: {reason}"));
            transition(shared, &arn, ImageStatus::Failed, Some(reason), |i| {
                i.resume_at = None;
            });
            return;
        }
    };
    log.event(&format!(
        "image {arn}: distributing {} again",
        contents.image
    ));
    let mut current = None;
    let moved = transition(shared, &arn, ImageStatus::Distributing, None, |i| {
        current = Some(i.clone());
    });
    if let (true, Some(image)) = (moved, current) {
        deliver(shared, &image, &built, log);
    }
}

/// Keeps the AMIs a cancelled distribution made in the image's outputs.
fn record_amis(shared: &Shared, arn: &str, amis: Vec<kiln_domain::resources::ami::AmiOutput>) {
    let written = shared.core.store.write(|tx| {
        let Some(mut image) = tx.get::<Image>(arn)? else {
            return Ok(());
        };
        image.amis = amis;
        image.resume_at = Some(ImageStatus::Distributing);
        tx.put(&image)
    });
    if let Err(e) = written.and_then(|r| r) {
        tracing::error!(arn, error = %e, "recording a cancelled image's AMIs failed");
    }
}

/// Drops the store entry of a build that was cancelled after it committed its image.
pub(crate) fn discard(shared: &Shared, image: &Image) {
    let _ = shared.store.delete(&store_tag(&image.build_id));
}
