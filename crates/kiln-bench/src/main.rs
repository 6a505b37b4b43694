//! Benchmarks. Not tests: they print figures next to their baselines, measured in the same run.
//!
//! `cargo run --release -p kiln-bench -- api [--seconds N] [--connections N] [--postgres |
//! --database postgres://...]` starts the API server in this process on a fresh SQLite database,
//! and a bare HTTP handler on the same stack (tokio + hyper, same accept loop settings) as the
//! ceiling, then drives each over loopback with keep-alive HTTP/1.1 connections:
//! - CreateImagePipeline (every request a new pipeline with its own clientToken),
//! - GetImagePipeline (random pipelines among those created),
//! - the bare handler.
//!
//! Creates run for `--seconds`; gets and the ceiling then alternate in five rounds that share
//! `--seconds`, because the machine is shared and noisy: each round measures gets with the
//! answer cache, the ceiling, gets without it (`Service::set_answer_cache`: every answer read
//! from the database, as on servers that share one), the ceiling again, and each get/ceiling
//! ratio reported is the median of the rounds' ratios. It prints throughput and p50/p99 latency
//! for each, and the figures next to their targets: creates >= 5,000/s with p99 <= 12 ms; gets
//! without the cache >= 50% of the ceiling's throughput; gets with it not below main. With
//! `--postgres` (a throwaway cluster of its own, see `cluster.rs`) or `--database URL` (a fresh
//! database on that server) it then does the same on PostgreSQL and prints both side by side,
//! PostgreSQL against its own targets: creates at least 2,000/s with p99 <= 30 ms; gets with the
//! cache >= 30% of the ceiling.
//!
//! `--uncached-only` creates, then runs only gets without the cache for `--seconds` (no
//! ceiling, no rounds): a steady load to attach `perf record -p` to. `--cached-only` runs the
//! rounds without their uncached half, as the benchmark ran before it measured both.
//!
//! `cargo run --release -p kiln-bench -- claims [--database postgres://...] [--workers 4]
//! [--threads N] [--builds N]` measures build claims on PostgreSQL (see `claims.rs`).
//!
//! `cargo run --release -p kiln-bench -- toe [--rounds N] [--steps N]` measures the component
//! engine's overhead per step (see `toe.rs`).
//!
//! `cargo run --release -p kiln-bench -- snapshot [--tree DIR] [--rounds N]` measures the image
//! store's snapshot of a root filesystem into a layer against `tar | zstd | sha256sum` and
//! `buildah commit` (see `snapshot.rs`).
//!
//! `cargo run --release -p kiln-bench -- build [--rounds N] [--kiln PATH] [--only busybox|debian]
//! [--buildah-driver overlay|vfs]` starts the `kiln` server binary and measures whole image
//! builds of two reference recipes, from StartImagePipelineExecution to AVAILABLE, against
//! buildah doing the same steps (`from`, one `run` per component, `commit`): a busybox base with
//! five small components (see `build.rs`), then the managed `debian-12-minimal-x86` base with a
//! local .deb installed, 200 MB in 20,000 files, permissions changed and a directory of the
//! parent deleted, and a test phase reading it all back (see `debian.rs`).
//!
//! `cargo run --release -p kiln-bench -- container [--rounds N] [--kiln PATH]` measures a
//! container pipeline's build and push against `buildah bud` + `buildah push` of the same
//! Dockerfile, and a 170 MB push against `skopeo copy` (see `container.rs`).
//!
//! `cargo run --release -p kiln-bench -- schedule [--pipelines N] [--rounds R] [--idle-seconds S]`
//! creates N scheduled pipelines (100,000 by default) through the API and measures the
//! scheduler's targets: computing every dateNextRun, how soon a due pipeline starts, and the
//! idle scheduler's CPU use (see `schedule.rs`).
//!
//! `cargo run --release -p kiln-bench -- vulndb [--records N] [--images N] [--tree DIR]`
//! measures the vulnerability scanner: an import of 100,000 generated OSV records, a scan of the
//! managed Debian base image against them, and the re-evaluation of 1,000 images after an
//! import (see `vulndb.rs`).

/// The allocator the `kiln` binary uses, so that the server measured here is the one shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod build;
mod ceiling;
mod claims;
mod client;
mod cluster;
mod container;
mod debian;
mod schedule;
mod snapshot;
mod stages;
mod toe;
mod vulndb;
mod workflows;

use anyhow::{bail, Context, Result};
use client::Connection;
use kiln_api::{Accounts, ServerConfig, Service};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds of gets and ceiling, alternating.
const ROUNDS: usize = 5;

