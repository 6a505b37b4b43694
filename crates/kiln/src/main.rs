//! The `kiln` command: a thin layer over the library crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kiln_api::{Accounts, Authenticator, ServerConfig, Service};
use kiln_auth::regions::Regions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// mimalloc rather than glibc's malloc: the API server allocates per request from many threads,
/// and glibc's arenas and consolidation cost it about a third of its throughput (see
/// ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod config;
mod credentials;
mod dist;
mod doctor;
mod findings;
mod image;
mod instance;
mod lifecycle;
mod logging;
mod logs;
mod pipeline;
mod store;
mod toe;
mod vulndb;
mod worker;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Kiln: a self-hosted EC2 Image Builder."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Image Builder API (AWS SDKs and the aws CLI talk to it with --endpoint-url).
    Serve(Box<ServeArgs>),
    /// Run builds from a shared PostgreSQL database, with no API (`kiln serve` processes,
    /// perhaps with --build-concurrency 0, serve it).
    Worker(Box<worker::WorkerArgs>),
    /// Validate and run AWSTOE component documents on this machine (like AWS's awstoe).
    #[command(subcommand)]
    Toe(toe::ToeCommand),
    /// Print an image build's log from a running server (--follow: until the build ends).
    Logs(logs::LogsArgs),
    /// Act on the images of a running server (export).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Act on the build instances of a running server (shell).
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    /// Look at the pipelines of a running server (schedule: what the schedule did lately).
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Look at lifecycle policies and executions of a running server (schedule: the next
    /// daily run; show: what an execution did, one line per resource).
    #[command(subcommand)]
    Lifecycle(lifecycle::LifecycleCommand),
    /// Check what Kiln needs on this machine (privileges, overlayfs, cgroups, tools, disk,
    /// database, registry, mirror, S3) with the flags of `kiln serve`; exit 0 when builds can run.
    Doctor(Box<doctor::DoctorArgs>),
    /// Manage the key pairs callers sign with (create: a new key for an account).
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Load vulnerability data for image scans (import) and see what is loaded (status).
    #[command(subcommand)]
    Vulndb(vulndb::VulndbCommand),
    /// Look at the image store of a data directory (usage: bytes per image, what a gc frees).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Write the config template, man pages and completions (for `cargo xtask dist`).
    #[command(hide = true)]
    DistFiles(dist::DistArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum SyncMode {
    /// Commits survive a crash of the process (kill -9).
    Normal,
    /// Commits also survive a crash of the machine (an fsync per commit).
    Full,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where the state is and how this process runs builds (shared with `kiln worker`).
    #[command(flatten)]
    worker: worker::WorkerOptions,
    /// Address to listen on.
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// The key pairs callers sign with, in the AWS shared credentials format (one profile per
    /// key: aws_access_key_id, aws_secret_access_key, aws_account_id). Re-read on SIGHUP.
    /// Without it, a server on a loopback address uses (and on first start creates)
    /// <data-dir>/credentials; any other address needs it.
    #[arg(long, env = "KILN_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Do not verify signatures: any key (or none) is accepted, its account taken from
    /// --accounts. For throwaway test servers only.
    #[arg(long, env = "KILN_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// With --insecure-no-auth only: access key to account map,
    /// `AKID=111122223333,AKID2=444455556666`. Keys not listed belong to --default-account.
    #[arg(long, env = "KILN_ACCOUNTS", default_value = "")]
    accounts: String,
    /// The account of the key created in a new <data-dir>/credentials file; with
    /// --insecure-no-auth, the account of keys not in --accounts.
    #[arg(long, env = "KILN_DEFAULT_ACCOUNT", default_value = kiln_api::accounts::DEFAULT_ACCOUNT)]
    default_account: String,
    /// With --insecure-no-auth: the region of unsigned requests.
    #[arg(long, env = "KILN_DEFAULT_REGION", default_value = kiln_api::accounts::DEFAULT_REGION)]
    default_region: String,
    /// The regions requests may be scoped to, comma-separated (default: AWS's commercial
    /// regions).
    #[arg(long, env = "KILN_REGIONS")]
    regions: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "KILN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "KILN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Durability of commits (SQLite; on PostgreSQL the server's synchronous_commit decides).
    #[arg(long, env = "KILN_SYNC", value_enum, default_value = "normal")]
    sync: SyncMode,
    /// Requests per second each account may make, on average, per bucket (reads and writes
    /// have one each); 0 disables rate limiting.
    #[arg(long, env = "KILN_RATE_LIMIT", default_value_t = kiln_api::throttle::RateLimit::DEFAULT.per_second)]
    rate_limit: f64,
    /// Requests an account may make at once before the rate applies; 0 disables rate limiting.
    #[arg(long, env = "KILN_RATE_BURST", default_value_t = kiln_api::throttle::RateLimit::DEFAULT.burst)]
    rate_burst: u32,
    /// A per-account quota, `NAME=N` or `NAME=unlimited` (repeatable, or comma-separated):
    /// components, image-recipes, container-recipes, infrastructure-configurations,
    /// distribution-configurations, image-pipelines, workflows, lifecycle-policies,
    /// concurrent-builds.
    #[arg(long = "quota", env = "KILN_QUOTAS", value_delimiter = ',')]
    quotas: Vec<String>,
    /// An account whose callers may import vulnerability data through the endpoint
    /// (`kiln vulndb import --endpoint-url`; repeatable, or comma-separated). Every account's
    /// scans read that data, so no account may by default.
    #[arg(
        long = "vulndb-importer",
        env = "KILN_VULNDB_IMPORTERS",
        value_delimiter = ','
    )]
    vulndb_importers: Vec<String>,
}

fn main() -> Result<()> {
    // The command line with `--config`'s file applied (see config.rs), then the log.
    let invocation = config::parse(std::env::args_os().collect())?;
    logging::init(invocation.log_level.as_deref())?;
    match invocation.cli.command {
        Command::Serve(args) => serve(*args, invocation.log_level),
        Command::Worker(args) => worker::main(*args, invocation.log_level),
        Command::Toe(command) => std::process::exit(toe::main(command)),
        Command::Logs(args) => std::process::exit(logs::main(args)),
        Command::Image(command) => std::process::exit(image::main(command)),
        Command::Instance(command) => std::process::exit(instance::main(command)),
        Command::Pipeline(command) => std::process::exit(pipeline::main(command)),
        Command::Lifecycle(command) => std::process::exit(lifecycle::main(command)),
        Command::Doctor(args) => std::process::exit(doctor::main(*args)),
        Command::Credentials(command) => std::process::exit(credentials::main(command)),
        Command::Vulndb(command) => std::process::exit(vulndb::main(command)),
        Command::Store(command) => std::process::exit(store::main(command)),
        Command::DistFiles(args) => dist::main(args),
    }
}

/// Where documents named by `uri` are read from: see `kiln_api::documents`. The fallback key
/// serves only when no caller key is verified (`--insecure-no-auth`).
fn document_source(args: &ServeArgs) -> Result<kiln_api::documents::DocumentSource> {
    let Some(endpoint) = args.worker.s3_endpoint()? else {
        return Ok(Default::default());
    };
    Ok(kiln_api::documents::DocumentSource {
        s3: Some(kiln_api::documents::S3Endpoint {
            endpoint,
            region: args.worker.s3_region.clone(),
            fallback_key: args.worker.s3_fallback_key(),
        }),
    })
}

/// The credentials file signatures are verified with (none under `--insecure-no-auth`): the
/// worker signs an account's S3 transfers with that account's key from it.
fn credentials_path(args: &ServeArgs) -> Option<PathBuf> {
    match (&args.credentials, args.insecure_no_auth) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) => Some(args.worker.data_dir.join("credentials")),
    }
}

