//! `kiln doctor`: whether this machine, with this configuration, can run what Kiln does. It
//! takes the flags of `kiln serve` and `kiln worker` (`WorkerOptions`), so it checks what they
//! would use, and prints one line per check with what to do about each gap, then a summary;
//! exit code 0 when builds can run, 1 otherwise. `kiln serve` runs the same checks at start, in
//! the background ([`check_in_background`]), logs each gap and keeps the verdict for
//! `GET /kiln/v1/health`. The checks themselves are `kiln_worker::doctor`'s.

use crate::worker::WorkerOptions;
use anyhow::Result;
use kiln_api::health::{Builds, Readiness};
use kiln_worker::doctor::{self, Config, Environment, Report, Status};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The configuration to check: the same flags (and environment) as `kiln serve`.
    #[command(flatten)]
    pub options: WorkerOptions,
    /// Print one JSON object (`buildsPossible`, `checks`) instead of lines.
    #[arg(long)]
    pub json: bool,
    /// How long each network check may take, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
}

/// What the checks are given from the flags. The default Debian mirror is not contacted: only
/// the addresses the operator named are.
pub fn config(options: &WorkerOptions) -> Result<Config> {
    // Parsed first for its message, which never shows a password.
    options.database()?;
    let mut config = Config::new(&options.data_dir);
    config.database = options.database.clone();
    config.registry = options.registry()?;
    config.debian_mirror = (options.debian_mirror != kiln_image::DEFAULT_DEBIAN_MIRROR)
        .then(|| options.debian_mirror.clone());
    config.s3_endpoint = options.s3_endpoint()?;
    Ok(config)
}

pub fn main(args: DoctorArgs) -> i32 {
    let mut config = match config(&args.options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kiln doctor: {e:#}");
            return 1;
        }
    };
    config.timeout = Duration::from_millis(args.timeout_ms);
    let started = Instant::now();
    let report = doctor::run(&Environment::of_this_machine(), &config);
    let took = started.elapsed();
    if args.json {
        let value = serde_json::json!({
            "buildsPossible": report.builds_possible(),
            "blocking": report.blocking(),
            "unavailableFeatures": report.unavailable_features(),
            "checks": report.checks.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
            "seconds": took.as_secs_f64(),
        });
        println!("{value:#}");
    } else {
        print!("{}", render(&report));
        println!("{} ({:.2} s)", summary(&report), took.as_secs_f64());
    }
    if report.builds_possible() {
        0
    } else {
        1
    }
}

/// One line per check: status, name, what was found and, for a gap, what to do.
fn render(report: &Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in &report.checks {
        out.push_str(&format!(
            "{:<7} {:<width$}  {}",
            c.status.label(),
            c.name,
            c.detail
        ));
        if !c.remedy.is_empty() {
            out.push_str(&format!(" -> {}", c.remedy));
        }
        out.push('\n');
    }
    out
}

/// The verdict, one line.
fn summary(report: &Report) -> String {
    let warnings = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .count();
    let mut line = if report.builds_possible() {
        "builds: possible".to_string()
    } else {
        format!("builds: IMPOSSIBLE ({})", report.blocking().join(", "))
    };
    let plural = if warnings == 1 { "" } else { "s" };
    line.push_str(&format!(
        "; {} checks, {warnings} warning{plural}",
        report.checks.len()
    ));
    let unavailable = report.unavailable_features();
    if !unavailable.is_empty() {
        line.push_str(&format!("; unavailable: {}", unavailable.join(", ")));
    }
    line
}

/// `kiln serve`'s start-up checks: run on a thread of their own (the listener does not wait),
/// one warning logged per gap, the verdict kept in `readiness`. Never fails the server.
pub fn check_in_background(options: &WorkerOptions, readiness: Arc<Readiness>) {
    let config = match config(options) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "start-up checks not run");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("kiln-doctor".into())
        .spawn(move || {
            let report = doctor::run(&Environment::of_this_machine(), &config);
            for c in report.gaps() {
                tracing::warn!(
                    check = %c.name,
                    status = c.status.as_str(),
                    remedy = %c.remedy,
                    "{}",
                    c.detail
                );
            }
            readiness.set(if report.builds_possible() {
                Builds::Possible
            } else {
                Builds::Unavailable(report.blocking())
            });
            tracing::info!(
                "start-up checks: {} (kiln doctor shows them all)",
                summary(&report)
            );
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "start-up checks not run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        options: WorkerOptions,
    }

    fn config_of(args: &[&str]) -> Config {
        let flags = Flags::try_parse_from(std::iter::once("kiln").chain(args.iter().copied()))
            .expect("flags parse");
        config(&flags.options).expect("a configuration")
    }

    #[test]
    fn only_the_addresses_named_are_checked() {
        let c = config_of(&["--data-dir", "/d"]);
        assert_eq!(c.debian_mirror, None, "the default mirror is not contacted");
        assert_eq!((c.database, c.registry, c.s3_endpoint), (None, None, None));
        let c = config_of(&[
            "--debian-mirror",
            "http://127.0.0.1:3142/debian",
            "--s3-endpoint",
            "http://127.0.0.1:9000/",
            "--database",
            "postgres://k@127.0.0.1:5432/k",
        ]);
        assert_eq!(
            c.debian_mirror.as_deref(),
            Some("http://127.0.0.1:3142/debian")
        );
        assert_eq!(c.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.database.as_deref(), Some("postgres://k@127.0.0.1:5432/k"));
        let bad = Flags::try_parse_from(["kiln", "--database", "mysql://x"]).unwrap();
        assert!(config(&bad.options).is_err());
    }

    #[test]
    fn the_summary_names_what_blocks_and_what_is_unavailable() {
        use kiln_worker::doctor::Check;
        let report = Report {
            checks: vec![
                Check::ok("privileges", "root"),
                Check::gap("tool:qemu-img", Status::Missing, "not found", "install it")
                    .affecting(&["disk image exports"]),
                Check::gap("database", Status::Failed, "down", "start it")
                    .affecting(&["builds"])
                    .blocking(),
            ],
        };
        assert_eq!(
            summary(&report),
            "builds: IMPOSSIBLE (database); 3 checks, 0 warnings; unavailable: disk image exports, builds"
        );
        let text = render(&report);
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.contains("MISSING tool:qemu-img  not found -> install it"),
            "{text}"
        );
    }
}
