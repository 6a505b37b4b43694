//! Rootless instances: build instances for a Kiln that does not run as root.
//!
//! An unprivileged process cannot mount anything on the host or create cgroups, but on a kernel
//! that allows unprivileged user namespaces (see [`crate::detect`]) an instance can have a
//! *user namespace* of its own, where Kiln's user is root over the instance's mount, PID, UTS,
//! IPC (and network) namespaces. [`RootlessPrivileged`] is the [`Privileged`] for that
//! case.
//!
//! # The holder
//!
//! Nothing is mounted in the host's mount namespace. The mount calls of [`crate::instance`]
//! (`mount_overlay`, `mount_tmpfs`, `bind_mount`, `mknod_char`) are *recorded* for the instance
//! they are about (the mount target names it: `<instance dir>/merged` and below) and persisted
//! in `<instance dir>/rootless.json` ([`STATE_FILE`]). A device node becomes a bind mount of the
//! host's node (the way rootless container runtimes do it, since `mknod` of a device is not
//! allowed in a user namespace). Once the instance is set up
//! ([`Privileged::instance_ready`]), a *holder* process is started (forked twice, so it is
//! nobody's child to wait for, in a session of its own): it `unshare`s a user namespace, maps
//! root in it to Kiln's user (`0 <uid> 1`, `setgroups` denied, `0 <gid> 1`), `unshare`s a mount
//! namespace, makes the recorded mounts there (the overlay with `userxattr`, so overlayfs keeps
//! its attributes in `user.overlay.*`; the `/dev` tmpfs with what the launcher put there, host
//! device nodes bound in, `/dev/shm`), reports to its launcher through a pipe, and then waits
//! (`pause`) until it is killed. Its pid and start time go to `<instance dir>/rootless.holder`
//! ([`HOLDER_FILE`]).
//!
//! The host sees the mounted tree at `/proc/<holder pid>/root/<instance dir>/merged`
//! ([`Privileged::host_root`]; the same user may look into its own user namespace's
//! processes): that is the instance's [`kiln_toe::target::Target::root`], so the component
//! engine's file actions and scratch files (ExecuteBash's script) land in the instance. Files
//! the host process makes there belong to Kiln's user: root in the instance.
//!
//! # How a command starts
//!
//! [`RootlessPrivileged::isolate`] opens `/proc/<holder>/ns/user` and `/ns/mnt` and the pid
//! list before the fork and installs a `pre_exec` hook, like [`crate::sys`]'s (async-signal-safe
//! calls only in the child). In the child it
//!
//! 1. `setns`es into the holder's user namespace, then its mount namespace;
//! 2. `unshare`s a mount namespace of its own (a copy of the holder's, so `pivot_root` and
//!    `/proc` do not disturb the holder's) and the PID, UTS and IPC namespaces (and the network
//!    namespace unless the instance has networking);
//! 3. `fork`s (only children of the process that unshared the PID namespace are inside it);
//!    the middle process appends the inner process's host pid and PID namespace inode to
//!    `<instance dir>/rootless.pids` ([`PIDS_FILE`]), closes every descriptor, waits and exits
//!    with the inner status;
//! 4. in the inner process (PID 1): makes every mount private, sets the hostname, mounts
//!    `/proc` (and, best effort, `/sys` and `/dev/pts`), `pivot_root`s into the root, applies
//!    the limits as rlimits and drops capabilities to [`crate::sys::DEFAULT_CAPABILITIES`] as
//!    the root hook does.
//!
//! So every command of an instance, a `kiln instance shell` in another process
//! ([`Privileged::instance_attached`] checks the holder runs) and the host's file actions all
//! see one filesystem, at the same time.
//!
//! # Limits
//!
//! Without cgroup delegation an unprivileged process cannot create cgroups, so
//! [`Privileged::cgroup_paths`] and [`Privileged::cgroup_create`] answer no directories and the
//! instance's [`Limits`] become rlimits of each command: `RLIMIT_NPROC` = `pids_max` (counted
//! per user namespace on Linux 5.14 and later, so per instance), `RLIMIT_AS` = `memory_bytes`
//! (per process address space, not the instance's total memory). There is no CPU limit.
//!
//! # Teardown
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
//!
//! # Limitations
//!
//! The user namespace maps one id: files in the instance belong to root (Kiln's user on the
//! host, which snapshots record as 0:0: [`Privileged::uid_map`]) or to nobody, and `chown` to
//! another user fails. The host's file actions run as Kiln's user without capabilities: they
//! cannot write a file or directory whose owner has no write permission (a 0444 file), which
//! root in the instance can. Lower layers must be owned by Kiln's
//! user (as kiln-image unpacks them when it runs unprivileged): copying up a file the user does
//! not own fails.

