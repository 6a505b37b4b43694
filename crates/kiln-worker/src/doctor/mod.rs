//! What Kiln needs on this machine, checked in about a second: `kiln doctor` prints it and
//! `kiln serve` logs its gaps at start (and keeps the result for `GET /kiln/v1/health`).
//!
//! Each check is a function of an [`Environment`] (what the machine is: `PATH`, whether this
//! process is root, the user-namespace probe, the cgroup mount, the kernel) and a [`Config`]
//! (what the operator configured: the data directory, the database, the shared registry, the
//! Debian mirror, the S3 endpoint), so that tests can describe a machine without being one. A
//! check answers one line of what it found, one line of what to do about it, the features it
//! affects and whether builds can run without it. [`run`] runs every check on a thread of its
//! own and waits for them at most [`Config::timeout`] (plus a little): a check that did not
//! answer by then is reported as such, never waited for.
//!
//! Network checks contact only the addresses the operator configured (`--database`,
//! `--registry`, `--debian-mirror` when it is not the default, `--s3-endpoint`), with a TCP
//! connection (the database: a login and `SELECT 1`), and nothing else.

mod network;
mod system;
mod tools;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Present and working.
    Ok,
    /// Works, but something is degraded or merely optional is absent.
    Warn,
    /// Absent: the features it names are unavailable.
    Missing,
    /// Present but not working (unreachable, full, refused).
    Failed,
}

impl Status {
    /// How `kiln doctor` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "MISSING",
            Status::Failed => "FAILED",
        }
    }

    /// The JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "missing",
            Status::Failed => "failed",
        }
    }
}

/// One check's answer.
#[derive(Debug, Clone)]
pub struct Check {
    /// A short stable name (`privileges`, `tool:skopeo`, `database`): no paths, no secrets,
    /// so that the health endpoint may show it.
    pub name: String,
    pub status: Status,
    /// What was found, one line.
    pub detail: String,
    /// What to do about it, one line; empty when there is nothing to do.
    pub remedy: String,
    /// The features this check serves (unavailable while it is not ok).
    pub features: Vec<&'static str>,
    /// Whether this answer means builds cannot run.
    pub blocks_builds: bool,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            remedy: String::new(),
            features: Vec::new(),
            blocks_builds: false,
        }
    }

    /// A gap: `status` other than ok, with what to do.
    pub fn gap(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Check {
        Check {
            status,
            remedy: remedy.into(),
            ..Check::ok(name, detail)
        }
    }

    pub fn affecting(mut self, features: &[&'static str]) -> Check {
        self.features = features.to_vec();
        self
    }

    /// Marks this answer as one that stops every build.
    pub fn blocking(mut self) -> Check {
        self.blocks_builds = self.status != Status::Ok;
        self
    }

    /// The check as JSON (`kiln doctor --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "status": self.status.as_str(),
            "detail": self.detail,
            "remedy": self.remedy,
            "features": self.features,
            "blocksBuilds": self.blocks_builds,
        })
    }
}

/// Every check's answer, in a fixed order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether builds can run on this machine with this configuration.
    pub fn builds_possible(&self) -> bool {
        !self.checks.iter().any(|c| c.blocks_builds)
    }

    /// The names of the checks that stop builds.
    pub fn blocking(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.blocks_builds)
            .map(|c| c.name.clone())
            .collect()
    }

    /// The checks that are not ok.
    pub fn gaps(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status != Status::Ok)
    }

    /// The check named `name`.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The features some check says are unavailable, each once, in order.
    pub fn unavailable_features(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for check in self
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Missing | Status::Failed))
        {
            for f in &check.features {
                if !out.contains(f) {
                    out.push(f);
                }
            }
        }
        out
    }
}

/// Answers whether this (unprivileged) process may create a user namespace: `Err` says why not.
pub type UsernsProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the machine is, as the checks see it. [`Environment::of_this_machine`] reads the real
/// one; tests build their own.
#[derive(Clone)]
pub struct Environment {
    /// The `PATH` programs are looked up on.
    pub path: OsString,
    /// Where the disk tools are looked for when `PATH` lacks them (as `kiln-image` does).
    pub sbin_dirs: Vec<PathBuf>,
    /// Whether this process runs as root.
    pub root: bool,
    /// The user-namespace probe, asked only when not root.
    pub userns: UsernsProbe,
    /// `/proc/filesystems`.
    pub proc_filesystems: PathBuf,
    /// The kernel release (`uname -r`), for overlayfs's `userxattr` (5.11).
    pub kernel_release: String,
    /// The cgroup mount (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// The busybox binary the managed busybox base is made from.
    pub busybox: PathBuf,
}

impl Environment {
    /// This machine and this process.
    pub fn of_this_machine() -> Environment {
        Environment {
            path: std::env::var_os("PATH").unwrap_or_default(),
            sbin_dirs: ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .map(PathBuf::from)
                .to_vec(),
            // SAFETY: geteuid(2) cannot fail and touches no memory.
            root: unsafe { libc::geteuid() } == 0,
            userns: Arc::new(|| match kiln_instance::detect::isolation_support() {
                kiln_instance::detect::Support::Unsupported(reason) => Err(reason),
                _ => Ok(()),
            }),
            proc_filesystems: PathBuf::from("/proc/filesystems"),
            kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            busybox: PathBuf::from(kiln_image::BUSYBOX),
        }
    }
}

