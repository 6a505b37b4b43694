//! `kiln worker`: a process that runs builds from a shared database and serves no API; and the
//! flags it shares with `kiln serve` (where the state is, how builds run), in one struct that
//! both commands flatten.

use anyhow::{Context, Result};
use kiln_core::Core;
use kiln_store::postgres::Listener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where Kiln's state is and how this process runs builds: `kiln serve` and `kiln worker`.
#[derive(clap::Args)]
pub struct WorkerOptions {
    /// Directory that holds this machine's state (images, build instances, logs; and the SQLite
    /// database, without --database).
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
    pub data_dir: PathBuf,
    /// A shared PostgreSQL database, `postgres://user[:password]@host[:port]/database`, for
    /// several Kiln processes at once. Default: SQLite in the data directory (one process).
    #[arg(long, env = "KILN_DATABASE")]
    pub database: Option<String>,
    /// Image builds that run at once (default: the number of cores). `kiln serve
    /// --build-concurrency 0` runs none: `kiln worker` processes on the same database do.
    #[arg(long, env = "KILN_BUILD_CONCURRENCY")]
    pub build_concurrency: Option<usize>,
    /// How long a build stays its worker's without a heartbeat (renewed every third of it).
    /// On a shared database, the builds of a worker that stops renewing (killed, hung, cut off)
    /// end FAILED this long after its last heartbeat.
    #[arg(
        long,
        env = "KILN_LEASE_SECONDS",
        default_value_t = kiln_worker::DEFAULT_LEASE.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub lease_seconds: u64,
    /// How long an image's own `rpm` may take to list its packages (for enhanced metadata and
    /// vulnerability scans; dpkg and apk databases are read as files): past it, a scan is
    /// TIMED_OUT and inventory collection fails.
    #[arg(
        long = "rpm-timeout",
        env = "KILN_RPM_TIMEOUT_SECONDS",
        default_value_t = kiln_worker::DEFAULT_RPM_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub rpm_timeout_seconds: u64,
    /// The Debian mirror the managed debian-12-minimal-x86 base image is made from.
    #[arg(long, env = "KILN_DEBIAN_MIRROR", default_value = kiln_image::DEFAULT_DEBIAN_MIRROR)]
    pub debian_mirror: String,
    /// The OpenPGP keyring (binary or armored) the Debian mirror's releases must be signed
    /// with. Default: the Debian archive keyring built into Kiln.
    #[arg(long, value_name = "FILE", env = "KILN_DEBIAN_KEYRING")]
    pub debian_keyring: Option<PathBuf>,
    /// Where the managed busybox and Debian bases come from: `host` (the static /bin/busybox
    /// of busybox-static; mmdebstrap), `mirror` (Kiln fetches, verifies and unpacks the
    /// Debian mirror's packages itself: nothing to install), or `auto` (busybox from the host
    /// when it has the static binary, else the mirror; Debian from the mirror, which measured
    /// as fast as mmdebstrap).
    #[arg(
        long,
        value_name = "auto|host|mirror",
        env = "KILN_BASE_SOURCE",
        default_value = "auto"
    )]
    pub base_source: kiln_image::BaseSource,
    /// Let build instances with networking (a subnet or security groups in the infrastructure
    /// configuration) reach the host's own addresses, Kiln's API included. Off by default.
    #[arg(long, env = "KILN_INSTANCE_HOST_ACCESS")]
    pub instance_host_access: bool,
    /// A directory callers may name `oci:` and `file://` parent images in (repeatable; none by
    /// default). Every account can read what is in it. Kiln's data directory stays refused.
    #[arg(
        long = "import-dir",
        value_name = "DIR",
        env = "KILN_IMPORT_DIRS",
        value_delimiter = ':'
    )]
    pub import_dirs: Vec<PathBuf>,
    /// A registry on this machine or a private network (HOST:PORT) that parent images may be
    /// pulled from and builds may download from (repeatable; public registries need no flag).
    #[arg(
        long = "allow-registry",
        value_name = "HOST:PORT",
        env = "KILN_ALLOWED_REGISTRIES",
        value_delimiter = ','
    )]
    pub allowed_registries: Vec<String>,
    /// The OCI registry the machines of a shared database keep images in,
    /// `[https://]HOST[:PORT][/PREFIX]`: every image built is pushed there, and an image built
    /// elsewhere is pulled from there. Plain HTTP only for a loopback host; TLS otherwise.
    #[arg(long, value_name = "HOST:PORT[/PREFIX]", env = "KILN_REGISTRY")]
    pub registry: Option<String>,
    /// A PEM CA bundle the --registry's certificate is verified with (besides the system's).
    #[arg(
        long,
        value_name = "FILE",
        env = "KILN_REGISTRY_CA",
        requires = "registry"
    )]
    pub registry_ca: Option<PathBuf>,
    /// The --registry's credentials, a containers auth.json (as `skopeo login` writes it).
    #[arg(
        long,
        value_name = "FILE",
        env = "KILN_REGISTRY_AUTH_FILE",
        requires = "registry"
    )]
    pub registry_auth_file: Option<PathBuf>,
    /// A registry container images are pushed to (repeatable), standing in for ECR:
    /// `REGION=[https://]HOST[:PORT][/PREFIX]` for one Region, or without `REGION=` for every
    /// Region. A container image goes to `[PREFIX/]<repositoryName>` there, as its distribution
    /// configuration or container recipe says. None: container images stay in the local store.
    #[arg(
        long = "ecr-registry",
        value_name = "[REGION=]HOST:PORT[/PREFIX]",
        env = "KILN_ECR_REGISTRY",
        value_delimiter = ','
    )]
    pub ecr_registries: Vec<String>,
    /// A PEM CA bundle the --ecr-registry certificates are verified with (besides the system's).
    #[arg(long, value_name = "FILE", env = "KILN_ECR_REGISTRY_CA")]
    pub ecr_registry_ca: Option<PathBuf>,
    /// The --ecr-registry credentials, a docker config.json or containers auth.json (as
    /// `skopeo login --authfile` writes it).
    #[arg(long, value_name = "FILE", env = "KILN_ECR_AUTH_FILE")]
    pub ecr_auth_file: Option<PathBuf>,
    /// For tests: read Kiln's time (requests, builds, schedules, leases) from this file, an
    /// RFC 3339 instant that the test rewrites to move time, instead of the system clock.
    #[arg(long, env = "KILN_CLOCK_FILE")]
    pub clock_file: Option<PathBuf>,
    /// The S3-compatible endpoint (path-style, e.g. http://127.0.0.1:9000) Kiln reads and
    /// writes S3 objects at: component and workflow documents and imported scripts given as
    /// `uri: s3://bucket/key` (kiln serve, with the caller's key), disk images imported from
    /// `s3://` and exported by a distribution's s3ExportConfiguration (the build worker, with
    /// a key of the image's account). Without it, those are refused. No other address is
    /// contacted for them.
    #[arg(long, env = "KILN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The region S3 requests are signed for.
    #[arg(long, env = "KILN_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// The key S3 requests are signed with when there is no key of the account to use: kiln
    /// serve --insecure-no-auth (no caller key is verified; kiln serve takes it only then), and
    /// the worker's transfers for an account without a key in the credentials file.
    #[arg(long, env = "KILN_S3_ACCESS_KEY_ID", requires = "s3_secret_access_key")]
    pub s3_access_key_id: Option<String>,
    /// The secret of --s3-access-key-id.
    #[arg(
        long,
        env = "KILN_S3_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "s3_access_key_id"
    )]
    pub s3_secret_access_key: Option<String>,
}

