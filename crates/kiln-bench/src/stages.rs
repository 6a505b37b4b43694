//! Where a Kiln build's time goes: the per-stage breakdown `kiln-bench build` prints.
//!
//! The worker writes every build's log to `<data dir>/logs/<build id>/build.log` (with the
//! image's ARN in `image.arn` beside it), one line per event with a millisecond timestamp: the
//! image's status moves, each workflow step's start and end, each component step's start and
//! end. The breakdown walks those lines in order and gives each interval between two of them
//! to the stage the earlier line opened (a component step from its `started` line to its
//! result, a `LaunchInstance` step from `RUNNING` to `COMPLETED`, ...); what no step covers is
//! the worker's own work between steps (the workflow engine, its database writes, the log).
//! Two stages come from the benchmark's side: from sending StartImagePipelineExecution to the
//! worker's `BUILDING` line (the API call, the queue, the claim), and from the worker's
//! `AVAILABLE` line to the GetImage that saw it (the benchmark's polling).

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One timed round of a Kiln build, as the benchmark saw it.
#[derive(Debug, Clone)]
pub(crate) struct Round {
    pub(crate) image_arn: String,
    /// When StartImagePipelineExecution was sent.
    pub(crate) sent: SystemTime,
    /// When GetImage first answered AVAILABLE.
    pub(crate) seen: SystemTime,
}

/// Milliseconds per stage, in the order the stages first appeared.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Breakdown {
    pub(crate) stages: Vec<(String, f64)>,
}

impl Breakdown {
    fn add(&mut self, stage: &str, ms: f64) {
        match self.stages.iter_mut().find(|(s, _)| s == stage) {
            Some((_, total)) => *total += ms,
            None => self.stages.push((stage.to_string(), ms)),
        }
    }
}

const BETWEEN: &str = "worker between steps (workflow engine, database writes, log)";

/// What the stage is after `text` (a log line without its timestamp), given the stage of the
/// build (`build` or `test`) the log is in; `None` for lines that do not change it.
fn opens(text: &str, stage: &str) -> Option<String> {
    // The implicit distribution's lines (`workflows: ...` is logged once the image is
    // committed, right before it).
    if text.starts_with("stage distribute started") || text.starts_with("workflows: ") {
        return Some("distribution and AVAILABLE".into());
    }
    if text.starts_with("workflow test-image (") && text.ends_with("COMPLETED") {
        return Some("snapshot end and commit (after the tests)".into());
    }
    if let Some(step) = text.strip_prefix("workflow ") {
        if step.ends_with("): RUNNING") {
            if step.contains("(LaunchInstance)") {
                return Some(format!("launch {stage} instance"));
            }
            if step.contains("(CreateImage)") {
                return Some("snapshot start (stop, owners, unmount)".into());
            }
            if step.contains("(TerminateInstance)") {
                return Some(format!("terminate {stage} instance"));
            }
            if step.contains("(CollectImageMetadata)") {
                return Some("enhanced metadata".into());
            }
            // ExecuteComponents and the others: their own lines (component steps) say more.
            return Some(BETWEEN.into());
        }
        return Some(BETWEEN.into());
    }
    // A component step: `<component> <phase>/<step> (<Action>) started`, then
    // `<component> <phase>/<step> success in N ms` (or failed ...).
    if text.ends_with(") started") && text.contains('/') {
        let name = text.split(" (").next().unwrap_or(text);
        return Some(format!("{stage}: {name}"));
    }
    if (text.contains(" success in ") || text.contains(" failed")) && text.contains('/') {
        return Some(BETWEEN.into());
    }
    None
}