use crate::limits::Limits;
use crate::sys::{
    cstring, lock, os_result, tmpfs_options, wait_and_exit, write_file, Isolation, IsolationPlan,
    Privileged, SysError, SysResult,
};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The file in the instance directory that holds the recorded operations.
pub const STATE_FILE: &str = "rootless.json";
/// The file in the instance directory that lists the commands' PID-namespace inits.
pub const PIDS_FILE: &str = "rootless.pids";
/// The file in the instance directory that names the holder process (`<pid> <start time>`).
pub const HOLDER_FILE: &str = "rootless.holder";
/// The instance's root filesystem, below the instance directory.
const ROOT_DIR: &str = "merged";

/// One mount a command's child makes, in the order recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountOp {
    /// An overlay; `lowers` top-most first.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    Tmpfs {
        target: PathBuf,
        options: String,
    },
    Bind {
        src: PathBuf,
        dst: PathBuf,
        readonly: bool,
    },
    /// A device node: the host's node `src` bound onto a file created at `dst`.
    Device {
        src: PathBuf,
        dst: PathBuf,
    },
}

/// What `rootless.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootlessState {
    pub mounts: Vec<MountOp>,
    /// The instance's limits, applied as rlimits; `None` until `cgroup_create`.
    pub limits: Option<Limits>,
}

/// Reads `<dir>/rootless.json`.
pub fn read_state(dir: &Path) -> SysResult<RootlessState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read(&path).map_err(|e| SysError::new("read", &path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| SysError::new("read", &path, io::Error::new(io::ErrorKind::InvalidData, e)))
}

fn write_state(dir: &Path, state: &RootlessState) -> SysResult<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(".rootless.json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|e| {
        SysError::new(
            "write",
            &path,
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })?;
    std::fs::write(&tmp, text).map_err(|e| SysError::new("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| SysError::new("rename", &path, e))
}

/// The host device node a rootless instance binds for `c major:minor`.
fn host_device(major: u32, minor: u32) -> Option<&'static str> {
    Some(match (major, minor) {
        (1, 3) => "/dev/null",
        (1, 5) => "/dev/zero",
        (1, 7) => "/dev/full",
        (1, 8) => "/dev/random",
        (1, 9) => "/dev/urandom",
        (5, 0) => "/dev/tty",
        _ => return None,
    })
}

/// The [`Privileged`] of an unprivileged Kiln: user namespaces instead of root. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct RootlessPrivileged {
    /// The recorded state of the instances this process launched, by instance directory.
    instances: Mutex<HashMap<PathBuf, RootlessState>>,
}

impl RootlessPrivileged {
    pub fn new() -> Self {
        Self::default()
    }

    /// The recorded state of the instance in `dir`: this process's record, or `rootless.json`.
    pub fn state(&self, dir: &Path) -> SysResult<RootlessState> {
        if let Some(state) = lock(&self.instances).get(dir) {
            return Ok(state.clone());
        }
        read_state(dir)
    }

    /// Records `mount` for the instance whose root holds `path`.
    fn record(&self, op: &'static str, path: &Path, mount: MountOp) -> SysResult<()> {
        let mut instances = lock(&self.instances);
        let (dir, state) = instances
            .iter_mut()
            .filter(|(dir, _)| path.starts_with(dir.join(ROOT_DIR)))
            .max_by_key(|(dir, _)| dir.as_os_str().len())
            .ok_or_else(|| {
                SysError::invalid(
                    op,
                    path,
                    "no instance root (an overlay mounted at <instance>/merged) holds this path",
                )
            })?;
        state.mounts.push(mount);
        if let Err(e) = write_state(dir, state) {
            state.mounts.pop();
            return Err(e);
        }
        Ok(())
    }
}

/// The overlay's mount data, or why the paths cannot be given to overlayfs.
fn overlay_data(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> SysResult<String> {
    const OP: &str = "mount overlay";
    if lowers.is_empty() {
        return Err(SysError::invalid(
            OP,
            target,
            "an overlay needs at least one lower directory",
        ));
    }
    let mut paths = Vec::new();
    for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        let text = p
            .to_str()
            .ok_or_else(|| SysError::invalid(OP, p, "the path is not valid UTF-8"))?;
        if text.contains([',', ':', '\\', '\0']) {
            return Err(SysError::invalid(
                OP,
                p,
                "overlay layer paths may not contain `,`, `:`, `\\` or NUL",
            ));
        }
        paths.push(text);
    }
    // `userxattr`: overlayfs in a user namespace keeps its attributes (opaque directories) in
    // `user.overlay.*`; it also turns redirect_dir and metacopy off (asking for them is an
    // error with userxattr), so the upper dir holds plain files and whiteouts only.
    Ok(format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        paths[..lowers.len()].join(":"),
        paths[lowers.len()],
        paths[lowers.len() + 1]
    ))
}

