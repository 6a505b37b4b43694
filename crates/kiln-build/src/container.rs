//! Container builds: a container recipe's Dockerfile, executed in Kiln's own instances (no
//! docker daemon, no buildah).
//!
//! Each stage (`FROM` to the next `FROM`) runs in one instance launched from its base: the
//! recipe's parent image (what `{{{ imagebuilder:parentImage }}}` became), an earlier stage, or
//! `scratch`. Instructions that change the file system (`RUN`, `WORKDIR`, `COPY --from`, the
//! recipe's components) change the instance; the others change the stage's image configuration
//! ([`state::StageState`]). When a stage ends, its instance's writable layer becomes one layer
//! on top of its base, as `buildah bud` commits a stage (one layer per stage, not per
//! instruction), and the configuration goes with it. The last stage is the image; it is
//! snapshotted and tested as an image recipe's build is ([`crate::Builder::finish`]).
//!
//! Earlier stages' instances stay up until the build ends, so that `COPY --from=<stage>` reads
//! their file systems as they were left.

mod add;
mod copy;
mod run;
pub mod state;
mod user;

use crate::{fail, BuildError, BuildRequest, Builder, Built, Stage};
use kiln_dockerfile::bases::Base;
use kiln_dockerfile::{Dockerfile, Instruction, Kind};
use kiln_image::{CommitMeta, ImageRef};
use kiln_instance::Instance;
use kiln_toe::report::ExecutionReport;
use state::StageState;

/// What a container recipe adds to a [`BuildRequest`].
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The template with Image Builder's variables expanded.
    pub dockerfile: Dockerfile,
    /// What `{{{ imagebuilder:parentImage }}}` was replaced with: a `FROM` naming it starts
    /// from [`BuildRequest::parent`].
    pub parent_reference: String,
}

/// A stage that has ended: its name, its instance (still up, for `COPY --from`) and its image
/// (for `FROM <stage>`).
struct Finished {
    name: Option<String>,
    instance: Instance,
    image: ImageRef,
}

/// The layers, image and configuration a stage starts from.
struct Start {
    lowers: Vec<std::path::PathBuf>,
    image: Option<ImageRef>,
    config: serde_json::Value,
}

