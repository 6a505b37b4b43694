//! Ending a rootless instance.
//!
//! There is no cgroup to kill. [`Privileged::mounts_under`] (which teardown and reap call with
//! the instance directory before they unmount and remove it) SIGKILLs the PID-namespace init of
//! every command listed in `rootless.pids` that still runs in the namespace recorded for it
//! (which kills every process of that namespace) and the holder (if it still is the recorded
//! process), and waits until they are gone: the mounts vanish with the last process of the
//! mount namespaces. Then it makes the directories below the instance directory writable by
//! their owner (overlayfs's `work/work` is mode 000), so the directory can be removed. [`reap`]
//! does the same for an instance whose owner died while its holder still runs.
//!
//! [`reap`]: crate::reap
//! [`Privileged::mounts_under`]: crate::sys::Privileged::mounts_under

use super::PIDS_FILE;
use crate::sys::{SysError, SysResult};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// The `pid ino` lines of `rootless.pids`.
fn recorded_inits(dir: &Path) -> SysResult<Vec<(i32, u64)>> {
    let path = dir.join(PIDS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SysError::new("read", &path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let (pid, ino) = line.split_once(' ')?;
            Some((pid.trim().parse().ok()?, ino.trim().parse().ok()?))
        })
        .filter(|&(pid, _)| pid > 1)
        .collect())
}

/// Whether `pid` is still the init of PID namespace `ino` and not a zombie (a zombie holds no
/// namespace and no mount any more).
fn still_running(pid: i32, ino: u64) -> bool {
    let same_ns = std::fs::metadata(format!("/proc/{pid}/ns/pid")).is_ok_and(|m| m.ino() == ino);
    if !same_ns {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// Kills the PID namespaces of the instance's commands and waits until their inits are gone.
pub(super) fn end_processes(dir: &Path) -> SysResult<()> {
    let inits = recorded_inits(dir)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<i32> = inits
            .iter()
            .filter(|&&(pid, ino)| still_running(pid, ino))
            .map(|&(pid, _)| pid)
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        for &pid in &alive {
            // SAFETY: kill(2) takes plain integers. The pid was checked to be the init of the
            // recorded namespace a moment ago; killing it kills its whole namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if Instant::now() > deadline {
            return Err(SysError::new(
                "kill",
                dir.join(PIDS_FILE),
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("processes {alive:?} still alive after 10 s of SIGKILL"),
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Gives the owner rwx on every directory below `dir` it owns and lacks it on (best effort,
/// never following symlinks), so the unprivileged owner can remove the tree.
pub(super) fn make_removable(dir: &Path) {
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if !md.is_dir() {
            continue;
        }
        if md.uid() == me && md.mode() & 0o700 != 0o700 {
            let mode = (md.mode() | 0o700) & 0o7777;
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
}
