//! `cargo run --release -p kiln-bench -- schedule [--pipelines N] [--rounds R] [--idle-seconds S]`:
//! the scheduler's scale targets: "with 100,000 scheduled pipelines in the database,
//! computing every dateNextRun takes under 1 s, a due pipeline starts within 1 s of its time,
//! and an idle scheduler uses under 1% of a core."
//!
//! Everything runs in this process on a fresh SQLite database (`Service::open`, `Sync::Normal`)
//! on the system clock:
//! - setup: one component, recipe and infrastructure configuration, then `--pipelines`
//!   pipelines through the real CreateImagePipeline handler (`Service::call`), with a mix of
//!   schedules (daily, weekday, weekly, monthly crons, `L`, `LW`, `W`, `#`, `rate(...)`) in
//!   several IANA zones, all `EXPRESSION_MATCH_ONLY`, each chosen so that its next run is at
//!   least [`MARGIN_MINUTES`] ahead (checked again with the store's `earliest_run`): nothing
//!   fires during the measurements. Timed, not a target.
//! - computing every dateNextRun: (a) parse + `ImagePipeline::next_run(now)` for every pipeline
//!   (records already in memory), with the parse and the calendar search also timed apart;
//!   in one batch that parses each distinct expression once, as Kiln computes them (the
//!   target), and one pipeline at a time; (b) `kiln_core::scheduled::reindex` over the whole database in one write
//!   transaction: read every pipeline row, decode when it runs, compute its next run, compare
//!   (nothing to write); (c) the same from an empty due set (every row written), as on the first
//!   start of a database from before the due set existed. Medians of `--rounds`.
//! - an idle scheduler: the real `Scheduler::start()` thread, nothing due for minutes; this
//!   process's CPU time (getrusage) over `--idle-seconds`, plus the scheduler thread's own CPU
//!   time and wakeups (/proc/self/task/<tid>/schedstat and voluntary context switches).
//! - a due pipeline starts: `--rounds` times, one more pipeline created through the API, its
//!   `schedules` row set to a due time 1.5 s ahead and the scheduler woken as any write wakes
//!   it; the main thread polls the pipeline record every 1 ms until `dateLastRun` is set.
//!   Latency = time observed - due; the scheduler's own view = the image's `dateCreated` - due.
//!   No build worker runs here: the images it starts stay PENDING.

use anyhow::{bail, Context, Result};
use kiln_api::Service;
use kiln_core::clock::{Clock, SystemClock};
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::image::Image;
use kiln_domain::resources::pipeline::{next_runs, ImagePipeline};
use kiln_domain::schedule::{parse_timezone, ScheduleExpression};
use kiln_scheduler::Scheduler;
use kiln_store::{ListQuery, StoreError, TxnExt};
use kiln_wire::{Operation, RequestContext};
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const MINUTE: i64 = 60_000;
/// Every pipeline's next run is at least this far ahead of the benchmark's start.
const MARGIN_MINUTES: i64 = 30;
/// How far ahead of "now" the latency rounds set their due time.
const DUE_AHEAD_MILLIS: i64 = 1_500;
/// The scheduler's targets (see the module docs).
const COMPUTE_TARGET_S: f64 = 1.0;
const START_TARGET_MS: f64 = 1_000.0;
const IDLE_TARGET_PERCENT: f64 = 1.0;
/// Threads creating pipelines during setup (the store batches their commits).
const SETUP_THREADS: usize = 4;

const ZONES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "America/Los_Angeles",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const RATES: &[&str] = &[
    "rate(1 day)",
    "rate(7 days)",
    "rate(3 days)",
    "rate(12 hours)",
    "rate(6 hours)",
    "rate(2 hours)",
    "rate(1 hour)",
];

