//! What the workflows of one build share while it runs: the build's request and engine
//! settings, the instances its steps launched, the image the build made and what was learnt
//! about it. Test workflows of one parallel group run on threads at once, so the mutable part
//! is behind a mutex that is never held while an action runs.

use crate::logs::BuildLog;
use crate::parent::Parent;
use crate::Shared;
use kiln_build::metadata::Metadata;
use kiln_build::{BuildRequest, Builder, NoStages};
use kiln_domain::resources::image::Image;
use kiln_image::ImageRef;
use kiln_instance::Instance;
use kiln_toe::engine::EngineConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// An instance a LaunchInstance step made.
pub enum Live {
    Running(Arc<Instance>),
    /// A container build's: the Dockerfile build launches its own instances when
    /// ExecuteComponents runs it, so LaunchInstance only names it.
    Deferred,
}

#[derive(Default)]
pub struct State {
    pub instances: HashMap<String, Live>,
    /// How many instances each role launched (names the next one).
    pub launches: HashMap<String, u32>,
    /// The image the build made (CreateImage, or a container build's ExecuteComponents).
    pub built: Option<ImageRef>,
    pub metadata: Option<Metadata>,
    /// The instance kept for inspection after a failure (`terminateInstanceOnFailure: false`).
    pub kept_instance: Option<String>,
    /// What a DISTRIBUTION workflow's DistributeImage made, for the image's outputs.
    pub distributed: Option<crate::run::Delivered>,
    /// A CreateImage whose snapshot still runs (see [`Pending`]).
    pub pending: Option<Pending>,
    /// The component step that failed an ExecuteComponents step, by (execution id, step).
    pub component_failures: HashMap<(String, usize), kiln_build::ComponentFailure>,
    /// Instances TerminateInstance stopped, in that order, to be taken down by `end_all`.
    pub retired: Vec<Instance>,
}

/// A snapshot running beside the next steps (the test workflows): CreateImage detached the
/// stopped build instance's writable layer and a thread compresses and hashes it, while a test
/// instance may already have that layer as its top lower layer (entry for entry what the
/// snapshot makes). The image is committed when something needs the image itself
/// ([`BuildContext::built`]): distribution, or the build's end. The build instance, which
/// TerminateInstance cannot end while the snapshot reads it, ends with the build
/// ([`BuildContext::end_all`], after the image is delivered).
pub struct Pending {
    pub instance_id: String,
    /// The build instance's writable layer, then the layers it was launched on.
    pub lowers: Vec<std::path::PathBuf>,
    pub layer: std::thread::JoinHandle<Result<kiln_image::LayerInfo, String>>,
}

pub struct BuildContext<'a> {
    pub shared: &'a Arc<Shared>,
    pub image: Image,
    pub log: &'a BuildLog,
    pub request: BuildRequest,
    pub engine: EngineConfig,
    pub cancel: Arc<AtomicBool>,
    pub parent: Option<Parent>,
    state: Mutex<State>,
}

impl<'a> BuildContext<'a> {
    pub fn new(
        shared: &'a Arc<Shared>,
        image: Image,
        log: &'a BuildLog,
        request: BuildRequest,
        engine: EngineConfig,
        cancel: Arc<AtomicBool>,
        parent: Option<Parent>,
    ) -> BuildContext<'a> {
        BuildContext {
            shared,
            image,
            log,
            request,
            engine,
            cancel,
            parent,
            state: Mutex::new(State::default()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    pub fn now(&self) -> i64 {
        self.shared.core.clock.now_millis()
    }

    pub fn builder(&self) -> Builder<'_> {
        Builder {
            store: &self.shared.store,
            sys: self.shared.sys.clone(),
            engine: &self.engine,
            observer: self.log,
            stages: &NoStages,
        }
    }

    /// The next instance role of `base` (`build`, `test`, then `build-2`, ...).
    pub fn next_role(&self, base: &str) -> String {
        let mut state = self.state();
        let n = state.launches.entry(base.to_string()).or_insert(0);
        *n += 1;
        match *n {
            1 => base.to_string(),
            n => format!("{base}-{n}"),
        }
    }

    /// The running instance `id` a step names.
    pub fn instance(&self, id: &str) -> Result<Option<Arc<Instance>>, String> {
        match self.state().instances.get(id) {
            Some(Live::Running(i)) => Ok(Some(i.clone())),
            Some(Live::Deferred) => Ok(None),
            None => Err(format!(
                "instanceId: {id} is not an instance this build launched and still runs"
            )),
        }
    }

    /// The image the build made: a pending snapshot is waited for and committed first.
    pub fn built(&self) -> Result<Option<ImageRef>, String> {
        let pending = self.state().pending.take();
        if let Some(pending) = pending {
            let layer = pending
                .layer
                .join()
                .map_err(|_| "the snapshot panicked".to_string())
                .and_then(|r| r);
            // The build instance stays in `instances` for `end_all`, which runs once the image
            // is delivered: removing its writable layer (a file per file the build wrote) is
            // nothing the build's result waits for.
            let base = self.parent.as_ref().map(|p| &p.image);
            let meta = self.builder().commit_meta(&self.request);
            let image = self
                .shared
                .store
                .commit(base, layer?, &meta, &self.request.tag)
                .map_err(|e| format!("committing the snapshot: {e}"))?;
            self.state().built = Some(image);
        }
        Ok(self.state().built.clone())
    }

    /// Terminates instance `id` as EC2 does (its processes stop now; [`BuildContext::end_all`]
    /// takes it down), or, for a failed build kept for inspection, keeps it.
    pub fn end_instance(&self, id: &str, keep: bool) -> Result<(), String> {
        {
            let state = self.state();
            if state.pending.as_ref().is_some_and(|p| p.instance_id == id) {
                // The snapshot still reads its writable layer: `end_all` ends it.
                return Ok(());
            }
        }
        let live = self.state().instances.remove(id);
        let Some(Live::Running(instance)) = live else {
            return Ok(());
        };
        // A step of a parallel workflow may still hold it for a moment; wait for it to let go.
        let mut instance = instance;
        let instance = loop {
            match Arc::try_unwrap(instance) {
                Ok(i) => break i,
                Err(shared) => {
                    instance = shared;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        };
        if keep {
            let id = instance.id().to_string();
            instance.keep();
            self.state().kept_instance = Some(id);
            Ok(())
        } else {
            // As EC2's TerminateInstances: the instance stops at once (every process in it is
            // killed), and it is taken down (unmounted, its cgroups and directory removed) by
            // `end_all`, when the build ends: nothing in the build waits for that.
            instance
                .stop_processes()
                .map_err(|e| format!("terminating instance {id}: {e}"))?;
            self.state().retired.push(instance);
            Ok(())
        }
    }

    /// Ends every instance still running (the build is over, whatever happened).
    pub fn end_all(&self) {
        let pending = self.state().pending.take();
        if let Some(pending) = pending {
            let _ = pending.layer.join();
        }
        let ids: Vec<String> = self.state().instances.keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.end_instance(&id, false) {
                tracing::warn!(arn = %self.image.arn, error = %e, "ending an instance");
            }
        }
        // In the order they stopped: a test instance before the build instance whose
        // writable layer is one of its lower layers.
        let retired = std::mem::take(&mut self.state().retired);
        for instance in retired {
            let id = instance.id().to_string();
            if let Err(e) = instance.terminate() {
                tracing::warn!(arn = %self.image.arn, instance = %id, error = %e, "ending an instance");
            }
        }
    }
}
