//! The build engine: turns a recipe into an image (the build worker calls it for each queued
//! build).
//!
//! [`build_image`] does what Image Builder's build and test stages do, on this machine:
//!
//! 1. **Build stage.** A build instance is launched from the parent image's layers (unpacked
//!    once per layer by the image store), and the component engine runs the `build` then
//!    `validate` phase of each component, component by component in recipe order (awstoe's
//!    per-document sequencing), inside it.
//! 2. **Snapshot.** The instance's upper directory becomes a new layer on top of the parent's
//!    layers, committed to the image store under the requested tag; the instance is then
//!    terminated.
//!    With enhanced metadata on, the OS and package list are read from the instance's root
//!    filesystem first ([`metadata`]).
//! 3. **Test stage** (when tests are enabled and a component has a `test` phase). A fresh
//!    instance of the new image runs the `test` phase of every component.
//!
//! A failing stage ends the build with a [`BuildError`] naming the stage and the engine's failure
//! message (phase, step and cause), and every instance is terminated whatever happens; the
//! caller maps the stages to image statuses through [`Stages`].

pub mod container;
pub mod metadata;
mod rpm;

use kiln_image::{CommitMeta, Compression, ImageRef, ImageStore};
use kiln_instance::{Instance, InstanceSpec, Limits, Privileged};
use kiln_toe::document::{self, Platform};
use kiln_toe::engine::{Engine, EngineConfig, Observer, Outcome, RunRequest, SourceDocument};
use kiln_toe::report::ExecutionReport;
use std::path::PathBuf;
use std::sync::Arc;

/// Which part of a build is running or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Build,
    Snapshot,
    Test,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Snapshot => "snapshot",
            Stage::Test => "test",
        }
    }
}

/// Told when a build enters a stage (the caller moves the image to BUILDING, TESTING, ...).
pub trait Stages: Send + Sync {
    fn entered(&self, _stage: Stage) {}
}

/// A [`Stages`] that ignores everything.
pub struct NoStages;
impl Stages for NoStages {}

#[derive(Debug, thiserror::Error)]
#[error("{} stage failed: {reason}", stage.name())]
pub struct BuildError {
    pub stage: Stage,
    pub reason: String,
    /// The id of the instance kept for inspection ([`BuildRequest::keep_failed_instance`]).
    pub kept_instance: Option<String>,
}

fn fail(stage: Stage) -> impl Fn(String) -> BuildError {
    move |reason| BuildError {
        stage,
        reason,
        kept_instance: None,
    }
}

/// What to build.
/// How long a scan waits for an image's `rpm` to list its packages, by default.
pub const INVENTORY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub struct BuildRequest {
    /// Names the instances and the logs (an image build version's id).
    pub build_id: String,
    pub parent: ImageRef,
    /// The recipe's components in recipe order, each with its parameters.
    pub components: Vec<SourceDocument>,
    pub limits: Limits,
    pub network: bool,
    pub tests_enabled: bool,
    /// Collect the OS and package list of the built root filesystem (enhancedImageMetadata).
    pub enhanced_metadata: bool,
    /// The store tag the new image gets.
    pub tag: String,
    /// Where each stage's `TOE_*` log folder goes.
    pub log_directory: PathBuf,
    /// Where instances live (`<data>/instances`).
    pub instances_directory: PathBuf,
    /// Keep the instance of a failed build or test stage for inspection
    /// (`terminateInstanceOnFailure: false`) instead of terminating it.
    pub keep_failed_instance: bool,
    /// A container recipe's Dockerfile: the build runs it (the components run where it says).
    pub container: Option<container::ContainerSpec>,
}

/// Why the phases of a recipe's components failed.
#[derive(Debug, Clone)]
pub struct PhaseError {
    pub message: String,
    /// Boxed: the error stays small on the success path.
    pub component: Option<Box<ComponentFailure>>,
}

/// The component step that failed a run (the image's `componentFailure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentFailure {
    /// The component's name as the engine ran it (its document's `name`).
    pub component: String,
    /// Its place among the request's components (the report lists them in run order).
    pub index: usize,
    pub phase: String,
    pub step: String,
    pub action: String,
    pub error: String,
}