impl Privileged for RootlessPrivileged {
    fn preflight(&self) -> Result<(), String> {
        match crate::detect::isolation_support() {
            crate::Support::UserNamespace => Ok(()),
            crate::Support::Root => Err(
                "Kiln runs as root: rootless instances are for an unprivileged Kiln; use real \
                 mounts and cgroups (detect::privileged_for_this_process picks them)"
                    .into(),
            ),
            crate::Support::Unsupported(reason) => Err(format!(
                "Kiln is not running as root and cannot isolate a build without it: {reason}; \
                 run Kiln as root"
            )),
        }
    }

    fn mount_overlay(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> SysResult<()> {
        overlay_data(lowers, upper, work, target)?;
        let dir = match target.parent() {
            Some(dir)
                if target.is_absolute() && target.file_name() == Some(OsStr::new(ROOT_DIR)) =>
            {
                dir.to_path_buf()
            }
            _ => {
                return Err(SysError::invalid(
                    "mount overlay",
                    target,
                    "a rootless instance's root must be <absolute instance dir>/merged",
                ))
            }
        };
        let state = RootlessState {
            mounts: vec![MountOp::Overlay {
                lowers: lowers.to_vec(),
                upper: upper.to_path_buf(),
                work: work.to_path_buf(),
                target: target.to_path_buf(),
            }],
            limits: None,
        };
        write_state(&dir, &state)?;
        lock(&self.instances).insert(dir, state);
        Ok(())
    }

    fn mount_tmpfs(&self, target: &Path, options: &str) -> SysResult<()> {
        if options.contains('\0') {
            return Err(SysError::invalid(
                "mount tmpfs",
                target,
                "the options contain NUL",
            ));
        }
        let mount = MountOp::Tmpfs {
            target: target.to_path_buf(),
            options: options.to_string(),
        };
        self.record("mount tmpfs", target, mount)
    }

    fn bind_mount(&self, src: &Path, dst: &Path, readonly: bool) -> SysResult<()> {
        std::fs::metadata(src).map_err(|e| SysError::new("bind mount", src, e))?;
        let mount = MountOp::Bind {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            readonly,
        };
        self.record("bind mount", dst, mount)
    }

    fn unmount(&self, _target: &Path) -> SysResult<()> {
        Ok(()) // nothing is mounted on the host
    }

    /// Records a bind mount of the host's node for the device (a user namespace may not make
    /// device nodes). The host node's mode applies, not `mode`.
    fn mknod_char(&self, path: &Path, major: u32, minor: u32, _mode: u32) -> SysResult<()> {
        let src = host_device(major, minor).ok_or_else(|| {
            SysError::invalid(
                "mknod",
                path,
                &format!("rootless instances have no host device to bind for c {major}:{minor}"),
            )
        })?;
        let src = Path::new(src);
        let md = std::fs::metadata(src).map_err(|e| SysError::new("mknod", src, e))?;
        if !md.file_type().is_char_device() || md.rdev() != libc::makedev(major, minor) {
            return Err(SysError::invalid(
                "mknod",
                src,
                &format!("the host's node is not the character device {major}:{minor}"),
            ));
        }
        let mount = MountOp::Device {
            src: src.to_path_buf(),
            dst: path.to_path_buf(),
        };
        self.record("mknod", path, mount)
    }

    fn cgroup_paths(&self, _name: &str) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Records `limits` for the instance named `name` (applied as rlimits); no cgroups.
    fn cgroup_create(&self, name: &str, limits: &Limits) -> SysResult<Vec<PathBuf>> {
        let mut instances = lock(&self.instances);
        let mut found = instances
            .iter_mut()
            .filter(|(dir, _)| dir.file_name() == Some(OsStr::new(name)));
        let (dir, state) = match (found.next(), found.next()) {
            (Some(one), None) => one,
            _ => {
                return Err(SysError::invalid(
                    "cgroup create",
                    Path::new(name),
                    "no single rootless instance of this name has its overlay recorded",
                ))
            }
        };
        let before = state.limits.replace(*limits);
        if let Err(e) = write_state(dir, state) {
            state.limits = before;
            return Err(e);
        }
        Ok(Vec::new())
    }

    fn cgroup_add(&self, _dirs: &[PathBuf], _pid: u32) -> SysResult<()> {
        Ok(())
    }

    fn cgroup_kill(&self, _dirs: &[PathBuf]) -> SysResult<()> {
        Ok(()) // see mounts_under
    }

    /// The commands' PID namespaces end; the holder (and so the mounts) stays.
    fn stop_processes(&self, dir: &Path, _cgroups: &[PathBuf]) -> SysResult<()> {
        end_processes(dir)
    }

    fn cgroup_remove(&self, _dirs: &[PathBuf]) -> SysResult<()> {
        Ok(())
    }

    /// Nothing is mounted on the host. The instance's mounts live as long as its commands'
    /// namespaces: this ends them first (SIGKILL to every recorded PID-namespace init, waiting
    /// until they are gone), then makes the directories below `dir` removable by their owner.
    fn mounts_under(&self, dir: &Path) -> SysResult<Vec<PathBuf>> {
        end_processes(dir)?;
        if let Ok(Some(holder)) = Holder::read(dir) {
            if !holder.kill_and_wait() {
                return Err(SysError::new(
                    "kill",
                    dir.join(HOLDER_FILE),
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the holder {} is still alive after 10 s of SIGKILL",
                            holder.pid
                        ),
                    ),
                ));
            }
        }
        make_removable(dir);
        lock(&self.instances).remove(dir);
        Ok(Vec::new())
    }

    fn isolate(&self, cmd: &mut Command, plan: &IsolationPlan) {
        let hook = plan
            .root
            .parent()
            .ok_or_else(|| SysError::invalid("isolate", &plan.root, "the root has no parent"))
            .and_then(|dir| {
                let holder = running_holder(dir)?;
                CommandHook::new(dir, plan, &self.state(dir)?, holder)
            });
        match hook {
            Ok(hook) => {
                // SAFETY: the hook only makes async-signal-safe calls on data prepared here.
                unsafe { cmd.pre_exec(move || hook.run()) };
            }
            Err(e) => {
                // No holder, no recorded state, or a path with a NUL byte: fail the spawn
                // rather than run the command unisolated.
                let code = e.source.raw_os_error().unwrap_or(libc::EINVAL);
                // SAFETY: the hook makes no call at all.
                unsafe { cmd.pre_exec(move || Err(io::Error::from_raw_os_error(code))) };
            }
        }
    }

    /// Starts the instance's holder: a process in a user namespace of its own (root mapped to
    /// this user) and a mount namespace where it makes the recorded mounts, then waits to be
    /// killed. Its pid goes to `rootless.holder`.
    fn instance_ready(&self, dir: &Path, plan: &IsolationPlan) -> SysResult<()> {
        let state = self.state(dir)?;
        let setup = HolderSetup::new(plan, &state)?;
        let pid = setup.start(dir)?;
        let holder = Holder {
            pid,
            start: process_start(pid).unwrap_or(0),
        };
        let path = dir.join(HOLDER_FILE);
        let tmp = dir.join(".rootless.holder.tmp");
        let written = std::fs::write(&tmp, format!("{} {}\n", holder.pid, holder.start))
            .map_err(|e| SysError::new("write", &tmp, e))
            .and_then(|()| {
                std::fs::rename(&tmp, &path).map_err(|e| SysError::new("rename", &path, e))
            });
        if let Err(e) = written {
            holder.kill_and_wait();
            return Err(e);
        }
        Ok(())
    }

    fn instance_attached(&self, dir: &Path) -> SysResult<()> {
        running_holder(dir).map(|_| ())
    }

    /// `/proc/<holder pid>/root/<merged>`: the holder's mount namespace seen from the host
    /// (the same user may look into it). `merged` when the instance has no holder.
    fn host_root(&self, merged: &Path) -> PathBuf {
        let holder = merged.parent().and_then(|dir| running_holder(dir).ok());
        match (holder, merged.strip_prefix("/")) {
            (Some(h), Ok(rel)) => PathBuf::from(format!("/proc/{}/root", h.pid)).join(rel),
            _ => merged.to_path_buf(),
        }
    }

    fn uid_map(&self) -> Option<(u32, u32)> {
        Some(host_ids())
    }
}

