//! `kiln-bench claims [--database postgres://...] [--workers 4] [--threads 1,4] [--builds N]`:
//! build claims on PostgreSQL by several workers at once, as separate `kiln worker` processes
//! would make them.
//!
//! It enqueues `--builds` builds, then starts `--workers` workers, each with a store (and so a
//! connection pool and a writer connection) of its own, like a process; each worker runs
//! `--threads` claim loops, as a worker runs one per build slot (`--build-concurrency`). Every
//! loop claims until the queue is empty. It reports claims per second and double claims (builds
//! claimed more than once: must be 0) against the target (>= 1,000 claims/s with 4 workers,
//! zero double claims), once per value of `--threads`. Without `--database` it starts a
//! throwaway cluster (see `cluster.rs`); with one, it works in a fresh database on that server.

use crate::cluster::Target;
use anyhow::{bail, Context, Result};
use kiln_store::{Database, Store, Sync};
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Instant;

const TARGET_PER_SECOND: f64 = 1000.0;
/// Builds enqueued per write transaction while setting up.
const ENQUEUE_CHUNK: usize = 1000;

struct Options {
    database: Option<String>,
    workers: usize,
    threads: Vec<usize>,
    builds: usize,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        database: None,
        workers: 4,
        threads: vec![1, 4],
        builds: 10_000,
    };
    let mut args = args;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database" => options.database = Some(value),
            "--workers" => options.workers = value.parse().context("--workers")?,
            "--builds" => options.builds = value.parse().context("--builds")?,
            "--threads" => {
                options.threads = value
                    .split(',')
                    .map(|t| t.trim().parse().context("--threads: a list like 1,4"))
                    .collect::<Result<_>>()?
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    if options.workers == 0 || options.threads.contains(&0) {
        bail!("--workers and --threads must be at least 1");
    }
    Ok(options)
}

/// One claim, as `kiln worker` makes it: with a lease of the default length from now.
fn claim(store: &Store, worker: &str) -> Result<Option<String>> {
    let now = chrono::Utc::now().timestamp_millis();
    let lease = kiln_worker::lease_millis(kiln_worker::DEFAULT_LEASE);
    Ok(store.write(|tx| tx.claim_build(worker, now, lease))??)
}

struct Pass {
    threads: usize,
    claims: usize,
    seconds: f64,
    doubles: usize,
    missing: usize,
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let target = Target::new(options.database.as_deref())?;
    let database = Database::Postgres(target.database.url.clone());
    println!(
        "kiln-bench claims: {} builds, {} workers, PostgreSQL {}",
        options.builds,
        options.workers,
        target.describe()
    );
    let mut passes = Vec::new();
    for (n, &threads) in options.threads.iter().enumerate() {
        let pass = run(&database, &options, threads, n)?;
        println!(
            "{} worker(s) x {threads} claim loop(s): {} claims in {:.2} s = {:.0} claims/s; \
             {} double claims, {} builds never claimed",
            options.workers,
            pass.claims,
            pass.seconds,
            pass.claims as f64 / pass.seconds,
            pass.doubles,
            pass.missing
        );
        passes.push(pass);
    }
    println!();
    for pass in &passes {
        let rate = pass.claims as f64 / pass.seconds;
        println!(
            "claims ({} workers x {} loops): {rate:.0}/s vs target {TARGET_PER_SECOND:.0}/s (x{:.2}); \
             double claims {} (target 0)",
            options.workers,
            pass.threads,
            rate / TARGET_PER_SECOND,
            pass.doubles
        );
    }
    Ok(())
}

fn run(database: &Database, options: &Options, threads: usize, pass: usize) -> Result<Pass> {
    let setup = Store::open(database, Sync::Normal)?;
    let arns: Vec<String> = (0..options.builds)
        .map(|i| {
            format!("arn:aws:imagebuilder:us-east-1:123456789012:image/bench-{pass}/1.0.0/{i}")
        })
        .collect();
    for (c, chunk) in arns.chunks(ENQUEUE_CHUNK).enumerate() {
        setup.write(|tx| {
            for (i, arn) in chunk.iter().enumerate() {
                tx.enqueue_build(arn, (c * ENQUEUE_CHUNK + i) as i64)?;
            }
            Ok::<_, kiln_store::StoreError>(())
        })??;
    }
    drop(setup);

    let workers: Vec<Arc<Store>> = (0..options.workers)
        .map(|_| Store::open(database, Sync::Normal).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let start = Arc::new(Barrier::new(options.workers * threads + 1));
    let loops: Vec<_> = workers
        .iter()
        .enumerate()
        .flat_map(|(w, store)| {
            let start = start.clone();
            (0..threads).map(move |_| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || -> Result<Vec<String>> {
                    let worker = format!("bench-worker-{w}");
                    start.wait();
                    let mut claimed = Vec::new();
                    while let Some(arn) = claim(&store, &worker)? {
                        claimed.push(arn);
                    }
                    Ok(claimed)
                })
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut claims = 0;
    for handle in loops {
        let claimed = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a claim loop panicked"))??;
        claims += claimed.len();
        for arn in claimed {
            *counts.entry(arn).or_default() += 1;
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    drop(workers);
    Ok(Pass {
        threads,
        claims,
        seconds,
        doubles: counts.values().filter(|&&n| n > 1).count(),
        missing: options.builds - counts.len().min(options.builds),
    })
}
