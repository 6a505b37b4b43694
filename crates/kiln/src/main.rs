//! The `kiln` command: a thin layer over the library crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kiln_api::{Accounts, ServerConfig, Service};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

mod client;
mod image;
mod instance;
mod logs;
mod pipeline;
mod toe;

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
    Serve(ServeArgs),
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
    /// Address to listen on.
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Directory that holds all state (the SQLite database).
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
    data_dir: PathBuf,
    /// Access key to account map, `AKID=111122223333,AKID2=444455556666`. Keys not listed
    /// belong to --default-account.
    #[arg(long, env = "KILN_ACCOUNTS", default_value = "")]
    accounts: String,
    /// Account of access keys not in --accounts.
    #[arg(long, env = "KILN_DEFAULT_ACCOUNT", default_value = kiln_api::accounts::DEFAULT_ACCOUNT)]
    default_account: String,
    /// Region of requests that carry no SigV4 credential scope.
    #[arg(long, env = "KILN_DEFAULT_REGION", default_value = kiln_api::accounts::DEFAULT_REGION)]
    default_region: String,
    /// Durability of commits.
    #[arg(long, env = "KILN_SYNC", value_enum, default_value = "normal")]
    sync: SyncMode,
    /// Image builds that run at once (default: the number of cores).
    #[arg(long, env = "KILN_BUILD_CONCURRENCY")]
    build_concurrency: Option<usize>,
    /// The Debian mirror the managed debian-12-minimal-x86 base image is made from.
    #[arg(long, env = "KILN_DEBIAN_MIRROR", default_value = kiln_image::DEFAULT_DEBIAN_MIRROR)]
    debian_mirror: String,
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
    /// For tests: read Kiln's time (requests, builds, schedules) from this file, an RFC 3339
    /// instant that the test rewrites to move time, instead of the system clock.
    #[arg(long, env = "KILN_CLOCK_FILE")]
    clock_file: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Toe(command) => std::process::exit(toe::main(command)),
        Command::Logs(args) => std::process::exit(logs::main(args)),
        Command::Image(command) => std::process::exit(image::main(command)),
        Command::Instance(command) => std::process::exit(instance::main(command)),
        Command::Pipeline(command) => std::process::exit(pipeline::main(command)),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let mut accounts = Accounts::default();
    if args.default_account.len() != 12 || !args.default_account.bytes().all(|b| b.is_ascii_digit())
    {
        anyhow::bail!(
            "--default-account '{}' must be 12 digits",
            args.default_account
        );
    }
    accounts.default_account = args.default_account;
    accounts.default_region = args.default_region;
    accounts
        .parse_map(&args.accounts)
        .map_err(anyhow::Error::msg)
        .context("--accounts")?;
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
    let mut service = Service::open(&args.data_dir, sync)
        .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
    if let Some(path) = &args.clock_file {
        tracing::warn!(path = %path.display(), "using a test clock");
        service = service.with_clock(Arc::new(kiln_api::clock::FileClock::new(path.clone())));
    }
    let service = Arc::new(service.with_quotas(quotas));
    let mut worker_config = kiln_worker::WorkerConfig::new(&args.data_dir);
    if let Some(n) = args.build_concurrency {
        anyhow::ensure!(n > 0, "--build-concurrency must be at least 1");
        worker_config.concurrency = n;
    }
    worker_config.debian_mirror = args.debian_mirror.clone();
    let worker = Arc::new(
        kiln_worker::Worker::start(service.clone(), worker_config)
            .context("starting the build worker")?,
    );
    // After the worker, whose start-up recovery settles what a previous run left.
    let scheduler = kiln_scheduler::Scheduler::new(service.clone());
    scheduler.start().context("starting the scheduler")?;
    let extension: Arc<dyn kiln_api::extension::Extension> =
        Arc::new(kiln_api::extension::Routes {
            routes: vec![(
                "schedule",
                Arc::new(kiln_scheduler::extension::ScheduleExtension {
                    service: service.clone(),
                }),
            )],
            fallback: worker.extension(),
        });
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
        tracing::info!(data_dir = %args.data_dir.display(), "kiln ready");
        println!("kiln listening on http://{addr}");
        kiln_api::serve(
            listener,
            service,
            ServerConfig {
                accounts,
                extension: Some(extension),
                throttle: kiln_api::throttle::Throttle::new(rate_limit),
            },
            shutdown_signal(),
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    });
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
        let cutoff =
            chrono::Utc::now().timestamp_millis() - kiln_api::service::TOKEN_RETENTION_MILLIS;
        let service = service.clone();
        match tokio::task::spawn_blocking(move || service.store.purge_tokens(cutoff)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(purged = n, "forgot expired idempotency tokens"),
            Ok(Err(e)) => tracing::warn!(error = %e, "purging idempotency tokens failed"),
            _ => {}
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}
