//! `cargo run --release -p kiln-bench -- toe [--rounds N] [--steps N]`: the component engine's
//! overhead per step (the targets: at most 0.5 ms per `ExecuteBash` step beyond the step's own
//! command, and at most 0.05 ms per `Assert` step).
//!
//! Measured in the same process, in alternating rounds (the machine is shared and noisy), on
//! the local host through `Engine::run` with its logs in a temporary directory:
//! - A: a document of `--steps` `ExecuteBash` steps of `commands: ['true']`;
//! - the baseline for A: the step's own command done directly, as `ExecuteBash` must at least
//!   do it: write the script file, run `bash <script>` with stdin from /dev/null and stdout and
//!   stderr piped, read them to the end and wait; overhead per step = (A - baseline) / steps;
//! - B: `--steps` `Assert` steps (`stringEquals`), no process and no scratch directory: its whole
//!   time is engine overhead plus a tiny action;
//! - C: `--steps` `CreateFolder` steps on a temporary path: engine overhead, the run's scratch
//!   directory check and one mkdir;
//! - for attribution, the `ExecuteBash` module's way of running the command alone
//!   (`kiln_toe::actions::exec::run_command`: new process group, reader and waiter threads, a
//!   channel), after writing the script: A minus this is the engine's part, this minus the
//!   baseline the command runner's;
//! - the engine's per-step filesystem work, redone here the way the engine does it: the run's
//!   scratch directory under /tmp/kiln-toe made sure of, the console.log header line and the
//!   two application.log lines (timestamped) appended.
//!
//! Medians over the rounds, with min and max, each next to its target (`CreateFolder` has
//! none of its own: it is shown against the `ExecuteBash` one).

use anyhow::{bail, Context, Result};
use kiln_toe::engine::{Engine, EngineConfig, Outcome, Quiet, RunRequest, SourceDocument};
use kiln_toe::report::Status;
use kiln_toe::target::LocalTarget;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Target for the engine's overhead per `ExecuteBash` step, beyond the command itself.
const TARGET_MS: f64 = 0.5;
/// Target for a whole `Assert` step (no process: all of it is the engine's).
const ASSERT_TARGET_MS: f64 = 0.05;

struct Options {
    rounds: usize,
    steps: usize,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut args = args;
    let mut options = Options {
        rounds: 7,
        steps: 200,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => options.rounds = value.parse().context("--rounds")?,
            "--steps" => options.steps = value.parse().context("--steps")?,
            _ => bail!("unknown flag {flag} (kiln-bench toe [--rounds N] [--steps N])"),
        }
    }
    if options.rounds == 0 || options.steps == 0 {
        bail!("--rounds and --steps must be at least 1");
    }
    Ok(options)
}

/// A one-phase document of `steps` steps, each `step(i)` (a YAML flow mapping's body).
fn document(steps: usize, step: impl Fn(usize) -> String) -> String {
    let mut text = String::from("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n");
    for i in 0..steps {
        text.push_str(&format!("      - {{name: S{i}, {}}}\n", step(i)));
    }
    text
}

/// Runs `text` through `Engine::run` on the host and returns how long the run took.
fn engine_run(text: &str, work: &Path, id: &str) -> Result<Duration> {
    let logs = work.join("logs");
    let request = RunRequest {
        documents: vec![SourceDocument {
            name: "bench.yaml".into(),
            text: text.to_string(),
            parameters: Vec::new(),
        }],
        phases: None,
        parameters: Vec::new(),
        execution_id: Some(id.to_string()),
        log_directory: logs.clone(),
        state_directory: Some(work.join("state")),
    };
    let target = LocalTarget::host();
    let config = EngineConfig::default();
    let started = Instant::now();
    let outcome = Engine::new(&target, &config, &Quiet).run(request);
    let elapsed = started.elapsed();
    match outcome {
        Ok(Outcome::Finished(report)) if report.status == Status::Success => {}
        Ok(Outcome::Finished(report)) => bail!(
            "the run failed: {}",
            report.failure_message.unwrap_or_default()
        ),
        other => bail!("expected a finished run, got {other:?}"),
    }
    // What the run leaves behind: its log folder and /tmp/kiln-toe/<execution id>.
    let _ = std::fs::remove_dir_all(&logs);
    let _ = std::fs::remove_dir_all(Path::new("/tmp/kiln-toe").join(id));
    Ok(elapsed)
}

