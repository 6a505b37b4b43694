//! The build worker: what turns the images the API creates into images on disk.
//!
//! The API never builds anything itself. CreateImage and StartImagePipelineExecution write a
//! PENDING image (with a snapshot of everything the build needs) and a row in the build queue,
//! in one transaction. A [`Worker`] runs a few threads (default: one per core) that claim queued
//! builds, one at a time each, and run them:
//!
//! - [`parent`] finds the parent image in the image store, making Kiln's managed base images on
//!   first use and importing parents from OCI layouts, archives and registries;
//! - [`workflows`] runs each build as workflow executions (the managed build-image/test-image
//!   or container pair by default, or the image's own `workflows`), each stored after every
//!   transition, with step actions on `kiln_build::Builder`'s step operations;
//! - [`run`] starts builds and moves the image through BUILDING, TESTING,
//!   DISTRIBUTING and AVAILABLE (or FAILED naming the stage, step and cause) in the database, and
//!   watches for CancelImageCreation: a cancelled build's processes are killed and its instances
//!   torn down within a second;
//! - [`logs`] writes each build's log (`<data>/logs/<build id>/build.log`, live) that
//!   `kiln logs` reads;
//! - [`extension`] answers Kiln's own endpoints (`/kiln/v1/logs`, `/export`, `/instances`);
//! - [`registry`] pushes every image built to the shared registry (`--registry`) and pulls
//!   the images Kiln built elsewhere that a build or an export needs;
//! - [`containers`] pushes container images where their distribution configuration or
//!   recipe sends them, to the registries of `--ecr-registry`;
//! - `imports` imports the disk images of ImportDiskImage and ImportVmImage (queued like
//!   builds) instead of building, and [`exports`] writes an AMI's disk image to S3 (a
//!   distribution's `s3ExportConfiguration`), both through [`s3`] (`--s3-endpoint`, a key of
//!   the image's account);
//! - [`recover`] runs once at start: builds a previous process left running go on when their
//!   workflows can (no execution held an instance that died with it), or else end FAILED
//!   "interrupted"; their instances are reaped, and half-written store entries collected;
//! - [`lifecycle`] runs lifecycle policies once a day and StartResourceStateUpdate executions
//!   (`kiln_core::lifecycle`), deleting container images from their registries for them;
//! - [`lease`] keeps, on a shared database, the leases of this process's claims and ends the
//!   builds of workers whose lease ran out (another process, dead or cut off).
//!
//! With a concurrency of 0 (`kiln serve --build-concurrency 0`) no build thread starts, but
//! recovery, the lease keeper and the endpoints work as usual.
//!
//! Deleted images come through the same queue: the worker removes their store entry, then
//! their record.
//!
//! Data directory layout: `kiln.db` (the store, shared with the API), `images/` (the OCI image
//! store), `instances/<build id>-build|test/`, `logs/<build id>/`, `tmp/` (exports in flight).

pub mod amis;
pub mod containers;
pub mod doctor;
pub mod exports;
pub mod extension;
pub(crate) mod imports;
pub mod lease;
pub mod lifecycle;
pub mod logs;
pub mod parent;
pub mod recover;
pub mod registry;
pub mod rescan;
pub mod run;
pub mod s3;
pub mod workflows;

use kiln_core::Core;
use kiln_image::ImageStore;
use kiln_instance::Privileged;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long an idle worker thread waits before it looks at the queue again without being
/// woken. Only a safety net: every write that queues a build wakes the threads (in this process
/// directly, in others through the store's notifications), and each look is a write
/// transaction.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// How long a claim lasts without a heartbeat, unless configured.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// See [`WorkerConfig::rpm_timeout`].
pub const DEFAULT_RPM_TIMEOUT: Duration = kiln_build::INVENTORY_TIMEOUT;