impl Builder<'_> {
    /// Builds (and tests) the image of a container recipe; see the module documentation.
    pub(crate) fn build_container(
        &self,
        request: &BuildRequest,
        spec: &ContainerSpec,
    ) -> Result<Built, BuildError> {
        self.stages.entered(Stage::Build);
        let dockerfile = &spec.dockerfile;
        let mut finished: Vec<Finished> = Vec::new();
        let result = self.run_stages(request, spec, dockerfile, &mut finished);
        let outcome = match result {
            Ok((instance, base, state, report)) => {
                let meta = CommitMeta {
                    config: Some(state.image_config()),
                    author: state.author.clone(),
                    ..self.commit_meta(request)
                };
                self.finish(
                    request,
                    instance,
                    base.lowers,
                    base.image.as_ref(),
                    &meta,
                    report,
                )
            }
            Err(e) => Err(e),
        };
        for stage in finished {
            let _ = stage.instance.terminate();
            let _ = self.store.delete(&stage.image.tag);
        }
        outcome
    }

    /// Runs every stage; the last one's instance is returned still running, for the snapshot
    /// and test stages.
    fn run_stages(
        &self,
        request: &BuildRequest,
        spec: &ContainerSpec,
        dockerfile: &Dockerfile,
        finished: &mut Vec<Finished>,
    ) -> Result<(Instance, Start, StageState, ExecutionReport), BuildError> {
        let dockerfile_error =
            |e: kiln_dockerfile::Error| fail(Stage::Build)(format!("Dockerfile line {e}"));
        let global_args =
            kiln_dockerfile::bases::global_args(dockerfile).map_err(dockerfile_error)?;
        let bases = kiln_dockerfile::bases::bases(dockerfile, &spec.parent_reference)
            .map_err(dockerfile_error)?;
        let count = dockerfile.stages.len();
        let mut components_report = None;
        for (index, stage) in dockerfile.stages.iter().enumerate() {
            let base = self.base_of(request, bases[index], finished)?;
            let role = if index + 1 == count {
                "build".to_string()
            } else {
                format!("build-stage{index}")
            };
            let instance = self.launch(request, &role, base.lowers.clone(), Stage::Build)?;
            let mut state = StageState::new(&base.config, &global_args, dockerfile.escape);
            for instruction in &stage.instructions {
                if self.cancelled() {
                    let _ = instance.terminate();
                    return Err(fail(Stage::Build)("the build was cancelled".into()));
                }
                let ran = self.execute(
                    request,
                    &instance,
                    &mut state,
                    instruction,
                    finished,
                    &mut components_report,
                );
                if let Err(e) = ran {
                    return Err(self.failed(request, instance, e));
                }
            }
            if index + 1 == count {
                let report = match components_report.take() {
                    Some(report) => report,
                    // A Dockerfile without the components placeholder (the template puts one
                    // in): the components run last, where the template would have them.
                    None => match self.run(
                        &instance,
                        request,
                        &["build", "validate"],
                        "build",
                        Stage::Build,
                    ) {
                        Ok(report) => report,
                        Err(e) => return Err(self.failed(request, instance, e)),
                    },
                };
                return Ok((instance, base, state, report));
            }
            let image = self.commit_stage(request, &instance, &base, &state, index)?;
            finished.push(Finished {
                name: stage.name.clone(),
                instance,
                image,
            });
        }
        Err(fail(Stage::Build)(
            "the Dockerfile has no FROM instruction".into(),
        ))
    }

    /// The layers and configuration a stage starts from.
    fn base_of(
        &self,
        request: &BuildRequest,
        base: Base,
        finished: &[Finished],
    ) -> Result<Start, BuildError> {
        let image = match base {
            Base::Parent => Some(request.parent.clone()),
            Base::Stage(i) => finished.get(i).map(|f| f.image.clone()),
            Base::Scratch => None,
        };
        let Some(image) = image else {
            return Ok(Start {
                lowers: Vec::new(),
                image: None,
                config: serde_json::json!({}),
            });
        };
        let failed = |e: kiln_image::Error| fail(Stage::Build)(format!("image {}: {e}", image.tag));
        let lowers = self.store.lower_dirs(&image).map_err(failed)?;
        let config = self.store.config(&image).map_err(failed)?;
        let config = config
            .config()
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        Ok(Start {
            lowers,
            image: Some(image),
            config,
        })
    }

    /// Commits an intermediate stage, so that a later `FROM <stage>` can build on it.
    fn commit_stage(
        &self,
        request: &BuildRequest,
        instance: &Instance,
        base: &Start,
        state: &StageState,
        index: usize,
    ) -> Result<ImageRef, BuildError> {
        let snapshot = fail(Stage::Build);
        instance
            .stop_processes()
            .map_err(|e| snapshot(format!("stopping stage {index}'s instance: {e}")))?;
        instance.restore_owners().map_err(|e| {
            snapshot(format!(
                "restoring the owners of stage {index}'s files: {e}"
            ))
        })?;
        let layer = self
            .store
            .snapshot_layer_mapped(
                &instance.upper(),
                kiln_image::Compression::Zstd,
                instance.uid_map(),
            )
            .map_err(|e| snapshot(format!("stage {index}: {e}")))?;
        let meta = CommitMeta {
            config: Some(state.image_config()),
            author: state.author.clone(),
            ..self.commit_meta(request)
        };
        self.store
            .commit(
                base.image.as_ref(),
                layer,
                &meta,
                &format!("{}-stage{index}", request.tag),
            )
            .map_err(|e| snapshot(format!("stage {index}: {e}")))
    }

    /// Runs one instruction of a stage.
    fn execute(
        &self,
        request: &BuildRequest,
        instance: &Instance,
        state: &mut StageState,
        instruction: &Instruction,
        finished: &[Finished],
        components_report: &mut Option<ExecutionReport>,
    ) -> Result<(), BuildError> {
        let at = |e: String| line_error(instruction.line, &instruction.source, &e);
        match &instruction.kind {
            Kind::Run {
                command, heredocs, ..
            } => {
                let ran = run::run(self, instance, state, instruction, command, heredocs);
                // As in a container runtime, nothing a RUN started outlives it.
                instance
                    .stop_processes()
                    .map_err(|e| at(format!("stopping what the command left running: {e}")))?;
                ran
            }
            Kind::Workdir(dir) => {
                let dir = state.set_workdir(dir).map_err(at)?;
                run::make_directory(instance, &dir).map_err(at)
            }
            Kind::Add(add)
                if !add.sources.is_empty() && add.sources.iter().all(|s| add::is_url(s)) =>
            {
                add::add_urls(self, request, instance, state, add, instruction.line).map_err(at)
            }
            Kind::Copy(copy) | Kind::Add(copy) => {
                let source =
                    match &copy.from {
                        None => None,
                        Some(from) => {
                            let from = state.expand(from).map_err(at)?;
                            let found = match from.parse::<usize>() {
                                Ok(i) => finished.get(i),
                                Err(_) => {
                                    let name = from.to_ascii_lowercase();
                                    finished
                                        .iter()
                                        .find(|f| f.name.as_deref() == Some(name.as_str()))
                                }
                            };
                            Some(found.ok_or_else(|| {
                                at(format!("--from={from} names no earlier stage"))
                            })?)
                        }
                    };
                copy::copy(instance, source.map(|s| &s.instance), state, copy).map_err(at)
            }
            Kind::Components => {
                self.observer.step_started(&step_at("components"));
                let report = self.run(
                    instance,
                    request,
                    &["build", "validate"],
                    "build",
                    Stage::Build,
                )?;
                *components_report = Some(report);
                Ok(())
            }
            Kind::Environments => Ok(()),
            other => state.apply(other).map_err(at),
        }
    }

    fn cancelled(&self) -> bool {
        self.engine
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A failure of an instruction, with its line and text.
fn line_error(line: usize, source: &str, message: &str) -> BuildError {
    fail(Stage::Build)(format!(
        "Dockerfile line {line}: {}: {message}",
        shorten(source)
    ))
}

/// An instruction as messages quote it: its first 200 characters.
fn shorten(source: &str) -> String {
    let mut chars = source.chars();
    let short: String = chars.by_ref().take(200).collect();
    if chars.next().is_some() {
        format!("{short}...")
    } else {
        short
    }
}

/// Where build-log lines of the Dockerfile's own instructions are filed.
fn step_at(step: &str) -> kiln_toe::engine::StepAt<'_> {
    kiln_toe::engine::StepAt {
        document: "Dockerfile",
        phase: "build",
        step,
        action: kiln_toe::actions::ActionKind::ExecuteBash,
        depth: 0,
    }
}
