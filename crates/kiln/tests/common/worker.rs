//! A real `kiln worker` process on a shared database, with its own data directory, for the
//! tests of build workers as their own processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_PREFIX: &str = "kiln worker ready: ";

/// A running `kiln worker`, killed when dropped.
pub struct WorkerProcess {
    child: Option<Child>,
    root: tempfile::TempDir,
    database: String,
    extra_args: Vec<String>,
    /// The name of its claims (`<machine>/pid-<n>`), from its ready line.
    pub id: String,
}

impl WorkerProcess {
    /// Starts `kiln worker --database URL` with `extra_args` and waits until it is ready.
    pub fn start(database: &str, extra_args: &[&str]) -> WorkerProcess {
        let mut worker = WorkerProcess {
            child: None,
            root: tempfile::tempdir().expect("a temporary directory"),
            database: database.to_string(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            id: String::new(),
        };
        worker.spawn();
        worker
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("worker.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the worker runs").id()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("worker.log"))
            .expect("opening the worker log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("worker")
            .arg("--database")
            .arg(&self.database)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env_remove("KILN_DATA_DIR")
            .env_remove("KILN_DATABASE")
            .env_remove("KILN_BUILD_CONCURRENCY")
            .env_remove("KILN_LEASE_SECONDS")
            .env_remove("KILN_CLOCK_FILE")
            .env_remove("KILN_ECR_REGISTRY")
            .env_remove("KILN_ECR_REGISTRY_CA")
            .env_remove("KILN_ECR_AUTH_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning kiln worker");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        match wait_ready(stdout) {
            Some(id) => self.id = id,
            None => {
                self.kill();
                panic!(
                    "kiln worker was not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits for the process to end.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).expect("a pid");
            // SAFETY: signalling a child this test started and has not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Sends `signal` (SIGSTOP and SIGCONT: a worker cut off for a while).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: signalling a child this test started and has not reaped yet.
        unsafe { libc::kill(pid, signal) };
    }

    /// Starts it again on the same data directory (the same machine coming back).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_ready(stdout: std::process::ChildStdout) -> Option<String> {
    super::wait_for_line(stdout, READY_PREFIX, READY_TIMEOUT)
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading its stat");
    // The command name may hold spaces; the fields after it are space-separated.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second.max(1))
}

/// Whether `dir` has no entries (or does not exist).
pub fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}