/// What the operator configured (the flags of `kiln serve`, `kiln worker`, `kiln doctor`).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `--database` (PostgreSQL); `None`: SQLite in the data directory.
    pub database: Option<String>,
    /// `--registry`, parsed.
    pub registry: Option<kiln_image::SharedRegistry>,
    /// `--debian-mirror` when the operator named one; `None` for the default, which is not
    /// contacted.
    pub debian_mirror: Option<String>,
    /// `--s3-endpoint`.
    pub s3_endpoint: Option<String>,
    /// How long a network check may take.
    pub timeout: Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            database: None,
            registry: None,
            debian_mirror: None,
            s3_endpoint: None,
            timeout: Duration::from_secs(1),
        }
    }
}

/// A check not yet run: its name and whether its failure would block builds, for the answer
/// given when it does not finish in time.
struct Pending {
    name: String,
    /// What it waits for, in the answer given when it does not finish in time.
    what: String,
    blocking: bool,
    run: Box<dyn FnOnce() -> Vec<Check> + Send>,
}

fn pending(
    name: &str,
    blocking: bool,
    run: impl FnOnce() -> Vec<Check> + Send + 'static,
) -> Pending {
    Pending {
        name: name.to_string(),
        what: "the check".to_string(),
        blocking,
        run: Box::new(run),
    }
}

/// Runs every check at once; returns after they all answered or after the timeout (plus half
/// a second), whichever is first.
pub fn run(env: &Environment, config: &Config) -> Report {
    let all = checks(env, config);
    let (send, receive) = mpsc::channel();
    let mut names = Vec::with_capacity(all.len());
    for (index, check) in all.into_iter().enumerate() {
        let Pending {
            name,
            what,
            blocking,
            run,
        } = check;
        names.push((name.clone(), what, blocking));
        let sender = send.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("kiln-doctor-{index}"))
            .spawn(move || {
                let _ = sender.send((index, run()));
            });
        if let Err(e) = spawned {
            let _ = send.send((
                index,
                vec![Check::gap(
                    name,
                    Status::Failed,
                    format!("could not start the check: {e}"),
                    "",
                )],
            ));
        }
    }
    drop(send);
    let deadline = Instant::now() + config.timeout + Duration::from_millis(500);
    let mut answers: Vec<Option<Vec<Check>>> = vec![None; names.len()];
    while answers.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(left) {
            Ok((index, checks)) => answers[index] = Some(checks),
            Err(_) => break,
        }
    }
    let mut report = Report::default();
    for (answer, (name, what, blocking)) in answers.into_iter().zip(names) {
        match answer {
            Some(checks) => report.checks.extend(checks),
            None => {
                let check = Check::gap(
                    name,
                    Status::Failed,
                    format!(
                        "{what} did not answer within {} ms",
                        (config.timeout + Duration::from_millis(500)).as_millis()
                    ),
                    "run `kiln doctor` again; if it persists, see what the check waits for",
                );
                report
                    .checks
                    .push(if blocking { check.blocking() } else { check });
            }
        }
    }
    report
}

/// The checks, in the order they are reported.
fn checks(env: &Environment, config: &Config) -> Vec<Pending> {
    let mut out = Vec::new();
    let e = env.clone();
    out.push(pending("privileges", true, move || {
        vec![system::privileges(&e)]
    }));
    let e = env.clone();
    out.push(pending("overlayfs", true, move || {
        vec![system::overlayfs(&e)]
    }));
    let e = env.clone();
    out.push(pending("cgroups", true, move || vec![system::cgroups(&e)]));
    let (e, c) = (env.clone(), config.clone());
    out.push(pending("tools", false, move || tools::all(&e, &c)));
    let c = config.clone();
    out.push(pending("disk-space", true, move || {
        vec![system::disk_space(&c.data_dir)]
    }));
    let c = config.clone();
    let mut database = pending("database", true, move || vec![network::database(&c)]);
    if let Some(url) = &config.database {
        database.what = format!("PostgreSQL {}", kiln_store::postgres::redact(url));
    }
    out.push(database);
    if let Some(registry) = config.registry.clone() {
        let timeout = config.timeout;
        out.push(pending("registry", true, move || {
            vec![network::registry(&registry, timeout)]
        }));
    }
    let c = config.clone();
    out.push(pending("debian-mirror", false, move || {
        vec![network::debian_mirror(
            c.debian_mirror.as_deref(),
            c.timeout,
        )]
    }));
    if let Some(endpoint) = config.s3_endpoint.clone() {
        let timeout = config.timeout;
        out.push(pending("s3-endpoint", false, move || {
            vec![network::s3_endpoint(&endpoint, timeout)]
        }));
    }
    out
}