/// Who may call the server: see `kiln_api::auth`. Decided before anything binds or opens.
fn authenticator(args: &ServeArgs) -> Result<Authenticator> {
    if args.default_account.len() != 12 || !args.default_account.bytes().all(|b| b.is_ascii_digit())
    {
        anyhow::bail!(
            "--default-account '{}' must be 12 digits",
            args.default_account
        );
    }
    let regions = match &args.regions {
        Some(list) => Regions::parse(list)
            .map_err(anyhow::Error::msg)
            .context("--regions")?,
        None => Regions::default(),
    };
    if args.insecure_no_auth {
        anyhow::ensure!(
            args.credentials.is_none(),
            "--credentials and --insecure-no-auth exclude each other"
        );
        anyhow::ensure!(
            regions.contains(&args.default_region),
            "--default-region '{}' is not one of the regions served (--regions)",
            args.default_region
        );
        let mut accounts = Accounts::default();
        accounts.default_account = args.default_account.clone();
        accounts.default_region = args.default_region.clone();
        accounts
            .parse_map(&args.accounts)
            .map_err(anyhow::Error::msg)
            .context("--accounts")?;
        tracing::warn!(
            listen = %args.listen,
            "--insecure-no-auth: signatures are NOT verified; anyone who can reach this address acts as any account"
        );
        return Ok(Authenticator::insecure(accounts, regions));
    }
    anyhow::ensure!(
        args.accounts.trim().is_empty(),
        "--accounts is only for --insecure-no-auth; with signatures verified, each key's account is its aws_account_id in the credentials file"
    );
    let path = match &args.credentials {
        Some(path) => path.clone(),
        None if args.listen.ip().is_loopback() => {
            let path = args.worker.data_dir.join("credentials");
            if !path.exists() {
                let key = kiln_auth::credentials::Key::generate(
                    "default",
                    &args.default_account,
                    None,
                );
                kiln_auth::credentials::append(&path, &key)
                    .context("creating the default credentials file")?;
                tracing::info!(path = %path.display(), account = %args.default_account, "created a key pair for the default account");
            }
            path
        }
        None => anyhow::bail!(
            "refusing to serve on {} without --credentials FILE: only loopback addresses get a generated key (or run a throwaway server with --insecure-no-auth)",
            args.listen
        ),
    };
    let auth = Authenticator::verify(path.clone(), regions)?;
    println!(
        "kiln credentials: {} (export AWS_SHARED_CREDENTIALS_FILE={})",
        path.display(),
        path.display()
    );
    Ok(auth)
}