/// The steps' own commands, done directly: write the script, `bash <script>` with piped
/// stdout/stderr read to the end, wait.
fn bare_bash(steps: usize, work: &Path) -> Result<Duration> {
    let started = Instant::now();
    for i in 0..steps {
        let script = work.join(format!("script-{i}.sh"));
        std::fs::write(&script, "true\n")?;
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        if !out.status.success() {
            bail!("bash {} exited with {}", script.display(), out.status);
        }
    }
    let elapsed = started.elapsed();
    for i in 0..steps {
        let _ = std::fs::remove_file(work.join(format!("script-{i}.sh")));
    }
    Ok(elapsed)
}

/// The steps' own commands through the engine's command runner, without the engine: write the
/// script, `run_command(bash <script>)`.
fn runner_bash(steps: usize, work: &Path) -> Result<Duration> {
    use kiln_toe::target::Target;
    let target = LocalTarget::host();
    let config = kiln_toe::actions::ActionConfig::default();
    let scratch = work.join("runner");
    std::fs::create_dir_all(&scratch)?;
    let scratch_in_target = scratch.display().to_string();
    let ctx = kiln_toe::actions::ActionContext {
        target: &target,
        config: &config,
        console: &kiln_toe::actions::NullConsole,
        deadline: None,
        scratch: &scratch,
        scratch_in_target: &scratch_in_target,
    };
    let started = Instant::now();
    for i in 0..steps {
        let script = scratch.join(format!("script-{i}.sh"));
        std::fs::write(&script, "true\n")?;
        let cmd = target.command("bash", &[script.display().to_string()]);
        let out = kiln_toe::actions::exec::run_command(&ctx, cmd)
            .map_err(|e| anyhow::anyhow!("run_command: {e:?}"))?;
        if out.status != 0 {
            bail!("bash {} exited with {}", script.display(), out.status);
        }
    }
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(elapsed)
}

/// The engine's per-step filesystem work, the way it does it: the run's scratch directory
/// `/tmp/kiln-toe/<id>` made sure of (`create_dir_all`, a stat once it exists; the engine made
/// and removed one per step until this benchmark showed that to dominate on a busy disk), one
/// console.log header line, two timestamped application.log lines (files opened once,
/// appended, not flushed beyond `write`).
/// Returns the total and the part spent on the scratch directories.
fn filesystem_work(steps: usize, work: &Path, id: &str) -> Result<(Duration, Duration)> {
    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.join(name))
    };
    let mut console = open("console.log")?;
    let mut application = open("application.log")?;
    let root = Path::new("/tmp/kiln-toe").join(id);
    let mut in_scratch = Duration::ZERO;
    let started = Instant::now();
    for i in 0..steps {
        writeln!(console, "==> build/S{i} (ExecuteBash)")?;
        writeln!(
            application,
            "{} step build/S{i} (ExecuteBash) started",
            kiln_toe::report::format_time(chrono::Utc::now())
        )?;
        let t = Instant::now();
        std::fs::create_dir_all(&root)?;
        in_scratch += t.elapsed();
        writeln!(
            application,
            "{} step build/S{i} success",
            kiln_toe::report::format_time(chrono::Utc::now())
        )?;
    }
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(work.join("console.log"));
    let _ = std::fs::remove_file(work.join("application.log"));
    Ok((elapsed, in_scratch))
}

struct Series {
    totals_ms: Vec<f64>,
}

impl Series {
    fn new() -> Series {
        Series {
            totals_ms: Vec::new(),
        }
    }
    fn push(&mut self, d: Duration) {
        self.totals_ms.push(d.as_secs_f64() * 1e3);
    }
}

fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    (median, sorted[0], sorted[sorted.len() - 1])
}

fn verdict(per_step_ms: f64) -> &'static str {
    verdict_against(per_step_ms, TARGET_MS)
}