/// A lease in the milliseconds the store counts in.
pub fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("image store at {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("database: {0}")]
    Database(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub data_dir: PathBuf,
    /// Builds run at once; 0 runs none (an API server whose builds other processes run).
    pub concurrency: usize,
    /// How long a claimed build stays this worker's without a heartbeat.
    pub lease: Duration,
    /// The Debian mirror the managed Debian base image is made from.
    pub debian_mirror: String,
    /// The keyring the mirror's releases must be signed with (`--debian-keyring`); none: the
    /// Debian archive keyring built into Kiln.
    pub debian_keyring: Option<PathBuf>,
    /// Whether the managed bases come from the host's tools or the mirror (`--base-source`).
    pub base_source: kiln_image::BaseSource,
    /// Whether build instances with networking may reach the host's own addresses.
    pub instance_host_access: bool,
    /// The registry every built image is pushed to and missing images are pulled from
    /// (`--registry`), when the store is shared between machines.
    pub registry: Option<kiln_image::SharedRegistry>,
    /// The registries container images are pushed to, by Region (`--ecr-registry`); none:
    /// container images stay in the local image store.
    pub ecr_registries: containers::EcrRegistries,
    /// The S3-compatible endpoint disk images are imported from and exported to
    /// (`--s3-endpoint`), and where the keys that sign those transfers come from.
    pub s3: Option<s3::S3Settings>,
    /// How long an image's own `rpm` may take to list its packages (`--rpm-timeout`): past
    /// it a scan is TIMED_OUT and inventory collection fails.
    pub rpm_timeout: Duration,
}

impl WorkerConfig {
    pub fn new(data_dir: &Path) -> WorkerConfig {
        WorkerConfig {
            data_dir: data_dir.to_path_buf(),
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            lease: DEFAULT_LEASE,
            debian_mirror: kiln_image::DEFAULT_DEBIAN_MIRROR.to_string(),
            debian_keyring: None,
            base_source: kiln_image::BaseSource::Auto,
            instance_host_access: false,
            registry: None,
            ecr_registries: containers::EcrRegistries::default(),
            s3: None,
            rpm_timeout: DEFAULT_RPM_TIMEOUT,
        }
    }

    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    pub fn instances_dir(&self) -> PathBuf {
        self.data_dir.join("instances")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

/// What the worker threads share.
pub struct Shared {
    pub core: Arc<Core>,
    pub store: ImageStore,
    pub sys: Arc<dyn Privileged>,
    pub config: WorkerConfig,
    /// Names this process's claims in the queue.
    pub worker_id: String,
    stopping: AtomicBool,
    /// Making a managed base image is done once, whichever build asks first.
    base_lock: Mutex<()>,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// The file in the data directory that names the worker processes of this directory.
pub const MACHINE_ID_FILE: &str = "worker-id";

/// The stable name of the workers of one data directory, made on first use: claims in a shared
/// queue are named `<machine>/pid-<n>`, so that a restarted worker recovers the builds its own
/// predecessors claimed and leaves other machines' builds alone.
pub fn machine_id(data_dir: &Path) -> Result<String, WorkerError> {
    let path = data_dir.join(MACHINE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(WorkerError::Io { path, source }),
    }
    let id = format!("worker-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &id).map_err(|source| WorkerError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(id)
}

/// The running worker; [`Worker::stop`] ends it.
pub struct Worker {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The lease keeper, and what stops it (dropping the sender).
    keeper: Mutex<Option<(std::sync::mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Worker {
    /// Recovers from a previous process (see [`recover`]) and starts the worker threads.
    pub fn start(core: Arc<Core>, config: WorkerConfig) -> Result<Worker, WorkerError> {
        let sys = kiln_instance::detect::privileged_with_host_access(config.instance_host_access);
        Worker::start_with(core, config, sys)
    }

    pub fn start_with(
        core: Arc<Core>,
        config: WorkerConfig,
        sys: Arc<dyn Privileged>,
    ) -> Result<Worker, WorkerError> {
        let worker = Worker::open(core, config, sys)?;
        worker.spawn_threads()?;
        Ok(worker)
    }

    /// Opens the store and recovers (see [`recover`]) without starting any thread.
    pub fn open(
        core: Arc<Core>,
        config: WorkerConfig,
        sys: Arc<dyn Privileged>,
    ) -> Result<Worker, WorkerError> {
        for dir in [config.instances_dir(), config.logs_dir(), config.tmp_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| WorkerError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let store = ImageStore::open(&config.images_dir()).map_err(|e| WorkerError::Store {
            path: config.images_dir(),
            message: e.to_string(),
        })?;
        let machine = machine_id(&config.data_dir)?;
        let shared = Arc::new(Shared {
            core,
            store,
            sys,
            worker_id: format!("{machine}/pid-{}", std::process::id()),
            config,
            stopping: AtomicBool::new(false),
            base_lock: Mutex::new(()),
        });
        recover::recover(&shared)?;
        Ok(Worker {
            shared,
            threads: Mutex::new(Vec::new()),
            keeper: Mutex::new(None),
        })
    }

    /// Starts the worker threads ([`WorkerConfig::concurrency`] builds at once; none for 0)
    /// and, on a shared database, the lease keeper ([`lease`]).
    pub fn spawn_threads(&self) -> Result<(), WorkerError> {
        let spawn_error = |source| WorkerError::Io {
            path: PathBuf::from("<thread>"),
            source,
        };
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        for i in 0..self.shared.config.concurrency {
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("kiln-build-{i}"))
                .spawn(move || work(&shared))
                .map_err(spawn_error)?;
            threads.push(handle);
        }
        {
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("kiln-rescan".into())
                .spawn(move || rescan::keep_findings_current(&shared))
                .map_err(spawn_error)?;
            threads.push(handle);
        }
        {
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("kiln-lifecycle".into())
                .spawn(move || lifecycle::run_policies(&shared))
                .map_err(spawn_error)?;
            threads.push(handle);
        }
        if self.shared.core.store.is_shared() {
            let (stop, stopped) = std::sync::mpsc::channel();
            let shared = self.shared.clone();
            let renew = self.shared.config.concurrency > 0;
            let handle = std::thread::Builder::new()
                .name("kiln-leases".into())
                .spawn(move || lease::keep(&shared, renew, &stopped))
                .map_err(spawn_error)?;
            *self.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, handle));
        }
        tracing::info!(
            concurrency = self.shared.config.concurrency,
            worker = %self.shared.worker_id,
            "build worker ready"
        );
        Ok(())
    }

    /// The name of this process's claims in the queue, `<machine>/pid-<n>`.
    pub fn id(&self) -> &str {
        &self.shared.worker_id
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The endpoints `kiln logs`, `kiln image export` and `kiln instance shell` use.
    pub fn extension(&self) -> Arc<dyn kiln_core::extension::Extension> {
        Arc::new(extension::WorkerExtension {
            shared: self.shared.clone(),
        })
    }

    /// Stops claiming builds, stops the running ones (they end FAILED "interrupted"), and
    /// waits for the threads.
    pub fn stop(&self) {
        // Each running build's watcher sees the flag within its poll and stops the build.
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.core.work.notify();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        // Last: the leases of builds still ending stay renewed until they are out of the queue.
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, handle)) = keeper {
            drop(stop);
            let _ = handle.join();
        }
    }
}

/// One worker thread: claim, run, repeat; wait for a write when the queue is empty.
fn work(shared: &Arc<Shared>) {
    loop {
        // `seen` before the flag: `stop` sets the flag, then notifies. Read the other way round,
        // a stop between the two reads (the scheduler's own stop wakes idle workers right before
        // it) would leave this thread waiting out IDLE_POLL, and the process's exit with it.
        let seen = shared.core.work.seen();
        if shared.stopping() {
            break;
        }
        let now = shared.core.clock.now_millis();
        let lease = lease_millis(shared.config.lease);
        let claimed = shared
            .core
            .store
            .write(|tx| tx.claim_build(&shared.worker_id, now, lease));
        match claimed {
            Ok(Ok(Some(arn))) => {
                // A bug in a build must not take the thread (and the build's image) with it.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run::process(shared, &arn)
                }));
                if outcome.is_err() {
                    tracing::error!(arn, "a build panicked");
                    run::abandon(shared, &arn, "internal error: the build worker panicked");
                }
            }
            Ok(Ok(None)) => shared.core.work.wait(seen, IDLE_POLL),
            Ok(Err(e)) | Err(e) => {
                tracing::error!(error = %e, "claiming a build failed");
                shared.core.work.wait(seen, IDLE_POLL);
            }
        }
    }
}