struct Options {
    seconds: f64,
    connections: usize,
    /// Also run on PostgreSQL: at this server, or (`Some(None)`) on a throwaway cluster.
    postgres: Option<Option<String>>,
    /// Only gets without the answer cache, for `--seconds`, no ceiling (for a profiler).
    uncached_only: bool,
    /// Rounds of gets with the answer cache and the ceiling only, as the benchmark ran before it
    /// also measured gets without the cache (to compare with those figures).
    cached_only: bool,
}

fn parse_options() -> Result<(String, Options)> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let mut options = Options {
        seconds: 5.0,
        connections: 32,
        postgres: None,
        uncached_only: false,
        cached_only: false,
    };
    while let Some(flag) = args.next() {
        if flag == "--postgres" {
            options.postgres.get_or_insert(None);
            continue;
        }
        if flag == "--uncached-only" {
            options.uncached_only = true;
            continue;
        }
        if flag == "--cached-only" {
            options.cached_only = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => options.seconds = value.parse().context("--seconds")?,
            "--connections" => options.connections = value.parse().context("--connections")?,
            "--database" => options.postgres = Some(Some(value)),
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok((which, options))
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("toe") => return toe::main(std::env::args().skip(2)),
        Some("snapshot") => return snapshot::main(std::env::args().skip(2)),
        Some("build") => return build::main(std::env::args().skip(2)),
        Some("container") => return container::main(std::env::args().skip(2)),
        Some("workflows") => return workflows::main(std::env::args().skip(2)),
        Some("schedule") => return schedule::main(std::env::args().skip(2)),
        Some("claims") => return claims::main(std::env::args().skip(2)),
        Some("vulndb") => return vulndb::main(std::env::args().skip(2)),
        _ => {}
    }
    let (which, options) = parse_options()?;
    if which != "api" {
        bail!(
            "usage: kiln-bench api [--seconds N] [--connections N] [--postgres | --database URL] [--uncached-only | --cached-only] | claims [--database URL] [--workers N] [--threads N] [--builds N] | toe [--rounds N] [--steps N] | snapshot [--tree DIR] [--rounds N] | build [--rounds N] [--kiln PATH] [--only busybox|debian] [--buildah-driver overlay|vfs] | workflows [--rounds N] [--kiln PATH] [--baseline PATH] | schedule [--pipelines N] [--rounds R] [--idle-seconds S] | vulndb [--records N] [--images N] [--rounds N] [--tree DIR]"
        );
    }
    // The PostgreSQL client blocks: the database is made (and dropped) outside the runtime.
    let target = match &options.postgres {
        Some(url) => Some(cluster::Target::new(url.as_deref())?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let services = runtime.block_on(api(options, target.as_ref()))?;
    drop(runtime);
    drop(services);
    drop(target);
    Ok(())
}

/// Latencies of one phase, and how long it ran.
struct Measured {
    name: &'static str,
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
}

impl Measured {
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }
    fn print(&self) {
        println!(
            "{:<28} {:>10.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests, {} errors)",
            self.name,
            self.throughput(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.latencies.len(),
            self.errors
        );
    }
}

/// Runs `connections` loops for `seconds`; each loop sends what `request(i)` gives.
async fn drive<F>(
    name: &'static str,
    addr: SocketAddr,
    options: &Options,
    request: F,
) -> Result<Measured>
where
    F: Fn(usize) -> (String, String, String) + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        let request = request.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr).await?;
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let (method, path, body) = request(i);
                let t = Instant::now();
                let status = conn.send(&method, &path, &body).await?;
                latencies.push(t.elapsed());
                if status != 200 {
                    errors += 1;
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await??;
        all.extend(latencies);
        errors += e;
    }
    Ok(Measured {
        name,
        latencies: all,
        elapsed: started.elapsed(),
        errors,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// The round with the median throughput.
fn median_by_throughput(mut rounds: Vec<Measured>) -> Measured {
    rounds.sort_by(|a, b| a.throughput().total_cmp(&b.throughput()));
    let middle = rounds.len() / 2;
    rounds.swap_remove(middle)
}

async fn setup(addr: SocketAddr) -> Result<(String, String)> {
    let mut conn = Connection::open(addr).await?;
    let infra = conn
        .call(
            "PUT",
            "/CreateInfrastructureConfiguration",
            r#"{"name":"bench","instanceProfileName":"p","clientToken":"infra"}"#,
        )
        .await?;
    let recipe = conn
        .call(
            "PUT",
            "/CreateImageRecipe",
            r#"{"name":"bench","semanticVersion":"1.0.0","parentImage":"arn:aws:imagebuilder:us-east-1:aws:image/debian-12-x86/x.x.x","clientToken":"recipe"}"#,
        )
        .await?;
    let infra = infra["infrastructureConfigurationArn"]
        .as_str()
        .context("no infrastructure ARN")?
        .to_string();
    let recipe = recipe["imageRecipeArn"]
        .as_str()
        .context("no recipe ARN")?
        .to_string();
    Ok((infra, recipe))
}

/// Gets of one kind (answer cache on or off) against the ceiling, round by round.
struct Gets {
    get: Measured,
    ceiling: Measured,
    ratios: Vec<f64>,
}

impl Gets {
    fn new(gets: Vec<Measured>, ceilings: Vec<Measured>) -> Gets {
        let ratios = gets
            .iter()
            .zip(&ceilings)
            .map(|(g, c)| g.throughput() / c.throughput())
            .collect();
        Gets {
            get: median_by_throughput(gets),
            ceiling: median_by_throughput(ceilings),
            ratios,
        }
    }
    fn ratio(&self) -> f64 {
        median(&self.ratios)
    }
    fn rounds(&self) -> String {
        self.ratios
            .iter()
            .map(|r| format!("{:.0}%", r * 100.0))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What one backend measured.
struct Figures {
    creates: Measured,
    cached: Gets,
    uncached: Option<Gets>,
}

impl Figures {
    fn print(&self) {
        self.creates.print();
        self.cached.get.print();
        self.cached.ceiling.print();
        if let Some(uncached) = &self.uncached {
            uncached.get.print();
            uncached.ceiling.print();
        }
    }
}

/// What gets must reach, as a share of the ceiling.
#[derive(Clone, Copy)]
enum Share {
    AtLeast(f64),
    /// No fixed figure: not below the build before, measured in the same session.
    NotBelowMain,
    None,
}

/// Targets of one backend: creates per second, their p99 in ms, gets with and without the
/// answer cache.
struct Targets {
    creates: f64,
    p99_ms: f64,
    cached: Share,
    uncached: Share,
}

const SQLITE_TARGETS: Targets = Targets {
    creates: 5000.0,
    p99_ms: 12.0,
    cached: Share::NotBelowMain,
    uncached: Share::AtLeast(0.5),
};
const POSTGRES_TARGETS: Targets = Targets {
    creates: 2000.0,
    p99_ms: 30.0,
    cached: Share::AtLeast(0.3),
    uncached: Share::None,
};

fn target_text(target: Share) -> String {
    match target {
        Share::AtLeast(t) => format!("target >= {:.0}%", 100.0 * t),
        Share::NotBelowMain => "target: not below main".to_string(),
        Share::None => "no target".to_string(),
    }
}

async fn api(options: Options, postgres: Option<&cluster::Target>) -> Result<Vec<Arc<Service>>> {
    let (ceiling_addr, ceiling_stop) = ceiling::start().await?;
    let mut services = Vec::new();
    let data = tempfile::tempdir()?;
    println!(
        "kiln-bench api: {} connections, {} s per phase, SQLite in {}",
        options.connections,
        options.seconds,
        data.path().display()
    );
    let path = data.path().to_path_buf();
    let (sqlite, service) = on_backend(&options, ceiling_addr, path, None).await?;
    services.push(service);
    println!();
    sqlite.print();
    println!();
    let mut results = vec![("SQLite", sqlite, SQLITE_TARGETS)];
    if let Some(target) = postgres {
        let data = tempfile::tempdir()?;
        println!("PostgreSQL: {}", target.describe());
        let database = kiln_store::Database::Postgres(target.database.url.clone());
        let path = data.path().to_path_buf();
        let (figures, service) = on_backend(&options, ceiling_addr, path, Some(database)).await?;
        services.push(service);
        println!();
        figures.print();
        println!();
        results.push(("PostgreSQL", figures, POSTGRES_TARGETS));
    }
    for (name, figures, targets) in &results {
        let p99 = figures.creates.percentile(0.99).as_secs_f64() * 1e3;
        println!(
            "{name:<10} creates: {:.0}/s vs target {:.0}/s (x{:.2}); p99 {:.2} ms vs target {:.0} ms",
            figures.creates.throughput(),
            targets.creates,
            figures.creates.throughput() / targets.creates,
            p99,
            targets.p99_ms,
        );
        let measured = [
            ("cached", Some(&figures.cached), targets.cached),
            ("uncached", figures.uncached.as_ref(), targets.uncached),
        ];
        for (which, gets, target) in measured {
            let Some(gets) = gets else { continue };
            println!(
                "{name:<10} gets, {which:<8}: median {:.0}/s; median ratio to the ceiling {:.0}% ({}; rounds: {})",
                gets.get.throughput(),
                100.0 * gets.ratio(),
                target_text(target),
                gets.rounds()
            );
        }
    }
    let _ = ceiling_stop.send(());
    Ok(services)
}

/// Runs the three phases against a server on `database` (SQLite under `data_dir` if `None`).
async fn on_backend(
    options: &Options,
    ceiling_addr: SocketAddr,
    data_dir: std::path::PathBuf,
    database: Option<kiln_store::Database>,
) -> Result<(Figures, Arc<Service>)> {
    // Every request creates a pipeline: far more than an account's quota allows. Opening a
    // PostgreSQL store blocks, so it runs off the runtime's threads.
    let service = tokio::task::spawn_blocking(move || {
        Service::open_database(
            &data_dir,
            database.as_ref(),
            kiln_store::sqlite::Sync::Normal,
        )
    })
    .await??
    .with_quotas(kiln_api::quotas::Quotas::unlimited());
    let service = Arc::new(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kiln_api::serve(
        listener,
        service.clone(),
        // The benchmark's hand-written client sends unsigned requests: this measures the API
        // without the signature check (an HMAC chain per request).
        ServerConfig {
            auth: Arc::new(kiln_api::Authenticator::insecure(
                Accounts::default(),
                kiln_auth::regions::Regions::default(),
            )),
            tls: None,
            extension: None,
            readiness: None,
            // Consulted on every request, as in production, but never empty: the benchmark
            // measures the server, not the limit.
            throttle: kiln_api::throttle::Throttle::new(Some(kiln_api::throttle::RateLimit {
                per_second: 1e9,
                burst: u32::MAX,
            })),
        },
        async {
            let _ = stopped.await;
        },
    ));

    let (infra, recipe) = setup(addr).await?;
    let body = move |i: usize| {
        let body = serde_json::json!({
            "name": format!("pipeline {i}"),
            "imageRecipeArn": recipe,
            "infrastructureConfigurationArn": infra,
            "schedule": {"scheduleExpression": "cron(0 0 * * ? *)", "timezone": "Europe/Berlin"},
            "tags": {"bench": "yes"},
            "clientToken": format!("token-{i}"),
        });
        (
            "PUT".to_string(),
            "/CreateImagePipeline".to_string(),
            body.to_string(),
        )
    };
    let creates = drive("CreateImagePipeline", addr, options, body).await?;
    let created = creates.latencies.len();
    let get = move |i: usize| {
        let n = (i * 7919) % created.max(1);
        let arn = format!(
            "arn%3Aaws%3Aimagebuilder%3Aus-east-1%3A123456789012%3Aimage-pipeline%2Fpipeline-{n}"
        );
        (
            "GET".to_string(),
            format!("/GetImagePipeline?imagePipelineArn={arn}"),
            String::new(),
        )
    };
    let bare = |_| ("GET".to_string(), "/".to_string(), String::new());
    // The machine is shared and noisy: gets and the ceiling alternate in short rounds, and the
    // ratio is the median of the rounds' ratios.
    let round = Options {
        seconds: options.seconds / ROUNDS as f64,
        connections: options.connections,
        postgres: None,
        uncached_only: false,
        cached_only: false,
    };
    if options.uncached_only {
        service.set_answer_cache(false);
        let gets = drive("GetImagePipeline, no cache", addr, options, get).await?;
        gets.print();
        let _ = stop.send(());
        server.await??;
        // A run for a profiler: nothing else is measured, so there is nothing else to print.
        std::process::exit(0);
    }
    // Each round: gets with the answer cache, the ceiling, gets without it, the ceiling. Every
    // round reads the same pipelines in the same order, so from the second round on the cached
    // gets find the answers of the one before (as many as the cache holds).
    let (mut cached, mut cached_ceilings) = (Vec::new(), Vec::new());
    let (mut uncached, mut uncached_ceilings) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        service.set_answer_cache(true);
        cached.push(drive("GetImagePipeline", addr, &round, get).await?);
        cached_ceilings.push(drive("bare handler (ceiling)", ceiling_addr, &round, bare).await?);
        if options.cached_only {
            continue;
        }
        service.set_answer_cache(false);
        uncached.push(drive("GetImagePipeline, no cache", addr, &round, get).await?);
        uncached_ceilings.push(drive("bare handler (ceiling)", ceiling_addr, &round, bare).await?);
    }
    service.set_answer_cache(true);
    let figures = Figures {
        creates,
        cached: Gets::new(cached, cached_ceilings),
        uncached: (!uncached.is_empty()).then(|| Gets::new(uncached, uncached_ceilings)),
    };
    let _ = stop.send(());
    server.await??;
    Ok((figures, service))
}