impl ComponentFailure {
    /// The first failed step of the first failed phase of the first failed document.
    pub fn of(report: &ExecutionReport) -> Option<ComponentFailure> {
        use kiln_toe::report::Status;
        let (index, document) = report
            .documents
            .iter()
            .enumerate()
            .find(|(_, d)| d.status == Status::Failed)?;
        let phase = document
            .phases
            .iter()
            .find(|p| p.status == Status::Failed)?;
        let step = phase.steps.iter().find(|s| s.status == Status::Failed)?;
        Some(ComponentFailure {
            component: document.name.clone(),
            index,
            phase: phase.name.clone(),
            step: step.name.clone(),
            action: step.action.clone(),
            error: step
                .failure_message
                .clone()
                .or_else(|| phase.failure_message.clone())
                .unwrap_or_default(),
        })
    }
}

/// Whether any of `components` has a `test` phase.
pub fn has_test_phase(components: &[SourceDocument]) -> bool {
    components.iter().any(|c| {
        document::parse(&c.text, Platform::Linux)
            .is_ok_and(|d| d.phases.iter().any(|p| p.name == "test"))
    })
}

impl BuildRequest {
    /// The id of the instance of a stage (`build` or `test`).
    pub fn instance_id(&self, role: &str) -> String {
        format!("{}-{role}", self.build_id)
    }

    /// The roles of every instance the build may launch (see [`BuildRequest::instance_id`]):
    /// a Dockerfile's earlier stages (`build-stage<n>`), then `build` and `test`.
    pub fn instance_roles(&self) -> Vec<String> {
        let earlier = self
            .container
            .as_ref()
            .map_or(0, |c| c.dockerfile.stages.len().saturating_sub(1));
        let mut roles: Vec<String> = (0..earlier).map(|i| format!("build-stage{i}")).collect();
        roles.extend(["build".to_string(), "test".to_string()]);
        roles
    }
}

/// A finished build: the image and the component engine's report of each stage.
#[derive(Debug)]
pub struct Built {
    pub image: ImageRef,
    /// With `enhanced_metadata`: what the built root filesystem says of itself.
    pub metadata: Option<metadata::Metadata>,
    pub build_report: ExecutionReport,
    pub test_report: Option<ExecutionReport>,
}

/// The environment a build runs in.
pub struct Builder<'a> {
    pub store: &'a ImageStore,
    pub sys: Arc<dyn Privileged>,
    pub engine: &'a EngineConfig,
    pub observer: &'a dyn Observer,
    pub stages: &'a dyn Stages,
}