struct Options {
    pipelines: usize,
    rounds: usize,
    idle_seconds: f64,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut args = args;
    let mut options = Options {
        pipelines: 100_000,
        rounds: 7,
        idle_seconds: 20.0,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pipelines" => options.pipelines = value.parse().context("--pipelines")?,
            "--rounds" => options.rounds = value.parse().context("--rounds")?,
            "--idle-seconds" => options.idle_seconds = value.parse().context("--idle-seconds")?,
            _ => bail!(
                "unknown flag {flag} (kiln-bench schedule [--pipelines N] [--rounds R] [--idle-seconds S])"
            ),
        }
    }
    if options.rounds == 0 || options.idle_seconds <= 0.0 {
        bail!("--rounds and --idle-seconds must be positive");
    }
    Ok(options)
}

/// A deterministic pseudo-random number from `seed` (splitmix64).
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Candidate `attempt` for pipeline `i`: an expression and a zone.
fn candidate(i: usize, attempt: u64) -> (String, &'static str) {
    let r = mix((i as u64) << 8 | attempt);
    let pick = |shift: u32, n: u64| ((r >> shift) % n) as usize;
    let zone = ZONES[pick(0, ZONES.len() as u64)];
    let m = pick(8, 12) * 5;
    let h = pick(16, 24);
    let h2 = (h + 12) % 24;
    let dow = DAYS[pick(24, 7)];
    let dom = 1 + pick(32, 28);
    let nth = 1 + pick(40, 4);
    let expression = match pick(48, 100) {
        0..=29 => format!("cron({m} {h} * * ? *)"),
        30..=39 => format!("cron({m} {h} ? * MON-FRI *)"),
        40..=54 => format!("cron({m} {h} ? * {dow} *)"),
        55..=62 => format!("cron({m} {h} {dom} * ? *)"),
        63..=66 => format!("cron({m} {h} L * ? *)"),
        67..=68 => format!("cron({m} {h} LW * ? *)"),
        69..=71 => format!("cron({m} {h} {dom}W * ? *)"),
        72..=76 => format!("cron({m} {h} ? * {dow}#{nth} *)"),
        77..=78 => format!("cron({m} {h} ? * 6L *)"),
        79..=84 => format!("cron({m} {h},{h2} * * ? *)"),
        _ => RATES[pick(56, RATES.len() as u64)].to_string(),
    };
    (expression, zone)
}

/// Pipeline `i`'s schedule: the first candidate whose next run after `now` is at least
/// [`MARGIN_MINUTES`] ahead.
fn schedule_for(i: usize, now: i64) -> Result<(String, &'static str)> {
    let at = chrono::DateTime::from_timestamp_millis(now).context("now")?;
    for attempt in 0..64 {
        let (expression, zone) = candidate(i, attempt);
        let parsed = ScheduleExpression::parse(&expression)
            .map_err(|e| anyhow::anyhow!("{expression}: {}", e.message))?;
        let tz = parse_timezone(zone).map_err(|e| anyhow::anyhow!("{zone}: {}", e.message))?;
        let next = parsed.next_after(at, tz).map(|t| t.timestamp_millis());
        if next.is_some_and(|next| next >= now + MARGIN_MINUTES * MINUTE) {
            return Ok((expression, zone));
        }
    }
    bail!("no schedule for pipeline {i} runs at least {MARGIN_MINUTES} minutes ahead")
}

fn ctx(now: i64) -> RequestContext {
    RequestContext {
        request_id: "bench".into(),
        account_id: ACCOUNT.into(),
        region: REGION.into(),
        now_millis: now,
        valid_until: Default::default(),
        ..Default::default()
    }
}

fn call(service: &Service, op: Operation, input: Value) -> Result<Value> {
    let out = service
        .call(op, &ctx(SystemClock.now_millis()), input)
        .map_err(|e| anyhow::anyhow!("{op:?}: {} {}", e.kind.code(), e.message))?;
    Ok(serde_json::from_str(&out)?)
}

fn arn_of(value: &Value, member: &str) -> Result<String> {
    Ok(value[member]
        .as_str()
        .with_context(|| format!("no {member} in {value}"))?
        .to_string())
}

