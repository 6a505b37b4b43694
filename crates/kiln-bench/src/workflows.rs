//! `kiln-bench workflows [--rounds N] [--kiln PATH] [--baseline PATH] [--keep]`: the reference recipe's
//! build (the `build` benchmark's pipeline: five components, tests on) through the managed
//! workflows, timed from StartImagePipelineExecution to AVAILABLE, with the workflow engine's
//! overhead per step (the time the worker's driver spends outside step actions, as each build
//! logs it: `workflows: N steps, engine overhead X us per step`).
//!
//! `--baseline PATH` times another `kiln` binary on the same pipeline, rounds alternating: the
//! fixed build path before issue 16 (main's binary before the merge) gives the 1.05x figure.
//! Compare binaries of the same profile (both release, or both debug).

use crate::build::{binary_at, stats, Kiln, Outcome, Server};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Options {
    /// Keep the work directory (the servers' data and build logs) to look at afterwards.
    keep: bool,
    rounds: usize,
    kiln: Option<PathBuf>,
    baseline: Option<PathBuf>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        keep: false,
        rounds: 5,
        kiln: None,
        baseline: None,
    };
    let mut args = args;
    while let Some(flag) = args.next() {
        if flag == "--keep" {
            options.keep = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => options.rounds = value.parse().context("--rounds")?,
            "--kiln" => options.kiln = Some(PathBuf::from(value)),
            "--baseline" => options.baseline = Some(PathBuf::from(value)),
            _ => bail!(
                "unknown flag {flag} (workflows takes --rounds N, --kiln PATH, --baseline PATH and --keep)"
            ),
        }
    }
    if options.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(options)
}

/// One server with its pipeline.
struct Subject {
    name: &'static str,
    server: Server,
    kiln: Kiln,
    data: PathBuf,
    times: Vec<f64>,
}

impl Subject {
    fn start(name: &'static str, binary: &Path, work: &Path) -> Result<Subject> {
        let data = work.join(format!("{name}-data"));
        std::fs::create_dir_all(&data)?;
        let server = Server::start(binary, &data, work.join(format!("{name}.log")), &[])?;
        let kiln = Kiln::setup(server.addr).map_err(|e| server.explain(e, "the pipeline"))?;
        let mut subject = Subject {
            name,
            server,
            kiln,
            data,
            times: Vec::new(),
        };
        subject.build()?; // warm-up: makes the busybox base
        subject.times.clear();
        Ok(subject)
    }

    fn build(&mut self) -> Result<()> {
        match self
            .kiln
            .build()
            .map_err(|e| self.server.explain(e, self.name))?
        {
            Outcome::Available(d, _) => self.times.push(d.as_secs_f64()),
            Outcome::NotImplemented(m) => bail!("{}: {m}", self.name),
        }
        Ok(())
    }

    /// The engine overhead per step of each build that logged one, in microseconds.
    fn overheads(&self) -> Vec<f64> {
        let mut found = Vec::new();
        let Ok(builds) = std::fs::read_dir(self.data.join("logs")) else {
            return found;
        };
        for build in builds.flatten() {
            let Ok(log) = std::fs::read_to_string(build.path().join("build.log")) else {
                continue;
            };
            for line in log.lines() {
                if let Some(rest) = line.split("engine overhead ").nth(1) {
                    if let Some(us) = rest.split(' ').next().and_then(|v| v.parse().ok()) {
                        found.push(us);
                    }
                }
            }
        }
        found
    }
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let binary = binary_at(options.kiln.as_deref())?;
    let work = tempfile::tempdir()?;
    println!(
        "kiln-bench workflows: {} rounds, Kiln = {}{}",
        options.rounds,
        binary.display(),
        options
            .baseline
            .as_ref()
            .map(|b| format!(", baseline = {}", b.display()))
            .unwrap_or_default()
    );
    let began = Instant::now();
    let mut subject = Subject::start("workflows", &binary, work.path())?;
    let mut baseline = match &options.baseline {
        Some(path) => Some(Subject::start("baseline", path, work.path())?),
        None => None,
    };
    for round in 0..options.rounds {
        match baseline.as_mut() {
            Some(base) if round % 2 == 1 => {
                base.build()?;
                subject.build()?;
            }
            Some(base) => {
                subject.build()?;
                base.build()?;
            }
            None => subject.build()?,
        }
        println!(
            "  round {}: workflows {:.3} s{}",
            round + 1,
            subject.times[round],
            baseline
                .as_ref()
                .map(|b| format!(", baseline {:.3} s", b.times[round]))
                .unwrap_or_default()
        );
    }
    let (w, w_lo, w_hi) = stats(&subject.times);
    println!();
    println!("workflows (StartImagePipelineExecution to AVAILABLE): {w:.3} s (min {w_lo:.3}, max {w_hi:.3})");
    let overheads = subject.overheads();
    if overheads.is_empty() {
        println!("engine overhead per step: not logged (is this a workflow build?)");
    } else {
        let (o, o_lo, o_hi) = stats(&overheads);
        let ok = if o <= 1000.0 { "OK" } else { "MISSED" };
        println!(
            "engine overhead per step: {o:.0} us (min {o_lo:.0}, max {o_hi:.0}; target <= 1000 us) {ok}"
        );
    }
    if let Some(base) = &baseline {
        let (b, b_lo, b_hi) = stats(&base.times);
        let ratio = w / b;
        let ok = if ratio <= 1.05 { "OK" } else { "MISSED" };
        println!("baseline: {b:.3} s (min {b_lo:.3}, max {b_hi:.3})");
        println!("workflows / baseline: {ratio:.3}x (target <= 1.05x) {ok}");
    }
    println!("({:.0} s in all)", began.elapsed().as_secs_f64());
    drop(subject);
    drop(baseline);
    if options.keep {
        println!("kept {}", work.keep().display());
    }
    Ok(())
}