/// `log_level`: the filter in force (from `--log-level`), which SIGHUP may change.
fn serve(args: ServeArgs, log_level: Option<String>) -> Result<()> {
    // First, so that a bad value leaves nothing behind in the data directory.
    let database = args.worker.database()?;
    anyhow::ensure!(
        args.worker.s3_access_key_id.is_none() || args.insecure_no_auth,
        "--s3-access-key-id is only for kiln serve --insecure-no-auth: with signatures verified, \
         S3 requests are signed with a key of the caller's (or the image's) account from the \
         credentials file"
    );
    let mut worker_config = args.worker.worker_config()?;
    worker_config.s3 = args.worker.s3_settings(credentials_path(&args))?;
    let auth = Arc::new(authenticator(&args)?);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            kiln_api::tls::server_config(cert, key)
                .map_err(anyhow::Error::msg)
                .context("--tls-cert/--tls-key")?,
        ),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let sync = match args.sync {
        SyncMode::Normal => kiln_store::sqlite::Sync::Normal,
        SyncMode::Full => kiln_store::sqlite::Sync::Full,
    };
    let rate_limit = kiln_api::throttle::RateLimit::new(args.rate_limit, args.rate_burst)
        .map_err(anyhow::Error::msg)
        .context("--rate-limit")?;
    let mut quotas = kiln_api::quotas::Quotas::default();
    quotas
        .parse_assignments(&args.quotas.join(","))
        .map_err(anyhow::Error::msg)
        .context("--quota")?;
    let bad = kiln_wire::validate::warm_up();
    anyhow::ensure!(
        bad.is_empty(),
        "model patterns that do not compile: {bad:?}"
    );
    let mut service = Service::open_database(&args.worker.data_dir, database.as_ref(), sync)
        .with_context(|| args.worker.opening())?;
    if let Some(clock) = args.worker.clock() {
        service = service.with_clock(clock);
    }
    let service = Arc::new(
        service
            .with_parent_rules(args.worker.parent_rules()?)
            .with_container_registries(worker_config.ecr_registries.coverage())
            .with_quotas(quotas)
            .with_documents(document_source(&args)?),
    );
    // With --build-concurrency 0 the worker runs no builds but still recovers, keeps leases
    // and answers Kiln's own endpoints (logs, exports, instances).
    if args.worker.build_concurrency == Some(0) && database.is_none() {
        tracing::warn!("--build-concurrency 0 on SQLite: images are queued but nothing builds them (kiln worker needs --database)");
    }
    let worker = Arc::new(
        kiln_worker::Worker::start(service.core.clone(), worker_config)
            .context("starting the build worker")?,
    );
    let listener = worker::listen_for_work(&service.core)?;
    // After the worker, whose start-up recovery settles what a previous run left.
    let scheduler = kiln_scheduler::Scheduler::new(service.core.clone());
    scheduler.start().context("starting the scheduler")?;
    let extension: Arc<dyn kiln_core::extension::Extension> =
        Arc::new(kiln_core::extension::Routes {
            routes: vec![
                (
                    "schedule",
                    Arc::new(kiln_scheduler::extension::ScheduleExtension {
                        core: service.core.clone(),
                    }),
                ),
                (
                    "lifecycle",
                    Arc::new(kiln_core::lifecycle::extension::LifecycleExtension {
                        core: service.core.clone(),
                    }),
                ),
                (
                    "vulndb",
                    Arc::new(kiln_core::vulndb::VulnDbExtension {
                        core: service.core.clone(),
                        importers: args.vulndb_importers.clone(),
                    }),
                ),
            ],
            fallback: worker.extension(),
        });
    // Not waited for: gaps are logged and the verdict kept for GET /kiln/v1/health.
    let readiness = Arc::new(kiln_api::health::Readiness::default());
    doctor::check_in_background(&args.worker, readiness.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stopped_worker = worker.clone();
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        tokio::spawn(purge_tokens_hourly(service.clone()));
        tokio::spawn(reload_on_sighup(Some(auth.clone()), log_level));
        let shutdown = shutdown_signal();
        tracing::info!(data_dir = %args.worker.data_dir.display(), "kiln ready");
        println!("kiln listening on {scheme}://{addr}");
        kiln_api::serve(
            listener,
            service,
            ServerConfig {
                auth,
                tls,
                extension: Some(extension),
                throttle: kiln_api::throttle::Throttle::new(rate_limit),
                readiness: Some(readiness),
            },
            shutdown,
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    });
    drop(listener);
    scheduler.stop();
    // Builds still running end FAILED "interrupted"; their instances are torn down.
    stopped_worker.stop();
    tracing::info!("kiln stopped");
    served
}