/// A component, a recipe using it and an infrastructure configuration: (recipe, infra) ARNs.
fn recipe_and_infra(service: &Service) -> Result<(String, String)> {
    call(
        service,
        Operation::CreateComponent,
        json!({"name": "comp", "semanticVersion": "1.0.0", "platform": "Linux", "clientToken": "c",
               "data": "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: S, action: ExecuteBash, inputs: {commands: ['true']}}\n"}),
    )?;
    let recipe = call(
        service,
        Operation::CreateImageRecipe,
        json!({"name": "rcp", "semanticVersion": "1.0.0", "clientToken": "r",
               "parentImage": "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
               "components": [{"componentArn": format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:component/comp/x.x.x")}]}),
    )?;
    let infra = call(
        service,
        Operation::CreateInfrastructureConfiguration,
        json!({"name": "infra", "instanceProfileName": "p", "clientToken": "i"}),
    )?;
    Ok((
        arn_of(&recipe, "imageRecipeArn")?,
        arn_of(&infra, "infrastructureConfigurationArn")?,
    ))
}

fn create_pipeline(
    service: &Service,
    (recipe, infra): (&str, &str),
    name: &str,
    expression: &str,
    zone: &str,
) -> Result<String> {
    let out = call(
        service,
        Operation::CreateImagePipeline,
        json!({"name": name, "clientToken": format!("p-{name}"),
               "imageRecipeArn": recipe, "infrastructureConfigurationArn": infra,
               "schedule": {"scheduleExpression": expression, "timezone": zone,
                            "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"}}),
    )?;
    arn_of(&out, "imagePipelineArn")
}

fn pipelines_query() -> ListQuery {
    ListQuery {
        account: ACCOUNT.into(),
        region: REGION.into(),
        kind: ResourceKind::ImagePipeline,
        name: None,
        after: None,
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::min)
}

fn spread(values: &[f64], unit: &str, scale: f64) -> String {
    format!(
        "median {:.1} {unit} (min {:.1}, max {:.1})",
        median(values) * scale,
        min(values) * scale,
        max(values) * scale
    )
}

/// This process's CPU time (user + system), from getrusage.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The scheduler thread's id in this process, by its name.
fn scheduler_tid() -> Option<String> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "kiln-scheduler")
        })
        .map(|task| task.file_name().to_string_lossy().into_owned())
}

/// Every thread of this process: id -> (name, ns on a CPU).
fn thread_times() -> std::collections::BTreeMap<String, (String, u64)> {
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some((on_cpu, _)) = thread_stats(&tid) {
            threads.insert(tid, (name.trim().to_string(), on_cpu));
        }
    }
    threads
}

/// A thread's time on a CPU (ns, from schedstat) and its voluntary context switches (each one
/// a sleep: the scheduler's wait between rounds, or a wait for a lock or the disk).
fn thread_stats(tid: &str) -> Option<(u64, u64)> {
    let schedstat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let on_cpu = schedstat.split_whitespace().next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()?;
    Some((on_cpu, switches))
}

struct Row {
    figure: String,
    measured: String,
    target: String,
    ok: bool,
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let run_started = Instant::now();
    let n = options.pipelines;
    let data = tempfile::tempdir()?;
    let service = Arc::new(
        Service::open(data.path(), kiln_store::sqlite::Sync::Normal)?
            .with_clock(Arc::new(SystemClock))
            // One account holds every pipeline: far more than its quota allows.
            .with_quotas(kiln_api::quotas::Quotas::unlimited()),
    );
    println!(
        "kiln-bench schedule: {n} pipelines, {} rounds, {} s idle window, SQLite in {}",
        options.rounds,
        options.idle_seconds,
        data.path().display()
    );