impl WorkerOptions {
    /// `--database`, parsed here rather than by clap, whose message would quote the value,
    /// password and all.
    pub fn database(&self) -> Result<Option<kiln_store::Database>> {
        self.database
            .as_deref()
            .map(kiln_store::Database::parse)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--database")
    }

    /// What opening the store failed at, for messages (never with a password).
    pub fn opening(&self) -> String {
        match &self.database {
            Some(url) => format!("opening the database {}", kiln_store::postgres::redact(url)),
            None => format!("opening the data directory {}", self.data_dir.display()),
        }
    }

    /// `--clock-file`'s clock, if any.
    pub fn clock(&self) -> Option<Arc<dyn kiln_core::clock::Clock>> {
        self.clock_file.as_ref().map(|path| {
            tracing::warn!(path = %path.display(), "using a test clock");
            Arc::new(kiln_core::clock::FileClock::new(path.clone())) as Arc<_>
        })
    }

    pub fn parent_rules(&self) -> Result<kiln_core::parents::ParentRules> {
        kiln_core::parents::ParentRules::new(
            &self.data_dir,
            &self.import_dirs,
            &self.allowed_registries,
        )
        .map_err(anyhow::Error::msg)
    }

    /// `--registry` with its CA and credentials; parsed before anything starts, so that a bad
    /// value leaves nothing behind.
    pub fn registry(&self) -> Result<Option<kiln_image::SharedRegistry>> {
        self.registry
            .as_deref()
            .map(|value| {
                kiln_image::SharedRegistry::parse(
                    value,
                    self.registry_ca.as_deref(),
                    self.registry_auth_file.as_deref(),
                )
            })
            .transpose()
            .map_err(anyhow::Error::from)
    }