fn verdict_against(per_step_ms: f64, target_ms: f64) -> &'static str {
    if per_step_ms <= target_ms {
        "OK"
    } else {
        "OVER"
    }
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let n = options.steps;
    let work = tempfile::tempdir()?;
    let folders = work.path().join("folders");
    let bash_doc = document(n, |_| {
        "action: ExecuteBash, inputs: {commands: ['true']}".into()
    });
    let assert_doc = document(n, |_| {
        "action: Assert, inputs: {stringEquals: a, value: a}".into()
    });
    let folder_doc = document(n, |i| {
        format!(
            "action: CreateFolder, inputs: [{{path: '{}/f{i}'}}]",
            folders.display()
        )
    });
    let tag = format!("kiln-bench-{}", std::process::id());
    println!(
        "kiln-bench toe: {n}-step documents, {} rounds (ExecuteBash, bare bash, Assert, CreateFolder, filesystem work, run_command, alternating), work dir {}",
        options.rounds,
        work.path().display()
    );

    // One warm-up of each, not counted (page cache, bash binary, first allocations).
    engine_run(&bash_doc, work.path(), &format!("{tag}-warm-a"))?;
    bare_bash(n, work.path())?;
    engine_run(&assert_doc, work.path(), &format!("{tag}-warm-b"))?;

    let mut bash = Series::new();
    let mut bare = Series::new();
    let mut assert = Series::new();
    let mut folder = Series::new();
    let mut fs_work = Series::new();
    let mut runner = Series::new();
    let mut scratch_dirs = Series::new();
    let mut overheads = Vec::new();
    for round in 0..options.rounds {
        // Which of the two goes first alternates, so that neither always follows the other
        // measurements' leftovers (directories removed, page cache, writeback).
        let (a, base) = if round % 2 == 1 {
            let base = bare_bash(n, work.path())?;
            (
                engine_run(&bash_doc, work.path(), &format!("{tag}-a{round}"))?,
                base,
            )
        } else {
            let a = engine_run(&bash_doc, work.path(), &format!("{tag}-a{round}"))?;
            (a, bare_bash(n, work.path())?)
        };
        let b = engine_run(&assert_doc, work.path(), &format!("{tag}-b{round}"))?;
        let c = engine_run(&folder_doc, work.path(), &format!("{tag}-c{round}"))?;
        let _ = std::fs::remove_dir_all(&folders);
        let (f, f_scratch) = filesystem_work(n, work.path(), &format!("{tag}-f{round}"))?;
        let r = runner_bash(n, work.path())?;
        let overhead = (a.as_secs_f64() - base.as_secs_f64()) * 1e3 / n as f64;
        println!(
            "  round {}: ExecuteBash {:7.1} ms  bare bash {:7.1} ms  -> {:6.3} ms/step   Assert {:6.1} ms  CreateFolder {:6.1} ms  fs work {:6.1} ms  run_command {:6.1} ms",
            round + 1,
            a.as_secs_f64() * 1e3,
            base.as_secs_f64() * 1e3,
            overhead,
            b.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3,
            f.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3,
        );
        bash.push(a);
        bare.push(base);
        assert.push(b);
        folder.push(c);
        fs_work.push(f);
        runner.push(r);
        scratch_dirs.push(f_scratch);
        overheads.push(overhead);
    }

    let per_step = |s: &Series| -> (f64, f64, f64) {
        let (m, lo, hi) = stats(&s.totals_ms);
        (m / n as f64, lo / n as f64, hi / n as f64)
    };
    let (bash_m, _, _) = stats(&bash.totals_ms);
    let (bare_m, _, _) = stats(&bare.totals_ms);
    let (over_m, over_lo, over_hi) = stats(&overheads);
    println!();
    println!(
        "ExecuteBash 'true' x{n}: engine {bash_m:.0} ms, bare bash {bare_m:.0} ms -> overhead {over_m:.3} ms/step (min {over_lo:.3}, max {over_hi:.3}; target <= {TARGET_MS} ms) {}",
        verdict(over_m)
    );
    let (m, lo, hi) = per_step(&assert);
    println!(
        "Assert x{n}: {:.0} ms -> {m:.3} ms/step, all of it engine overhead (min {lo:.3}, max {hi:.3}; target <= {ASSERT_TARGET_MS} ms) {}",
        m * n as f64,
        verdict_against(m, ASSERT_TARGET_MS)
    );
    let (m, lo, hi) = per_step(&folder);
    println!(
        "CreateFolder x{n}: {:.0} ms -> {m:.3} ms/step, engine overhead + scratch dir check + mkdir (min {lo:.3}, max {hi:.3}; against the ExecuteBash target <= {TARGET_MS} ms) {}",
        m * n as f64,
        verdict(m)
    );
    let (m, lo, hi) = per_step(&fs_work);
    println!(
        "per-step filesystem work x{n} (scratch dir check under /tmp/kiln-toe, console.log + 2 application.log lines): {:.1} ms -> {m:.3} ms/step (min {lo:.3}, max {hi:.3})",
        m * n as f64,
    );
    let (m, lo, hi) = per_step(&scratch_dirs);
    println!(
        "  of which scratch dir check: {:.1} ms -> {m:.3} ms/step (min {lo:.3}, max {hi:.3}); the 3 log lines the rest",
        m * n as f64,
    );
    let (runner_m, _, _) = stats(&runner.totals_ms);
    println!(
        "attribution (medians): ExecuteBash x{n} through run_command alone {runner_m:.0} ms -> command runner {:.3} ms/step over bare bash, rest of the engine {:.3} ms/step",
        (runner_m - bare_m) / n as f64,
        (bash_m - runner_m) / n as f64,
    );
    Ok(())
}