impl Builder<'_> {
    /// Builds (and tests) one image; see the module documentation.
    pub fn build_image(&self, request: &BuildRequest) -> Result<Built, BuildError> {
        // The parent's layers are mounted for the whole build: pinned, a deletion of the parent
        // meanwhile does not collect them. A parent that cannot be pinned is gone; the build
        // fails on it below, naming it.
        let _parent_pin = self.store.pin_image(&request.parent).ok();
        if let Some(spec) = &request.container {
            return self.build_container(request, spec);
        }
        self.stages.entered(Stage::Build);
        let lowers = self
            .store
            .lower_dirs(&request.parent)
            .map_err(|e| fail(Stage::Build)(format!("parent image {}: {e}", request.parent.tag)))?;
        let instance = self.launch(request, "build", lowers.clone(), Stage::Build)?;
        let build_report = self.run(
            &instance,
            request,
            &["build", "validate"],
            "build",
            Stage::Build,
        );
        let build_report = match build_report {
            Ok(report) => report,
            Err(e) => return Err(self.failed(request, instance, e)),
        };
        let meta = self.commit_meta(request);
        self.finish(
            request,
            instance,
            lowers,
            Some(&request.parent),
            &meta,
            build_report,
        )
    }

    /// How the image's configuration records a build of `request`.
    pub fn commit_meta(&self, request: &BuildRequest) -> CommitMeta {
        CommitMeta {
            created_by: Some(format!("kiln build {}", request.build_id)),
            // The engine's clock is the service's: the image's configuration says it was made
            // when its record says.
            created: self
                .engine
                .clock
                .as_ref()
                .map(|clock| clock().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            ..CommitMeta::default()
        }
    }

    /// After the build stage ran in `instance` (launched on `lowers`, the layers of `base`):
    /// the metadata, the snapshot into an image on top of `base`, and the test stage.
    pub(crate) fn finish(
        &self,
        request: &BuildRequest,
        instance: Instance,
        lowers: Vec<PathBuf>,
        base: Option<&ImageRef>,
        meta: &CommitMeta,
        build_report: ExecutionReport,
    ) -> Result<Built, BuildError> {
        // Read from the instance's merged view, where the build's changes sit on the parent's
        // layers, before anything is torn down.
        let metadata = request.enhanced_metadata.then(|| {
            let timed_out = std::cell::Cell::new(false);
            let rpm_query = || {
                rpm::query(
                    &instance,
                    &metadata::RPM_QUERY,
                    INVENTORY_TIMEOUT,
                    &timed_out,
                )
            };
            metadata::collect_with(kiln_toe::target::Target::root(&instance), &rpm_query)
        });

        let has_tests = request.components.iter().any(|c| {
            document::parse(&c.text, Platform::Linux)
                .is_ok_and(|d| d.phases.iter().any(|p| p.name == "test"))
        });
        // Nothing may change the build's writable layer from here on: a daemon a component
        // left running is stopped.
        instance
            .stop_processes()
            .map_err(|e| fail(Stage::Snapshot)(format!("stopping the build instance: {e}")))?;
        // The writable layer gets the image's ids back from the instance's user namespace
        // range, for the snapshot and for a test instance that has it as a lower layer.
        instance.restore_owners().map_err(|e| {
            fail(Stage::Snapshot)(format!("restoring the owners of the build's files: {e}"))
        })?;

        if request.tests_enabled && has_tests && !request.keep_failed_instance {
            return self.snapshot_while_testing(
                request,
                instance,
                lowers,
                (base, meta),
                metadata,
                build_report,
            );
        }

        self.stages.entered(Stage::Snapshot);
        let snapshot = self
            .store
            .snapshot_layer_mapped(&instance.upper(), Compression::Zstd, instance.uid_map())
            .map_err(|e| fail(Stage::Snapshot)(e.to_string()));
        instance
            .terminate()
            .map_err(|e| fail(Stage::Snapshot)(format!("terminating the build instance: {e}")))?;
        let image = self
            .store
            .commit(base, snapshot?, meta, &request.tag)
            .map_err(|e| fail(Stage::Snapshot)(e.to_string()))?;

        if !(request.tests_enabled && has_tests) {
            return Ok(Built {
                image,
                metadata,
                build_report,
                test_report: None,
            });
        }
        self.stages.entered(Stage::Test);
        let lowers = self
            .store
            .lower_dirs(&image)
            .map_err(|e| fail(Stage::Test)(e.to_string()))?;
        let instance = self.launch(request, "test", lowers, Stage::Test)?;
        let test_report = match self.run(&instance, request, &["test"], "test", Stage::Test) {
            Ok(report) => report,
            Err(e) => return Err(self.failed(request, instance, e)),
        };
        instance
            .terminate()
            .map_err(|e| fail(Stage::Test)(format!("terminating the test instance: {e}")))?;
        Ok(Built {
            image,
            metadata,
            build_report,
            test_report: Some(test_report),
        })
    }

    /// The snapshot and the test stage at once: the test instance's top layer is the stopped
    /// build instance's writable layer itself (what the snapshot turns into the image's new
    /// layer, entry for entry), so the tests need not wait for the layer to be compressed,
    /// hashed and unpacked again. The image is committed only when both succeeded.
    fn snapshot_while_testing(
        &self,
        request: &BuildRequest,
        build: Instance,
        parent_lowers: Vec<PathBuf>,
        (base, meta): (Option<&ImageRef>, &CommitMeta),
        metadata: Option<metadata::Metadata>,
        build_report: ExecutionReport,
    ) -> Result<Built, BuildError> {
        self.stages.entered(Stage::Snapshot);
        // The build overlay comes down first (the instance's directory and cgroups stay until
        // it is terminated): a directory must not be the upper dir of one mounted overlay and
        // a lower dir of another.
        let unmounted = self
            .sys
            .mounts_under(build.dir())
            .and_then(|mounts| mounts.iter().try_for_each(|m| self.sys.unmount(m)));
        if let Err(e) = unmounted {
            let _ = build.terminate();
            return Err(fail(Stage::Snapshot)(format!(
                "unmounting the build instance: {e}"
            )));
        }
        let upper = build.upper();
        let uid_map = build.uid_map();
        let (snapshot, tested) = std::thread::scope(|scope| {
            let snapshot = scope.spawn(|| {
                self.store
                    .snapshot_layer_beside_build(&upper, Compression::Zstd, uid_map)
            });
            let tested = (|| {
                self.stages.entered(Stage::Test);
                let mut lowers = vec![upper.clone()];
                lowers.extend(parent_lowers);
                let test = self.launch(request, "test", lowers, Stage::Test)?;
                let report = self.run(&test, request, &["test"], "test", Stage::Test);
                let terminated = test.terminate();
                let report = report?;
                terminated.map_err(|e| {
                    fail(Stage::Test)(format!("terminating the test instance: {e}"))
                })?;
                Ok(report)
            })();
            let snapshot = snapshot.join().unwrap_or_else(|_| {
                Err(kiln_image::Error::Invalid("the snapshot panicked".into()))
            });
            (snapshot, tested)
        });
        let terminated = build.terminate();
        let test_report = tested?;
        terminated
            .map_err(|e| fail(Stage::Snapshot)(format!("terminating the build instance: {e}")))?;
        let layer = snapshot.map_err(|e| fail(Stage::Snapshot)(e.to_string()))?;
        let image = self
            .store
            .commit(base, layer, meta, &request.tag)
            .map_err(|e| fail(Stage::Snapshot)(e.to_string()))?;
        Ok(Built {
            image,
            metadata,
            build_report,
            test_report: Some(test_report),
        })
    }

    /// The step-level operations the workflow actions use (LaunchInstance, ExecuteComponents,
    /// CollectImageMetadata, CreateImage): each does one thing to one instance, and the caller
    /// decides the order. `build_image` above strings them together the fixed way.
    ///
    /// Runs `phases` of the recipe's components in `instance`; `execution_id` names the
    /// component engine's run (its log folder). A failure says which component, phase, step
    /// and action failed, when the engine got that far.
    pub fn run_phases(
        &self,
        instance: &Instance,
        request: &BuildRequest,
        phases: &[&str],
        execution_id: &str,
    ) -> Result<ExecutionReport, PhaseError> {
        let run = RunRequest {
            documents: request.components.clone(),
            phases: Some(phases.iter().map(|p| p.to_string()).collect()),
            parameters: Vec::new(),
            execution_id: Some(execution_id.to_string()),
            log_directory: request.log_directory.clone(),
            state_directory: None,
        };
        let engine = Engine::new(instance, self.engine, self.observer);
        let plain = |message: String| PhaseError {
            message,
            component: None,
        };
        match engine.run(run) {
            Ok(Outcome::Finished(report)) if report.status.is_success() => Ok(report),
            Ok(Outcome::Finished(report)) => Err(PhaseError {
                message: report
                    .failure_message
                    .clone()
                    .unwrap_or_else(|| format!("the {} phases failed", phases.join("/"))),
                component: ComponentFailure::of(&report).map(Box::new),
            }),
            Ok(Outcome::RebootPending(_)) => Err(plain(
                "a component asked for a reboot that could not be resumed".into(),
            )),
            Err(e) => Err(plain(e.to_string())),
        }
    }

    /// The OS and package list of the instance's root filesystem (enhanced image metadata).
    /// The image's own `rpm` answers for an rpm database within `timeout`, or this is `Err`.
    pub fn collect_metadata(
        &self,
        instance: &Instance,
        timeout: std::time::Duration,
    ) -> Result<metadata::Metadata, String> {
        let timed_out = std::cell::Cell::new(false);
        let rpm_query = || rpm::query(instance, &metadata::RPM_QUERY, timeout, &timed_out);
        let found = metadata::collect_with(kiln_toe::target::Target::root(instance), &rpm_query);
        if timed_out.get() {
            return Err(rpm::timed_out_message(timeout));
        }
        Ok(found)
    }

    /// What a vulnerability scan reads of `instance`: its OS and installed packages, with
    /// their source packages and architectures (`metadata::inventory`). The image's own `rpm`
    /// answers for an rpm database within `timeout` (by default [`INVENTORY_TIMEOUT`]), or
    /// this is `Err` (the scan TIMED_OUT) rather than a wait without end.
    pub fn collect_inventory(
        &self,
        instance: &Instance,
        timeout: std::time::Duration,
    ) -> Result<kiln_domain::resources::scan::Inventory, String> {
        let timed_out = std::cell::Cell::new(false);
        let rpm_query = || {
            rpm::query(
                instance,
                &metadata::RPM_INVENTORY_QUERY,
                timeout,
                &timed_out,
            )
        };
        let found = metadata::inventory(kiln_toe::target::Target::root(instance), &rpm_query);
        if timed_out.get() {
            return Err(rpm::timed_out_message(timeout));
        }
        Ok(found)
    }

    /// CreateImage: stops what runs in `instance`, gives its writable layer the image's owners
    /// back, and commits that layer on top of `base` under the request's tag. The instance
    /// stays (stopped) until it is terminated.
    pub fn snapshot(
        &self,
        request: &BuildRequest,
        instance: &Instance,
        base: Option<&ImageRef>,
    ) -> Result<ImageRef, String> {
        instance
            .stop_processes()
            .map_err(|e| format!("stopping the instance: {e}"))?;
        instance
            .restore_owners()
            .map_err(|e| format!("restoring the owners of the instance's files: {e}"))?;
        let layer = self
            .store
            .snapshot_layer_mapped(&instance.upper(), Compression::Zstd, instance.uid_map())
            .map_err(|e| e.to_string())?;
        self.store
            .commit(base, layer, &self.commit_meta(request), &request.tag)
            .map_err(|e| e.to_string())
    }

    /// CreateImage's first half when the snapshot runs beside later steps: stops what runs in
    /// `instance`, gives its writable layer the image's owners back and unmounts its overlay
    /// (the directory then may be a lower layer of a test instance while the snapshot reads
    /// it). The instance's directory and cgroups stay until it is terminated.
    pub fn detach_for_snapshot(&self, instance: &Instance) -> Result<(), String> {
        instance
            .stop_processes()
            .map_err(|e| format!("stopping the instance: {e}"))?;
        instance
            .restore_owners()
            .map_err(|e| format!("restoring the owners of the instance's files: {e}"))?;
        self.sys
            .mounts_under(instance.dir())
            .and_then(|mounts| mounts.iter().try_for_each(|m| self.sys.unmount(m)))
            .map_err(|e| format!("unmounting the instance: {e}"))
    }

    /// A container recipe's whole Dockerfile build (the components run where it says), its
    /// image committed under the request's tag; the test phase is left to test workflows.
    pub fn build_container_image(&self, request: &BuildRequest) -> Result<Built, BuildError> {
        let Some(spec) = &request.container else {
            return Err(fail(Stage::Build)(
                "the recipe is not a container recipe".into(),
            ));
        };
        self.build_container(request, spec)
    }

    /// Ends a failed stage: terminates its instance, or keeps it when asked to.
    pub fn failed(
        &self,
        request: &BuildRequest,
        instance: Instance,
        mut e: BuildError,
    ) -> BuildError {
        if request.keep_failed_instance {
            let id = instance.id().to_string();
            instance.keep();
            e.kept_instance = Some(id);
        } else {
            let _ = instance.terminate();
        }
        e
    }

    pub fn launch(
        &self,
        request: &BuildRequest,
        role: &str,
        lowers: Vec<PathBuf>,
        stage: Stage,
    ) -> Result<Instance, BuildError> {
        let spec = InstanceSpec {
            id: request.instance_id(role),
            lowers,
            limits: request.limits,
            network: request.network,
            hostname: format!("kiln-{role}"),
        };
        Instance::launch(self.sys.clone(), &request.instances_directory, spec)
            .map_err(|e| fail(stage)(format!("launching the {role} instance: {e}")))
    }

    pub(crate) fn run(
        &self,
        instance: &Instance,
        request: &BuildRequest,
        phases: &[&str],
        role: &str,
        stage: Stage,
    ) -> Result<ExecutionReport, BuildError> {
        let what = format!("the {role} stage");
        self.run_documents(
            instance,
            request,
            request.components.clone(),
            phases,
            &format!("{}-{role}", request.build_id),
            &what,
        )
        .map_err(fail(stage))
    }

    /// Runs the `phases` of `documents` in `instance` with the component engine; a failure is
    /// the engine's message (or "`what` failed").
    pub fn run_documents(
        &self,
        instance: &Instance,
        request: &BuildRequest,
        documents: Vec<SourceDocument>,
        phases: &[&str],
        execution_id: &str,
        what: &str,
    ) -> Result<ExecutionReport, String> {
        let run = RunRequest {
            documents,
            phases: Some(phases.iter().map(|p| p.to_string()).collect()),
            parameters: Vec::new(),
            execution_id: Some(execution_id.to_string()),
            log_directory: request.log_directory.clone(),
            state_directory: None,
        };
        let engine = Engine::new(instance, self.engine, self.observer);
        match engine.run(run) {
            Ok(Outcome::Finished(report)) if report.status.is_success() => Ok(report),
            Ok(Outcome::Finished(report)) => Err(report
                .failure_message
                .clone()
                .unwrap_or_else(|| format!("{what} failed"))),
            Ok(Outcome::RebootPending(_)) => {
                Err("a component asked for a reboot that could not be resumed".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