/// This process's effective user and group: root in a rootless instance.
fn host_ids() -> (u32, u32) {
    // SAFETY: geteuid(2) and getegid(2) cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Start time of process `pid` in clock ticks after boot, if it exists and is not a zombie.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), None | Some("Z") | Some("X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The process that holds a rootless instance's namespaces, as `rootless.holder` records it.
#[derive(Debug, Clone, Copy)]
struct Holder {
    pid: u32,
    /// `/proc/<pid>/stat` field 22, so a reused pid is not mistaken for it.
    start: u64,
}

impl Holder {
    fn read(dir: &Path) -> SysResult<Option<Holder>> {
        let path = dir.join(HOLDER_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SysError::new("read", &path, e)),
        };
        let parsed = text.trim().split_once(' ').and_then(|(pid, start)| {
            Some(Holder {
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            })
        });
        match parsed {
            Some(h) if h.pid > 1 => Ok(Some(h)),
            _ => Err(SysError::invalid("read", &path, "not `<pid> <start time>`")),
        }
    }

    fn alive(&self) -> bool {
        process_start(self.pid) == Some(self.start)
    }

    /// SIGKILLs the holder (if it is still the recorded process) and waits until it is gone.
    fn kill_and_wait(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.alive() {
            if Instant::now() > deadline {
                return false;
            }
            // SAFETY: kill(2) takes plain integers; the pid was checked to be the holder.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// The instance's holder, if it runs; otherwise why commands cannot run.
fn running_holder(dir: &Path) -> SysResult<Holder> {
    match Holder::read(dir)? {
        Some(h) if h.alive() => Ok(h),
        Some(h) => Err(SysError::new(
            "join the instance",
            dir.join(HOLDER_FILE),
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the process that held the instance's mounts ({}) is gone; the instance \
                     cannot run commands any more",
                    h.pid
                ),
            ),
        )),
        None => Err(SysError::new(
            "join the instance",
            dir.join(HOLDER_FILE),
            io::Error::new(
                io::ErrorKind::NotFound,
                "the instance has no holder process (it was not launched completely)",
            ),
        )),
    }
}

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
fn end_processes(dir: &Path) -> SysResult<()> {
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
fn make_removable(dir: &Path) {
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

/// One step of the inner process before `pivot_root`.
enum Step {
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Makes the path a directory (replacing a file or symlink there).
    Dir(CString),
    /// Makes an empty file at the path if nothing is there (a bind mount target).
    File(CString),
    Symlink {
        to: CString,
        at: CString,
    },
}

fn c_path(p: &Path) -> SysResult<CString> {
    cstring("isolate", p)
}

fn c_text(text: &str, about: &Path) -> SysResult<CString> {
    CString::new(text)
        .map_err(|_| SysError::invalid("isolate", about, "an argument contains a NUL byte"))
}

/// What the launcher put below `host_dir` on the host (directories, symlinks), to be made again
/// in the mount that covers it in the command's namespace. `deep`: below subdirectories too.
fn replay(host_dir: &Path, deep: bool, steps: &mut Vec<Step>) -> SysResult<()> {
    let entries = match std::fs::read_dir(host_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SysError::new("read", host_dir, e)),
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            steps.push(Step::Dir(c_path(&path)?));
            if deep {
                replay(&path, deep, steps)?;
            }
        } else if ft.is_symlink() {
            let to = std::fs::read_link(&path).map_err(|e| SysError::new("read link", &path, e))?;
            steps.push(Step::Symlink {
                to: c_path(&to)?,
                at: c_path(&path)?,
            });
        }
    }
    Ok(())
}

fn steps_for(mounts: &[MountOp]) -> SysResult<Vec<Step>> {
    let mut steps = Vec::new();
    for mount in mounts {
        match mount {
            MountOp::Overlay {
                lowers,
                upper,
                work,
                target,
            } => {
                let data = overlay_data(lowers, upper, work, target)?;
                steps.push(Step::Mount {
                    source: c"overlay".into(),
                    target: c_path(target)?,
                    fstype: Some(c"overlay".into()),
                    flags: 0,
                    data: Some(c_text(&data, target)?),
                });
                // The directories the launcher made in the root (`proc`, `sys`, `tmp`, ...).
                replay(target, false, &mut steps)?;
            }
            MountOp::Tmpfs { target, options } => {
                let (flags, data) = tmpfs_options(options);
                steps.push(Step::Dir(c_path(target)?));
                steps.push(Step::Mount {
                    source: c"tmpfs".into(),
                    target: c_path(target)?,
                    fstype: Some(c"tmpfs".into()),
                    flags,
                    data: Some(c_text(&data, target)?),
                });
                // `/dev`'s links (`fd`, `stdin`, ...) and directories (`pts`, `shm`).
                replay(target, true, &mut steps)?;
            }
            MountOp::Device { src, dst } => {
                steps.push(Step::File(c_path(dst)?));
                steps.push(Step::Mount {
                    source: c_path(src)?,
                    target: c_path(dst)?,
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                });
            }
            MountOp::Bind { src, dst, readonly } => {
                steps.push(if src.is_dir() {
                    Step::Dir(c_path(dst)?)
                } else {
                    Step::File(c_path(dst)?)
                });
                steps.push(Step::Mount {
                    source: c_path(src)?,
                    target: c_path(dst)?,
                    fstype: None,
                    flags: libc::MS_BIND | libc::MS_REC,
                    data: None,
                });
                if *readonly {
                    steps.push(Step::Mount {
                        source: c"none".into(),
                        target: c_path(dst)?,
                        fstype: None,
                        flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        data: None,
                    });
                }
            }
        }
    }
    Ok(steps)
}

/// What the holder process does before it waits, prepared before the fork.
struct HolderSetup {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    steps: Vec<Step>,
}

/// The status message a holder sends its launcher: tag (0 ok, 1 failed), then the holder's
/// pid (ok) or the errno and the index of the failed step, little-endian.
const STATUS_LEN: usize = 9;

impl HolderSetup {
    fn new(plan: &IsolationPlan, state: &RootlessState) -> SysResult<HolderSetup> {
        if !matches!(state.mounts.first(), Some(MountOp::Overlay { target, .. }) if *target == plan.root)
        {
            return Err(SysError::invalid(
                "start the instance's holder",
                &plan.root,
                "the instance's recorded mounts do not start with an overlay at its root",
            ));
        }
        let (uid, gid) = host_ids();
        Ok(HolderSetup {
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            steps: steps_for(&state.mounts)?,
        })
    }

    /// Starts the holder (a grandchild of this process, so that it is nobody's child to wait
    /// for once it is killed) and answers its pid once its mounts are made.
    fn start(&self, dir: &Path) -> SysResult<u32> {
        const OP: &str = "start the instance's holder";
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 fills the two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(SysError::new(OP, dir, io::Error::last_os_error()));
        }
        // SAFETY: both descriptors were just created and are owned here alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child makes async-signal-safe calls only (see `holder_child`) on data
        // prepared before the fork, and never returns.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(SysError::new(OP, dir, io::Error::last_os_error()));
        }
        if child == 0 {
            // SAFETY: in the child of fork; see above.
            unsafe { self.holder_child(write.as_raw_fd()) };
        }
        drop(write);
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(child, &mut status, 0) };
            if r == child || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        let mut msg = [0u8; STATUS_LEN];
        let mut file = std::fs::File::from(read);
        use std::io::Read;
        file.read_exact(&mut msg).map_err(|_| {
            SysError::invalid(
                OP,
                dir,
                "the holder process ended before it reported (see the kernel log)",
            )
        })?;
        let a = u32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
        let b = u32::from_le_bytes([msg[5], msg[6], msg[7], msg[8]]);
        if msg[0] == 0 {
            return Ok(a);
        }
        let what = match b {
            u32::MAX => "setting up its user and mount namespaces".to_string(),
            i => match self.steps.get(i as usize) {
                Some(step) => step.describe(),
                None => format!("step {i}"),
            },
        };
        Err(SysError::new(
            OP,
            dir,
            io::Error::new(
                io::Error::from_raw_os_error(a as i32).kind(),
                format!("{what}: {}", io::Error::from_raw_os_error(a as i32)),
            ),
        ))
    }

    /// The child after `fork`: forks the holder and exits. The holder makes the namespaces
    /// and mounts, reports on `status` and then waits to be killed.
    unsafe fn holder_child(&self, status: libc::c_int) -> ! {
        let pid = libc::fork();
        if pid != 0 {
            libc::_exit(if pid < 0 { 1 } else { 0 });
        }
        libc::setsid();
        // Keep only the status pipe: the holder outlives every descriptor of its launcher.
        if status > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (status - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (status + 1) as u32, u32::MAX, 0u32);
        let report = |tag: u8, a: u32, b: u32| {
            let mut msg = [0u8; STATUS_LEN];
            msg[0] = tag;
            msg[1..5].copy_from_slice(&a.to_le_bytes());
            msg[5..9].copy_from_slice(&b.to_le_bytes());
            libc::write(status, msg.as_ptr().cast(), STATUS_LEN);
        };
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0) as u32;
        let setup = || -> bool {
            libc::unshare(libc::CLONE_NEWUSER) == 0
                && write_file(c"/proc/self/setgroups", b"deny").is_ok()
                && write_file(c"/proc/self/uid_map", &self.uid_map).is_ok()
                && write_file(c"/proc/self/gid_map", &self.gid_map).is_ok()
                && libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
        };
        if !setup() {
            report(1, errno(), u32::MAX);
            libc::_exit(1);
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.run().is_err() {
                report(1, errno(), i as u32);
                libc::_exit(1);
            }
        }
        libc::chdir(c"/".as_ptr());
        report(0, libc::getpid() as u32, 0);
        libc::close(status);
        loop {
            libc::pause();
        }
    }
}