    // ---------------------------------------------------------------------------------------
    // Setup.
    let started = Instant::now();
    let now = SystemClock.now_millis();
    let schedules: Vec<(String, &str)> = (0..n)
        .map(|i| schedule_for(i, now))
        .collect::<Result<_>>()?;
    let chosen = started.elapsed();
    let (recipe, infra) = recipe_and_infra(&service)?;
    let next = AtomicUsize::new(0);
    let created = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..SETUP_THREADS)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((expression, zone)) = schedules.get(i) else {
                            return Ok(());
                        };
                        create_pipeline(
                            &service,
                            (&recipe, &infra),
                            &format!("pipeline-{i}"),
                            expression,
                            zone,
                        )?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a setup thread panicked")?;
        }
        Ok(())
    })?;
    let created = created.elapsed();
    let setup = started.elapsed();
    let (scheduled, earliest) = service.store.read(|tx| -> Result<_, StoreError> {
        let rows = tx.list_rows(&pipelines_query())?.len();
        Ok((rows, tx.earliest_run()?))
    })??;
    let earliest_ahead = earliest.map(|e| (e - SystemClock.now_millis()) as f64 / 60e3);
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for (expression, _) in &schedules {
        *kinds.entry(kind_of(expression)).or_default() += 1;
    }
    println!(
        "setup: {:.1} s ({:.2} s choosing schedules, {:.1} s for {n} CreateImagePipeline calls on {SETUP_THREADS} threads = {:.0}/s); {scheduled} pipelines stored; mix: {}; {} zones",
        setup.as_secs_f64(),
        chosen.as_secs_f64(),
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64(),
        kinds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        ZONES.len()
    );
    match earliest_ahead {
        Some(minutes) => println!("earliest run in the schedules table: {minutes:.1} min ahead"),
        None => println!("earliest run in the schedules table: none"),
    }
    if n > 0 && earliest_ahead.is_none_or(|m| m < 5.0) {
        bail!("a pipeline is due within 5 minutes: the measurements would see it fire");
    }
    let mut table = Vec::new();

    // ---------------------------------------------------------------------------------------
    // (a) Pure computation.
    let pipelines: Vec<ImagePipeline> = service
        .store
        .read(|tx| tx.list::<ImagePipeline>(&pipelines_query()))??;
    let mut compute = Vec::new();
    let mut parse_only = Vec::new();
    let mut search_only = Vec::new();
    let mut zone_only = Vec::new();
    let mut cached = Vec::new();
    let distinct = pipelines
        .iter()
        .filter_map(|p| p.definition.schedule.as_ref())
        .map(|s| (s.expression.as_str(), s.timezone.as_str()))
        .collect::<std::collections::HashSet<_>>()
        .len();
    let mut matches = 0;
    for round in 0..options.rounds {
        let now = SystemClock.now_millis();
        let t = Instant::now();
        let nexts: Vec<Option<i64>> = pipelines.iter().map(|p| p.next_run(now)).collect();
        compute.push(t.elapsed().as_secs_f64());
        if round == 0 {
            matches = pipelines
                .iter()
                .zip(&nexts)
                .filter(|(p, next)| p.date_next_run == **next && next.is_some())
                .count();
        }
        black_box(nexts);

        // As `kiln_core::scheduled::reindex` does: one batch, each distinct expression parsed
        // once.
        let t = Instant::now();
        let timings: Vec<_> = pipelines.iter().map(|p| p.timing()).collect();
        let batch = next_runs(&timings, now);
        cached.push(t.elapsed().as_secs_f64());
        if round == 0
            && pipelines
                .iter()
                .zip(&batch)
                .any(|(p, n)| p.date_next_run != *n)
        {
            bail!("the batch computation differs from the stored dateNextRun");
        }
        black_box(batch);

        let t = Instant::now();
        let parsed: Vec<_> = pipelines
            .iter()
            .filter_map(|p| p.definition.schedule.as_ref())
            .filter_map(|s| {
                Some((
                    ScheduleExpression::parse(&s.expression).ok()?,
                    parse_timezone(&s.timezone).ok()?,
                ))
            })
            .collect();
        parse_only.push(t.elapsed().as_secs_f64());
        let at = chrono::DateTime::from_timestamp_millis(now).context("now")?;
        let t = Instant::now();
        let nexts: Vec<_> = parsed.iter().map(|(e, tz)| e.next_after(at, *tz)).collect();
        search_only.push(t.elapsed().as_secs_f64());
        black_box(nexts);

        let t = Instant::now();
        let zones: Vec<_> = pipelines
            .iter()
            .filter_map(|p| p.definition.schedule.as_ref())
            .map(|s| parse_timezone(&s.timezone).ok())
            .collect();
        zone_only.push(t.elapsed().as_secs_f64());
        black_box(zones);
    }
    // Where the parse goes, by kind of expression: mean time of one parse (one round, each
    // parse timed alone).
    let mut by_kind = std::collections::BTreeMap::<&str, (f64, usize)>::new();
    for schedule in pipelines
        .iter()
        .filter_map(|p| p.definition.schedule.as_ref())
    {
        let t = Instant::now();
        black_box(ScheduleExpression::parse(&schedule.expression).ok());
        let took = t.elapsed().as_secs_f64();
        let entry = by_kind.entry(kind_of(&schedule.expression)).or_default();
        entry.0 += took;
        entry.1 += 1;
    }
    drop(pipelines);
    println!();
    println!(
        "(a) parse + next_run(now) for {n} pipelines in memory: {} (target < 1000 ms); {matches}/{n} equal the stored dateNextRun",
        spread(&compute, "ms", 1e3)
    );
    println!(
        "    of which parsing expression + zone: {}; the calendar search (next_after) alone: {}",
        spread(&parse_only, "ms", 1e3),
        spread(&search_only, "ms", 1e3)
    );
    println!(
        "    in one batch, each distinct expression parsed once (pipeline::next_runs, as kiln_core::scheduled::reindex computes): {} ({distinct} distinct expression+zone pairs)",
        spread(&cached, "ms", 1e3)
    );
    println!(
        "    parsing the zone names alone: {}; one expression parse, mean by kind: {}",
        spread(&zone_only, "ms", 1e3),
        by_kind
            .iter()
            .map(|(kind, (total, count))| format!(
                "{kind} {:.1} us ({count})",
                total / *count as f64 * 1e6
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    table.push(Row {
        figure: format!("(a) every dateNextRun, computed ({n})"),
        measured: format!("{:.0} ms", median(&cached) * 1e3),
        target: "< 1000 ms".into(),
        ok: median(&cached) < COMPUTE_TARGET_S,
    });

    // ---------------------------------------------------------------------------------------
    // (b) `kiln_core::scheduled::reindex` in one write transaction: read every pipeline row,
    // decode its timing, compute its next run, compare with the record and the due set (equal
    // here: nothing written), commit.
    let reindex = |what: &str| -> Result<f64> {
        let now = SystemClock.now_millis();
        let t = Instant::now();
        let read = service
            .store
            .write(|tx| kiln_core::scheduled::reindex(tx, now))?
            .map_err(|e| anyhow::anyhow!("reindex: {e}"))?;
        if read != scheduled {
            bail!("{what}: reindex read {read} pipelines, {scheduled} are stored");
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let mut reindexed = Vec::new();
    for _ in 0..options.rounds {
        reindexed.push(reindex("(b)")?);
    }
    println!(
        "(b) kiln_core::scheduled::reindex, one write transaction (read every pipeline, decode its timing, compute every next run, compare; nothing to write): {}",
        spread(&reindexed, "ms", 1e3)
    );
    // The target is for computing (a); this adds reading and decoding every record, which
    // happens once per database (the due set is kept from then on).
    table.push(Row {
        figure: format!("(b) reindex: read + compute all ({n})"),
        measured: format!("{:.0} ms", median(&reindexed) * 1e3),
        target: "(no target)".into(),
        ok: true,
    });

    // (c) The same from an empty due set, as on the first start of a database written before
    // Kiln kept one: every row is written.
    let earliest_before = service.store.read(|tx| tx.earliest_run())??;
    let mut rebuilt = Vec::new();
    for _ in 0..options.rounds.min(3) {
        service.store.write(|tx| -> Result<(), StoreError> {
            for (arn, _) in tx.due_runs(i64::MAX, usize::MAX)? {
                tx.set_next_run(&arn, None)?;
            }
            Ok(())
        })??;
        rebuilt.push(reindex("(c)")?);
    }
    if service.store.read(|tx| tx.earliest_run())?? != earliest_before {
        bail!("(c): the rebuilt due set differs from the one CreateImagePipeline wrote");
    }
    println!(
        "(c) reindex from an empty due set (writes {scheduled} rows; once, as on a database written before schedules were indexed): {}",
        spread(&rebuilt, "ms", 1e3)
    );
    table.push(Row {
        figure: format!("(c) reindex, empty due set ({n})"),
        measured: format!("{:.0} ms", median(&rebuilt) * 1e3),
        target: "(no target)".into(),
        ok: true,
    });

    // ---------------------------------------------------------------------------------------
    // The scheduler, idle.
    // The first round (nothing due, then the earliest next run) is timed apart: the idle
    // window starts once the thread sleeps and its CPU time stands still.
    let cpu_at_start = process_cpu();
    let started = Instant::now();
    let scheduler = Scheduler::new(service.core.clone());
    scheduler.start()?;
    let mut tid = None;
    let mut last = None;
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
        tid = tid.or_else(scheduler_tid);
        let now = tid.as_deref().and_then(thread_stats);
        if now.is_some() && now.map(|s| s.0) == last.map(|s: (u64, u64)| s.0) {
            break;
        }
        last = now;
    }
    let first_round = started.elapsed();
    let first_cpu = process_cpu().saturating_sub(cpu_at_start);
    let first_thread_cpu = last.map(|s| s.0 as f64 / 1e6);
    let threads_before = thread_times();
    let idle = Duration::from_secs_f64(options.idle_seconds);
    let thread_before = tid.as_deref().and_then(thread_stats);
    let cpu_before = process_cpu();
    let t = Instant::now();
    std::thread::sleep(idle);
    let cpu = process_cpu().saturating_sub(cpu_before);
    let wall = t.elapsed();
    let thread_after = tid.as_deref().and_then(thread_stats);
    let threads_after = thread_times();
    let percent = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    println!();
    println!(
        "scheduler start (index_once: a full reindex, this database never had one; then the first round): done and asleep within {:.0} ms (polled every 20 ms); its thread's CPU {}, the process's {:.0} ms",
        first_round.as_secs_f64() * 1e3,
        first_thread_cpu.map_or("unknown".to_string(), |ms| format!("{ms:.0} ms")),
        first_cpu.as_secs_f64() * 1e3
    );
    println!(
        "idle scheduler after its start ({scheduled} pipelines scheduled, earliest {:.1} min ahead): process CPU {:.3} ms over {:.1} s = {percent:.4}% of a core (target < 1%)",
        earliest_ahead.unwrap_or_default(),
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64()
    );
    match (thread_before, thread_after) {
        (Some((cpu0, sw0)), Some((cpu1, sw1))) => println!(
            "    the scheduler thread alone: {:.3} ms on a CPU, {} wakeups (it sleeps up to {} s when nothing is due soon)",
            (cpu1 - cpu0) as f64 / 1e6,
            sw1 - sw0,
            kiln_scheduler::MAX_SLEEP.as_secs()
        ),
        _ => println!("    (the scheduler thread's own figures are not available here)"),
    }
    let busy: Vec<String> = threads_after
        .iter()
        .filter_map(|(tid, (name, after))| {
            let before = threads_before.get(tid).map_or(0, |(_, t)| *t);
            let ms = after.saturating_sub(before) as f64 / 1e6;
            (ms >= 0.05).then(|| format!("{name} ({tid}) {ms:.2} ms"))
        })
        .collect();
    println!(
        "    CPU by thread in the window: {}",
        if busy.is_empty() {
            "none above 0.05 ms".to_string()
        } else {
            busy.join(", ")
        }
    );
    table.push(Row {
        figure: "idle scheduler, CPU of one core".into(),
        measured: format!("{percent:.3}%"),
        target: "< 1%".into(),
        ok: percent < IDLE_TARGET_PERCENT,
    });

    // ---------------------------------------------------------------------------------------
    // A due pipeline starts.
    let mut observed = Vec::new();
    let mut own_view = Vec::new();
    let mut stats_before = tid.as_deref().and_then(thread_stats);
    let mut wakeups = Vec::new();
    let far_cron = {
        let hour = (SystemClock.now_millis() / (60 * MINUTE) + 12) % 24;
        format!("cron(0 {hour} * * ? *)")
    };
    for round in 0..options.rounds {
        let arn = create_pipeline(
            &service,
            (&recipe, &infra),
            &format!("latency-{round}"),
            // Daily, twelve hours from now: never due on its own during the benchmark.
            &far_cron,
            "UTC",
        )?;
        let due = SystemClock.now_millis() + DUE_AHEAD_MILLIS;
        service
            .store
            .write(|tx| tx.set_next_run(&arn, Some(due)))??;
        service.work.notify();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (seen, pipeline) = loop {
            let pipeline = service
                .store
                .read(|tx| tx.get::<ImagePipeline>(&arn))??
                .context("the pipeline is gone")?;
            let seen = precise_now_millis();
            if pipeline.date_last_run.is_some() {
                break (seen, pipeline);
            }
            if Instant::now() > deadline {
                bail!("round {round}: the pipeline did not start within 10 s of being set due");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let image_arn = pipeline
            .schedule_events
            .last()
            .and_then(|e| e.image_arn.clone())
            .with_context(|| {
                format!(
                    "round {round}: no image started: {:?}",
                    pipeline.schedule_events.last()
                )
            })?;
        let image = service
            .store
            .read(|tx| tx.get::<Image>(&image_arn))??
            .context("the image is missing")?;
        observed.push(seen - due as f64);
        own_view.push((image.date_created - due) as f64);
        let stats = tid.as_deref().and_then(thread_stats);
        if let (Some((_, a)), Some((_, b))) = (stats_before, stats) {
            wakeups.push(b - a);
        }
        stats_before = stats;
    }
    println!();
    println!(
        "due pipeline starts ({} rounds, due {:.1} s after being set, {scheduled} other pipelines scheduled; no build worker runs, the images stay PENDING):",
        options.rounds,
        DUE_AHEAD_MILLIS as f64 / 1e3
    );
    println!(
        "    observed (dateLastRun set, polled every 1 ms) - due: {}; rounds: {}",
        spread(&observed, "ms", 1.0),
        observed
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "    the scheduler's own view (image dateCreated - due): {}",
        spread(&own_view, "ms", 1.0)
    );
    if !wakeups.is_empty() {
        println!(
            "    scheduler thread wakeups per round (create, set due, fire, and the writes' notifications): {}",
            wakeups
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    scheduler.stop();
    table.push(Row {
        figure: "due pipeline starts, median".into(),
        measured: format!("{:.1} ms", median(&observed)),
        target: "< 1000 ms".into(),
        ok: median(&observed) < START_TARGET_MS,
    });
    table.push(Row {
        figure: "due pipeline starts, max".into(),
        measured: format!("{:.1} ms", max(&observed)),
        target: "< 1000 ms".into(),
        ok: max(&observed) < START_TARGET_MS,
    });

    println!();
    println!(
        "{:<40} | {:>12} | {:>10} | result",
        "figure", "measured", "target"
    );
    println!("{}", "-".repeat(78));
    for row in &table {
        println!(
            "{:<40} | {:>12} | {:>10} | {}",
            row.figure,
            row.measured,
            row.target,
            if row.ok { "OK" } else { "NOT OK" }
        );
    }
    println!();
    println!("whole run: {:.1} s", run_started.elapsed().as_secs_f64());
    Ok(())
}

/// The kind of schedule, for the mix and the attribution of parse times.
fn kind_of(expression: &str) -> &'static str {
    if expression.starts_with("rate") {
        "rate"
    } else if expression.contains('#') {
        "cron #"
    } else if expression.contains("LW") {
        "cron LW"
    } else if expression.contains('W') && !expression.contains("MON-FRI") {
        "cron W"
    } else if expression.contains('L') {
        "cron L"
    } else {
        "cron plain"
    }
}

/// The system time in milliseconds, with the microseconds.
fn precise_now_millis() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or_default()
}