async fn purge_tokens_hourly(service: Arc<Service>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        // Tokens are stamped with the service clock's time, so they expire on it too.
        let cutoff = service.clock.now_millis() - kiln_api::service::TOKEN_RETENTION_MILLIS;
        let service = service.clone();
        match tokio::task::spawn_blocking(move || service.store.purge_tokens(cutoff)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(purged = n, "forgot expired idempotency tokens"),
            Ok(Err(e)) => tracing::warn!(error = %e, "purging idempotency tokens failed"),
            _ => {}
        }
    }
}

/// SIGHUP reloads what can change without a restart: the credentials file of `kiln serve` (a
/// file that does not load leaves the keys as they were) and the log level, read again from the
/// command line, the environment and the config file with the same precedence as at start (a
/// file that no longer parses leaves the level as it was). Requests go on being served
/// meanwhile: both are swapped in place.
///
/// Called before the process says it is ready: a SIGHUP that came before the handler was in
/// place would end the process (the signal's default action).
fn reload_on_sighup(
    auth: Option<Arc<Authenticator>>,
    log_level: Option<String>,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup());
    async move {
        match hup {
            Ok(hup) => reload_on_each(hup, auth, log_level).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; the credentials file and the log level are read only at start")
            }
        }
    }
}

async fn reload_on_each(
    mut hup: tokio::signal::unix::Signal,
    auth: Option<Arc<Authenticator>>,
    mut log_level: Option<String>,
) {
    while hup.recv().await.is_some() {
        if let Some(auth) = &auth {
            reload_credentials(auth);
        }
        reload_log_level(&mut log_level);
    }
}

fn reload_credentials(auth: &Authenticator) {
    match auth.reload() {
        Ok(n) if !auth.is_insecure() => {
            tracing::info!(keys = n, "SIGHUP: reloaded the credentials file")
        }
        Ok(_) => tracing::info!("SIGHUP: no credentials file to reload (--insecure-no-auth)"),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the credentials file did not load; keeping the keys in use")
        }
    }
}

/// `current`: the filter in force, replaced when the configuration now says another.
fn reload_log_level(current: &mut Option<String>) {
    match config::try_parse(std::env::args_os().collect()) {
        Ok(invocation) if invocation.log_level != *current => {
            let Some(level) = invocation.log_level else {
                return;
            };
            match logging::reload(&level) {
                Ok(()) => {
                    tracing::info!(log_level = %level, previous = ?current, "SIGHUP: log level changed");
                    *current = Some(level);
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: keeping the log level"),
            }
        }
        Ok(_) => tracing::info!("SIGHUP: log level unchanged"),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the configuration does not load; keeping the log level")
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are in place when this returns (call it before
/// the process says it is ready): a SIGTERM that came before them would end the process at
/// once, without the graceful shutdown.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM and SIGINT; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