/// Everything a command's `pre_exec` hook needs, prepared before the fork.
struct CommandHook {
    /// The holder's user and mount namespaces.
    user_ns: OwnedFd,
    mnt_ns: OwnedFd,
    pids: OwnedFd,
    isolation: Isolation,
    nproc: Option<u64>,
    address_space: Option<u64>,
}

fn open_fd(path: &Path, flags: libc::c_int) -> SysResult<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: a NUL-terminated path; the descriptor is owned by the answer.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(SysError::new("open", path, io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl CommandHook {
    fn new(
        dir: &Path,
        plan: &IsolationPlan,
        state: &RootlessState,
        holder: Holder,
    ) -> SysResult<CommandHook> {
        let proc = PathBuf::from(format!("/proc/{}", holder.pid));
        let user_ns = open_fd(&proc.join("ns/user"), libc::O_RDONLY)?;
        let mnt_ns = open_fd(&proc.join("ns/mnt"), libc::O_RDONLY)?;
        // The pid could have been reused between the check and the opens.
        if !holder.alive() {
            return Err(SysError::invalid(
                "isolate",
                &proc,
                "the instance's holder process ended",
            ));
        }
        Ok(CommandHook {
            user_ns,
            mnt_ns,
            pids: open_fd(
                &dir.join(PIDS_FILE),
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT,
            )?,
            isolation: Isolation::new(plan)?,
            nproc: state.limits.map(|l| l.pids_max),
            address_space: state.limits.map(|l| l.memory_bytes),
        })
    }

    /// Runs in the child after `fork`: async-signal-safe calls only.
    fn run(&self) -> io::Result<()> {
        // SAFETY (whole block): plain system calls on descriptors, NUL-terminated strings and
        // buffers owned by `self` or the stack, which outlive them.
        unsafe {
            os_result(libc::setns(self.user_ns.as_raw_fd(), libc::CLONE_NEWUSER))?;
            os_result(libc::setns(self.mnt_ns.as_raw_fd(), libc::CLONE_NEWNS))?;
            // A mount namespace of the command's own (a copy of the holder's), so that
            // pivot_root and /proc do not touch the holder's.
            os_result(libc::unshare(self.isolation.flags))?;
            let proc_fd = libc::open(
                c"/proc".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            if proc_fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let pid = libc::fork();
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
            if pid > 0 {
                // The namespace exists once its first process does.
                let mut ns: libc::stat = std::mem::zeroed();
                if libc::fstatat(proc_fd, c"self/ns/pid_for_children".as_ptr(), &mut ns, 0) == 0 {
                    let mut line = [0u8; 48];
                    let mut n = put_decimal(&mut line, 0, pid as u64);
                    line[n] = b' ';
                    n = put_decimal(&mut line, n + 1, ns.st_ino);
                    line[n] = b'\n';
                    libc::write(self.pids.as_raw_fd(), line.as_ptr().cast(), n + 1);
                }
                wait_and_exit(pid);
            }
            libc::close(proc_fd);
            self.isolation.enter_root()?;
            for (resource, value) in [
                (libc::RLIMIT_NPROC, self.nproc),
                (libc::RLIMIT_AS, self.address_space),
            ] {
                if let Some(v) = value {
                    let limit = libc::rlimit {
                        rlim_cur: v as libc::rlim_t,
                        rlim_max: v as libc::rlim_t,
                    };
                    os_result(libc::setrlimit(resource, &limit))?;
                }
            }
            self.isolation.drop_capabilities()?;
            self.isolation.confine()
        }
    }
}

impl Step {
    /// What the step does, for an error message.
    fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Step::Mount {
                source,
                target,
                fstype,
                ..
            } => format!(
                "mounting {} ({}) at {}",
                s(source),
                fstype.as_ref().map_or_else(|| "bind".into(), s),
                s(target)
            ),
            Step::Dir(p) => format!("making the directory {}", s(p)),
            Step::File(p) => format!("making the file {}", s(p)),
            Step::Symlink { at, .. } => format!("making the symlink {}", s(at)),
        }
    }

    /// Runs in the inner process: async-signal-safe calls only.
    unsafe fn run(&self) -> io::Result<()> {
        let fail = || Err(io::Error::last_os_error());
        match self {
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let rc = libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                    *flags,
                    data.as_ref()
                        .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
                );
                if rc != 0 {
                    return fail();
                }
            }
            Step::Dir(path) => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::lstat(path.as_ptr(), &mut st) == 0 {
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        return Ok(());
                    }
                    // A file or symlink the image put there: a mount would follow it.
                    if libc::unlink(path.as_ptr()) != 0 {
                        return fail();
                    }
                }
                if libc::mkdir(path.as_ptr(), 0o755) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return fail();
                }
            }
            Step::File(path) => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0o644,
                );
                if fd < 0 {
                    return fail();
                }
                libc::close(fd);
            }
            Step::Symlink { to, at } => {
                if libc::symlink(to.as_ptr(), at.as_ptr()) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return fail();
                }
            }
        }
        Ok(())
    }
}