    /// `--ecr-registry` with its CA and credentials, parsed before anything starts.
    pub fn ecr_registries(&self) -> Result<kiln_worker::containers::EcrRegistries> {
        kiln_worker::containers::EcrRegistries::parse(
            &self.ecr_registries,
            self.ecr_registry_ca.as_deref(),
            self.ecr_auth_file.as_deref(),
        )
        .map_err(anyhow::Error::msg)
    }

    /// `--s3-endpoint` without its trailing `/`, checked to be an HTTP(S) URL.
    pub fn s3_endpoint(&self) -> Result<Option<String>> {
        let Some(endpoint) = &self.s3_endpoint else {
            return Ok(None);
        };
        anyhow::ensure!(
            endpoint.starts_with("http://") || endpoint.starts_with("https://"),
            "--s3-endpoint '{endpoint}' must be an http:// or https:// URL"
        );
        Ok(Some(endpoint.trim_end_matches('/').to_string()))
    }

    /// `--s3-access-key-id` and `--s3-secret-access-key`.
    pub fn s3_fallback_key(&self) -> Option<(String, String)> {
        self.s3_access_key_id
            .clone()
            .zip(self.s3_secret_access_key.clone())
    }

    /// The worker's S3 transfers: the endpoint, and the keys of `credentials` (the file whose
    /// keys carry their accounts), else the fallback key.
    pub fn s3_settings(
        &self,
        credentials: Option<PathBuf>,
    ) -> Result<Option<kiln_worker::s3::S3Settings>> {
        Ok(self
            .s3_endpoint()?
            .map(|endpoint| kiln_worker::s3::S3Settings {
                endpoint,
                region: self.s3_region.clone(),
                credentials,
                fallback_key: self.s3_fallback_key(),
            }))
    }

    pub fn worker_config(&self) -> Result<kiln_worker::WorkerConfig> {
        let mut config = kiln_worker::WorkerConfig::new(&self.data_dir);
        config.registry = self.registry()?;
        config.ecr_registries = self.ecr_registries()?;
        if let Some(n) = self.build_concurrency {
            config.concurrency = n;
        }
        config.lease = Duration::from_secs(self.lease_seconds);
        config.rpm_timeout = Duration::from_secs(self.rpm_timeout_seconds);
        config.debian_mirror = self.debian_mirror.clone();
        config.debian_keyring = self.debian_keyring.clone();
        config.base_source = self.base_source;
        config.instance_host_access = self.instance_host_access;
        Ok(config)
    }
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub options: WorkerOptions,
    /// The key pairs of the accounts, as `kiln serve --credentials` has them: an image's S3
    /// transfers (disk imports from s3://, exports to S3) are signed with a key of its account
    /// from this file, read at each transfer. Without it, --s3-access-key-id signs them.
    #[arg(long, env = "KILN_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
}

/// Wakes this process's build threads and scheduler when another process queues a build or
/// moves a schedule (PostgreSQL's notifications); `None` on SQLite, where every write is this
/// process's own. Dropping the answer stops listening.
pub fn listen_for_work(core: &Arc<Core>) -> Result<Option<Listener>> {
    let woken = Arc::downgrade(core);
    core.store
        .listen(move || {
            if let Some(core) = woken.upgrade() {
                core.work.notify();
            }
        })
        .context("starting the thread that listens for work")
}

/// `log_level`: the filter in force (from `--log-level`), which SIGHUP may change.
pub fn main(args: WorkerArgs, log_level: Option<String>) -> Result<()> {
    let options = args.options;
    let Some(database) = options.database()? else {
        anyhow::bail!(
            "kiln worker needs a shared database: --database postgres://... (env \
             KILN_DATABASE). A SQLite database belongs to the one `kiln serve` that opened it, \
             and that process runs its builds itself"
        );
    };
    let mut config = options.worker_config()?;
    config.s3 = options.s3_settings(args.credentials.clone())?;
    anyhow::ensure!(
        config.concurrency > 0,
        "kiln worker --build-concurrency 0 would run no builds; give it 1 or more"
    );
    let mut core = Core::open_database(
        &options.data_dir,
        Some(&database),
        kiln_store::sqlite::Sync::Normal,
    )
    .with_context(|| options.opening())?;
    if let Some(clock) = options.clock() {
        core = core.with_clock(clock);
    }
    let core = Arc::new(core.with_parent_rules(options.parent_rules()?));
    let worker =
        kiln_worker::Worker::start(core.clone(), config).context("starting the build worker")?;
    let listener = listen_for_work(&core)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Before "ready", so that a signal from then on reloads or stops gracefully rather
        // than ends the process.
        tokio::spawn(crate::reload_on_sighup(None, log_level));
        let shutdown = crate::shutdown_signal();
        println!("kiln worker ready: {}", worker.id());
        shutdown.await
    });
    drop(listener);
    // Builds still running end FAILED "interrupted"; their instances are torn down.
    worker.stop();
    tracing::info!("kiln worker stopped");
    Ok(())
}
