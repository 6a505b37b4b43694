//! One claimed queue entry: a build to run, or a deleted image to remove.
//!
//! Every status change is a write transaction that re-reads the image and applies the move
//! only if the state machine allows it. That is what makes cancellation safe: once
//! CancelImageCreation has moved the image to CANCELLED, the build's later moves (TESTING,
//! AVAILABLE, FAILED) are refused and the image stays CANCELLED whatever the build was doing.

use crate::logs::BuildLog;
use crate::Shared;
use kiln_build::container::ContainerSpec;
use kiln_build::{BuildError, BuildRequest, Builder, Built, Stage, Stages};
use kiln_core::images::move_image;
use kiln_domain::resources::image::{
    BuildSnapshot, Image, ImageStatus, ImageType, Package, RecipeSnapshot,
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
        Some(image) if image.status == ImageStatus::Pending => build(shared, image),
        // Cancelled before it started, or gone.
        _ => {}
    }
    finish(shared, arn);
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
    if image.image_digest.is_some() {
        match shared.store.delete(&store_tag(&image.build_id)) {
            Ok(()) | Err(kiln_image::Error::UnknownTag(_)) => {}
            Err(e) => tracing::warn!(arn, error = %e, "removing the image from the store failed"),
        }
    }
    if image.image_digest.is_some() {
        crate::registry::remove(shared, image);
    }
    let logs = shared.config.logs_dir().join(&image.build_id);
    if !image.build_id.is_empty() {
        let _ = std::fs::remove_dir_all(logs);
    }
    let build_id = image.build_id.as_str();
    let deleted = shared.core.store.write(|tx| {
        if !build_id.is_empty() {
            tx.delete_build_log(build_id)?;
        }
        tx.delete_row(&arn)
    });
    if let Err(e) = deleted.and_then(|r| r) {
        tracing::error!(arn, error = %e, "removing a deleted image's record failed");
    }
    // Layers no other image uses go now; the age guard keeps those of builds under way.
    if let Err(e) = shared.store.gc(Duration::from_secs(600)) {
        tracing::warn!(error = %e, "collecting unused layers failed");
    }
}

/// Moves the image to TESTING when the test stage starts, and logs stage changes.
struct StageTracker<'a> {
    shared: &'a Shared,
    arn: &'a str,
    log: &'a BuildLog,
}

impl Stages for StageTracker<'_> {
    fn entered(&self, stage: Stage) {
        self.log.event(&format!("stage {} started", stage.name()));
        if stage == Stage::Test {
            transition(self.shared, self.arn, ImageStatus::Testing, None, |_| {});
        }
    }
}