/// Writes `v` in decimal into `buf` at `at`; answers the index after it. No allocation.
fn put_decimal(buf: &mut [u8], at: usize, mut v: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[at + i] = digits[n - 1 - i];
    }
    at + n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_written_without_allocation() {
        let mut buf = [0u8; 48];
        let n = put_decimal(&mut buf, 0, 4026531836);
        buf[n] = b' ';
        let m = put_decimal(&mut buf, n + 1, 0);
        assert_eq!(&buf[..m], b"4026531836 0");
    }

    #[test]
    fn overlay_data_uses_userxattr_and_refuses_bad_paths() {
        let data = overlay_data(
            &["/l1".into(), "/l2".into()],
            Path::new("/i/upper"),
            Path::new("/i/work"),
            Path::new("/i/merged"),
        )
        .unwrap();
        assert_eq!(
            data,
            "lowerdir=/l1:/l2,upperdir=/i/upper,workdir=/i/work,userxattr"
        );
        assert!(overlay_data(&[], Path::new("/u"), Path::new("/w"), Path::new("/m")).is_err());
        assert!(overlay_data(
            &["/a:b".into()],
            Path::new("/u"),
            Path::new("/w"),
            Path::new("/m")
        )
        .is_err());
    }

    #[test]
    fn the_holder_is_prepared_from_the_recorded_state() {
        let dir = tempfile::tempdir().unwrap();
        let merged = dir.path().join("merged");
        std::fs::create_dir_all(merged.join("dev/pts")).unwrap();
        std::fs::create_dir_all(merged.join("proc")).unwrap();
        std::os::unix::fs::symlink("/proc/self/fd", merged.join("dev/fd")).unwrap();
        let state = RootlessState {
            mounts: vec![
                MountOp::Overlay {
                    lowers: vec!["/l".into()],
                    upper: dir.path().join("upper"),
                    work: dir.path().join("work"),
                    target: merged.clone(),
                },
                MountOp::Tmpfs {
                    target: merged.join("dev"),
                    options: "nosuid,mode=755".into(),
                },
                MountOp::Device {
                    src: "/dev/null".into(),
                    dst: merged.join("dev/null"),
                },
            ],
            limits: crate::limits::for_instance_type("t3.micro"),
        };
        let plan = IsolationPlan {
            root: merged.clone(),
            hostname: "h".into(),
            network: false,
            cgroup_procs: Vec::new(),
            capabilities: crate::sys::DEFAULT_CAPABILITIES.to_vec(),
            netns: None,
            userns: None,
        };
        let hook = HolderSetup::new(&plan, &state).unwrap();
        let names: Vec<String> = hook
            .steps
            .iter()
            .map(|s| match s {
                Step::Mount { target, .. } => format!("mount {}", target.to_string_lossy()),
                Step::Dir(p) => format!("dir {}", p.to_string_lossy()),
                Step::File(p) => format!("file {}", p.to_string_lossy()),
                Step::Symlink { at, .. } => format!("link {}", at.to_string_lossy()),
            })
            .collect();
        let m = merged.display();
        assert_eq!(
            names,
            vec![
                format!("mount {m}"),
                format!("dir {m}/dev"),
                format!("dir {m}/proc"),
                format!("dir {m}/dev"),
                format!("mount {m}/dev"),
                format!("link {m}/dev/fd"),
                format!("dir {m}/dev/pts"),
                format!("file {m}/dev/null"),
                format!("mount {m}/dev/null"),
            ]
        );
        let (uid, _) = host_ids();
        assert_eq!(hook.uid_map, format!("0 {uid} 1\n").into_bytes());
        assert_eq!(
            hook.steps[4].describe(),
            format!("mounting tmpfs (tmpfs) at {m}/dev")
        );

        let mut other = state.clone();
        other.mounts.remove(0);
        assert!(HolderSetup::new(&plan, &other).is_err());
    }
}