fn parse_time(stamp: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(stamp)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// The breakdown of one build from its log's text (see the module documentation).
pub(crate) fn of_log(text: &str, round: &Round) -> Result<Breakdown> {
    let mut breakdown = Breakdown::default();
    let sent: DateTime<Utc> = round.sent.into();
    let seen: DateTime<Utc> = round.seen.into();
    let mut current: Option<(DateTime<Utc>, String)> = None;
    let mut stage = "build";
    let mut available = None;
    for line in text.lines() {
        let Some((stamp, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some(at) = parse_time(stamp) else {
            // An output line of a step: it belongs to that step.
            continue;
        };
        if current.is_none() {
            if !rest.ends_with(": BUILDING") {
                continue;
            }
            breakdown.add("API call, queue and claim (to BUILDING)", millis(sent, at));
            current = Some((at, BETWEEN.into()));
            continue;
        }
        if rest.starts_with("stage test started") {
            stage = "test";
        }
        if rest.starts_with("AVAILABLE") {
            if let Some((from, name)) = current.take() {
                breakdown.add(&name, millis(from, at));
            }
            available = Some(at);
            break;
        }
        if let Some(next) = opens(rest, stage) {
            if let Some((from, name)) = current.take() {
                breakdown.add(&name, millis(from, at));
            }
            current = Some((at, next));
        }
    }
    let Some(available) = available else {
        bail!("the build log has no AVAILABLE line");
    };
    breakdown.add(
        "GetImage polling (AVAILABLE to seen)",
        millis(available, seen),
    );
    Ok(breakdown)
}

/// The log of the build that made `image_arn` under `data` (its `image.arn` names it).
fn log_of(data: &Path, image_arn: &str) -> Result<PathBuf> {
    let logs = data.join("logs");
    for entry in std::fs::read_dir(&logs).with_context(|| format!("reading {}", logs.display()))? {
        let dir = entry?.path();
        let named = std::fs::read_to_string(dir.join("image.arn")).unwrap_or_default();
        if named.trim() == image_arn {
            return Ok(dir.join("build.log"));
        }
    }
    bail!("no build log under {} for {image_arn}", logs.display())
}

/// The median of each stage over `rounds`, in the order of the first round's stages; a stage
/// missing from a round counts 0 there.
fn median(data: &Path, rounds: &[Round]) -> Result<Breakdown> {
    let mut all = Vec::new();
    for round in rounds {
        let path = log_of(data, &round.image_arn)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        all.push(of_log(&text, round).with_context(|| format!("{}", path.display()))?);
    }
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for b in &all {
        for (name, _) in &b.stages {
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
    }
    for b in &all {
        for name in &order {
            let ms = b
                .stages
                .iter()
                .find(|(s, _)| s == name)
                .map_or(0.0, |(_, v)| *v);
            values.entry(name.clone()).or_default().push(ms);
        }
    }
    let mut out = Breakdown::default();
    for name in order {
        let (median, _, _) = crate::build::stats(&values[&name]);
        out.stages.push((name, median));
    }
    Ok(out)
}

/// Prints `breakdown` as a table with each stage's share of `total_ms`.
/// Prints, after a blank line, the median breakdown of `rounds` against their median total
/// (`total_ms`, asked only when there are rounds); nothing when there are none.
pub(crate) fn print_median(
    title: &str,
    data: &Path,
    rounds: &[Round],
    total_ms: impl FnOnce() -> f64,
) -> Result<()> {
    if rounds.is_empty() {
        return Ok(());
    }
    let breakdown = median(data, rounds)?;
    println!();
    print(title, &breakdown, total_ms());
    Ok(())
}

fn print(title: &str, breakdown: &Breakdown, total_ms: f64) {
    println!("{title} (median ms of the rounds; share of the median total {total_ms:.0} ms):");
    for (name, ms) in &breakdown.stages {
        let share = if total_ms > 0.0 {
            100.0 * ms / total_ms
        } else {
            0.0
        };
        println!("  {ms:>8.1}  {share:>5.1}%  {name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_splits_into_its_stages() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T07:47:58.890Z")
            .unwrap()
            .with_timezone(&Utc);
        let log = "\
2026-12-06T07:47:58.897Z image arn:x: BUILDING
2026-12-06T07:47:58.898Z workflow build-image step Launch (LaunchInstance): RUNNING
2026-12-06T07:47:58.908Z workflow build-image step Launch (LaunchInstance): COMPLETED
2026-12-06T07:47:58.909Z workflow build-image step Apply (ExecuteComponents): RUNNING
2026-12-06T07:47:58.910Z c build/Make (ExecuteBash) started
    │ output
2026-12-06T07:47:58.930Z c build/Make success in 20 ms
2026-12-06T07:47:58.931Z workflow build-image step Apply (ExecuteComponents): COMPLETED
2026-12-06T07:47:58.931Z workflow build-image step Out (CreateImage): RUNNING
2026-12-06T07:47:58.961Z workflow build-image step Out (CreateImage): COMPLETED
2026-12-06T07:47:58.962Z stage test started
2026-12-06T07:47:58.962Z workflow test-image step Launch (LaunchInstance): RUNNING
2026-12-06T07:47:58.972Z workflow test-image step Launch (LaunchInstance): COMPLETED
2026-12-06T07:47:58.973Z t test/Check (ExecuteBash) started
2026-12-06T07:47:59.073Z t test/Check success in 100 ms
2026-12-06T07:47:59.074Z workflow test-image (wf-1): COMPLETED
2026-12-06T07:47:59.094Z workflows: 9 steps, engine overhead 230 us per step
2026-12-06T07:47:59.095Z stage distribute started
2026-12-06T07:47:59.096Z AVAILABLE: ami-1 (sha256:0)
";
        let round = Round {
            image_arn: "arn:x".into(),
            sent: (t0).into(),
            seen: (t0 + chrono::Duration::milliseconds(216)).into(),
        };
        let b = of_log(log, &round).unwrap();
        let get = |name: &str| {
            b.stages
                .iter()
                .find(|(s, _)| s == name)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("no stage {name}: {b:?}"))
        };
        assert_eq!(get("API call, queue and claim (to BUILDING)"), 7.0);
        assert_eq!(get("launch build instance"), 10.0);
        assert_eq!(get("build: c build/Make"), 20.0);
        assert_eq!(get("snapshot start (stop, owners, unmount)"), 30.0);
        assert_eq!(get("launch test instance"), 10.0);
        assert_eq!(get("test: t test/Check"), 100.0);
        assert_eq!(get("snapshot end and commit (after the tests)"), 20.0);
        assert_eq!(get("distribution and AVAILABLE"), 2.0);
        assert_eq!(get("GetImage polling (AVAILABLE to seen)"), 10.0);
        let total: f64 = b.stages.iter().map(|(_, v)| v).sum();
        assert!((total - 216.0).abs() < 1e-9, "{total}: {b:?}");
    }
}