/// The build log of `image` (on a shared database also written to the database).
pub(crate) fn open_log(shared: &Shared, image: &Image) -> std::io::Result<BuildLog> {
    let arn = image.arn.to_string();
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

fn build(shared: &Arc<Shared>, image: Image) {
    let arn = image.arn.to_string();
    let log = match open_log(shared, &image) {
        Ok(log) => log,
        Err(e) => {
            let reason = format!("build stage failed: creating the build log: {e}");
            transition(shared, &arn, ImageStatus::Failed, Some(reason), |_| {});
            return;
        }
    };
    if !transition(shared, &arn, ImageStatus::Building, None, |_| {}) {
        return;
    }
    log.event(&format!("image {arn}: BUILDING"));
    let cancel = Arc::new(AtomicBool::new(false));
    let outcome = run_build(shared, &image, &log, &cancel);

    let interrupted = shared.stopping() && cancel.load(Ordering::SeqCst);
    match outcome {
        Ok((built, parent_os)) if !cancel.load(Ordering::SeqCst) => {
            distribute(shared, &image, built, parent_os, &log)
        }
        Ok(_) => {
            // Cancelled after the last step: the image is not kept.
            discard(shared, &image);
            end_cancelled(shared, &arn, &log, interrupted);
        }
        Err(_) if cancel.load(Ordering::SeqCst) => end_cancelled(shared, &arn, &log, interrupted),
        Err(e) => {
            let mut reason = e.to_string();
            if let Some(id) = &e.kept_instance {
                reason.push_str(&format!(
                    " (the {} instance {id} was kept for inspection: kiln instance shell {id})",
                    e.stage.name()
                ));
            }
            log.event(&format!("FAILED: {reason}"));
            let kept = e.kept_instance.clone();
            transition(shared, &arn, ImageStatus::Failed, Some(reason), |i| {
                i.kept_instance = kept;
            });
        }
    }
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

/// Everything between BUILDING and the build engine's answer.
fn run_build(
    shared: &Arc<Shared>,
    image: &Image,
    log: &BuildLog,
    cancel: &Arc<AtomicBool>,
) -> Result<(Built, Option<String>), BuildError> {
    let build_failed = |reason: String| BuildError {
        stage: Stage::Build,
        reason,
        kept_instance: None,
    };
    let snapshot = image
        .snapshot
        .as_ref()
        .ok_or_else(|| build_failed("the image has no build snapshot".into()))?;
    let infrastructure = &snapshot.infrastructure;
    let limits = for_instance_types(&infrastructure.instance_types)
        .map_err(|e| build_failed(format!("infrastructure configuration: {e}")))?;
    log.event(&format!("parent image {}", snapshot.parent_image()));
    let parent = crate::parent::resolve(shared, image, snapshot.parent_image())
        .map_err(|e| build_failed(format!("parent image {}: {e}", snapshot.parent_image())))?;
    let container = container_spec(snapshot)?;
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
        tests_enabled: image.image_tests_enabled,
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
        working_directory: snapshot.working_directory().map(str::to_string),
        clock: Some(engine_clock(shared.core.clock.clone())),
        ..EngineConfig::default()
    };
    let tracker = StageTracker {
        shared,
        arn: &image.arn.to_string(),
        log,
    };
    let builder = Builder {
        store: &shared.store,
        sys: shared.sys.clone(),
        engine: &engine,
        observer: log,
        stages: &tracker,
    };
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let result = std::thread::scope(|scope| {
        scope.spawn(|| watch_for_cancel(shared, image, &request, cancel, finished));
        let result = builder.build_image(&request);
        drop(done); // wakes the watcher at once
        result
    });
    parent.release(shared);
    result.map(|built| (built, parent.os_version))
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
/// flag and kill every process of the build's instances.
fn watch_for_cancel(
    shared: &Shared,
    image: &Image,
    request: &BuildRequest,
    cancel: &AtomicBool,
    finished: std::sync::mpsc::Receiver<()>,
) {
    let arn = image.arn.to_string();
    let instances: Vec<_> = request
        .instance_roles()
        .iter()
        .map(|role| {
            let id = request.instance_id(role);
            (
                shared.config.instances_dir().join(&id),
                shared.sys.cgroup_paths(&id),
            )
        })
        .collect();
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
            for (dir, cgroups) in &instances {
                if let Err(e) = shared.sys.stop_processes(dir, cgroups) {
                    tracing::debug!(arn, error = %e, "killing a cancelled build's processes");
                }
            }
        }
    }
}

/// After the test stage: DISTRIBUTING, then AVAILABLE with the outputs. `osVersion` is what the
/// built root says of itself (its os-release, with enhanced metadata) or else its parent's, as an
/// Image Builder image always has one.
fn distribute(
    shared: &Shared,
    image: &Image,
    built: Built,
    parent_os: Option<String>,
    log: &BuildLog,
) {
    let arn = image.arn.to_string();
    if !transition(shared, &arn, ImageStatus::Distributing, None, |_| {}) {
        discard(shared, image);
        return;
    }
    log.event("stage distribute started");
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
    let metadata = built.metadata;
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
    // A container image goes to its registries (`--ecr-registry`); other machines build on and
    // export an image only once it is in the shared registry. It is AVAILABLE only then.
    let pushed = crate::containers::push(shared, image, &built.image, log).and_then(|containers| {
        crate::registry::push(shared, image, &built.image).map(|_| containers)
    });
    let containers = match pushed {
        Ok(containers) => containers,
        Err(e) => {
            let reason = format!("distribute stage failed: {e}");
            log.event(&format!("FAILED: {reason}"));
            discard(shared, image);
            transition(shared, &arn, ImageStatus::Failed, Some(reason), |_| {});
            return;
        }
    };
    let digest = built.image.digest.clone();
    let moved = transition(shared, &arn, ImageStatus::Available, None, |i| {
        i.output_resources = vec![output.clone()];
        i.containers = containers;
        i.os_version = os_version;
        i.packages = packages;
        i.image_digest = Some(digest);
    });
    if moved {
        log.event(&format!("AVAILABLE: {output} ({})", built.image.digest));
    } else {
        // Cancelled while it was pushed: no machine will ask the registry for it. Container
        // images pushed to --ecr-registry stay, as AWS keeps what a cancelled build made.
        discard(shared, image);
        crate::registry::remove(shared, image);
        log.event("CANCELLED: the build was stopped");
    }
}

/// Drops the store entry of a build that was cancelled after it committed its image.
pub(crate) fn discard(shared: &Shared, image: &Image) {
    let _ = shared.store.delete(&store_tag(&image.build_id));
}
