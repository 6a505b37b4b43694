//! The privileged system calls, behind one small interface.
//!
//! Everything an instance needs from the kernel that ordinary processes may not do lives in the
//! [`Privileged`] trait: mounting (overlay, tmpfs, bind), unmounting, device nodes, cgroups, and
//! turning a [`Command`] into one that starts isolated ([`Privileged::isolate`]). The lifecycle
//! in [`crate::instance`] only calls this trait, so its logic (what is mounted where, in which
//! order things are undone, what happens when a step fails half-way) is tested with
//! [`RecordingPrivileged`], which records the calls and touches nothing, without root.
//!
//! [`RealPrivileged`] makes the calls with `libc`, no helper binaries, so launching an instance
//! costs a few system calls and starting a command in it costs one extra `fork`.
//!
//! The instance's cgroups include a device allow-list ([`ALLOWED_DEVICES`]: a v1 `devices`
//! cgroup, and the eBPF program of [`crate::devices`] on the unified hierarchy), and its root
//! filesystem is mounted `nodev`.
//!
//! Layout: this module holds the interface ([`Privileged`], [`IsolationPlan`], [`SysError`]).
//! `policy` says what an isolated command is allowed (capabilities, masked and read-only paths,
//! devices); `calls` wraps the raw system calls; `real` is [`RealPrivileged`]; `isolation` is
//! the `pre_exec` hook that starts a command isolated (its own documentation walks through the
//! steps); `mountinfo` reads the mount table; `recording` is [`RecordingPrivileged`].

mod calls;
mod isolation;
mod mountinfo;
mod policy;
mod real;
mod recording;

pub(crate) use calls::{bind_file, cstring, os_result, tmpfs_options, write_file};
pub(crate) use isolation::{wait_and_exit, Isolation};
pub use mountinfo::parse_mounts_under;
pub use policy::{
    device_rules, ALLOWED_DEVICES, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS,
};
pub use real::RealPrivileged;
pub use recording::{Call, RecordingPrivileged};

use crate::limits::Limits;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A privileged operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct SysError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl SysError {
    pub(crate) fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> SysError {
        SysError {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(op: &'static str, path: impl Into<PathBuf>, message: &str) -> SysError {
        SysError::new(
            op,
            path,
            io::Error::new(io::ErrorKind::InvalidInput, message.to_string()),
        )
    }
}

pub type SysResult<T> = Result<T, SysError>;

/// How a command of an instance is isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationPlan {
    /// The instance's root filesystem (the overlay mount point) on the host.
    pub root: PathBuf,
    pub hostname: String,
    /// Whether the instance has networking: then its commands join [`IsolationPlan::netns`]
    /// (or, for a rootless instance, share the host's network); otherwise each gets a network
    /// namespace with only a loopback device.
    pub network: bool,
    /// The `cgroup.procs` files the command joins.
    pub cgroup_procs: Vec<PathBuf>,
    /// The capabilities the command keeps.
    pub capabilities: Vec<u32>,
    /// The instance's own network namespace (a bind-mounted namespace file), which every
    /// command joins: an instance with networking never shares the host's.
    pub netns: Option<PathBuf>,
    /// The instance's user namespace (its pinned namespace file), which every command joins
    /// as its root before it makes its other namespaces ([`crate::userns`]); `None` where
    /// commands run as host root.
    pub userns: Option<PathBuf>,
    /// Who the command runs as, and where (a Dockerfile's `USER` and `WORKDIR`); `None`: the
    /// instance's root, in `/`.
    pub process: Option<Process>,
}

/// The user and working directory of one command (see [`IsolationPlan::process`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Process {
    /// `(uid, gid, supplementary groups)` inside the instance; `None`: root.
    pub user: Option<(u32, u32, Vec<u32>)>,
    /// An absolute path inside the instance; `None`: `/`.
    pub working_dir: Option<String>,
}

/// The privileged operations an instance needs. See the module documentation.
pub trait Privileged: Send + Sync {
    /// `Ok` when this process can make the calls; otherwise why not.
    fn preflight(&self) -> Result<(), String>;
    /// Mounts an overlay at `target`; `lowers` top-most first, as overlayfs lists them.
    fn mount_overlay(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> SysResult<()>;
    /// Mounts a tmpfs. `options` is comma-separated; `nosuid`, `nodev`, `noexec` are flags,
    /// the rest goes to tmpfs (`mode=755,size=64m`).
    fn mount_tmpfs(&self, target: &Path, options: &str) -> SysResult<()>;
    fn bind_mount(&self, src: &Path, dst: &Path, readonly: bool) -> SysResult<()>;
    /// Unmounts `target`; when it is busy, detaches it lazily. Not mounted is success.
    fn unmount(&self, target: &Path) -> SysResult<()>;
    fn mknod_char(&self, path: &Path, major: u32, minor: u32, mode: u32) -> SysResult<()>;
    /// The cgroup directories an instance named `name` has (whether or not they exist).
    fn cgroup_paths(&self, name: &str) -> Vec<PathBuf>;
    /// Creates the instance's cgroups with `limits`; answers their directories.
    fn cgroup_create(&self, name: &str, limits: &Limits) -> SysResult<Vec<PathBuf>>;
    /// Moves process `pid` into the cgroups.
    fn cgroup_add(&self, dirs: &[PathBuf], pid: u32) -> SysResult<()>;
    /// Kills every process in the cgroups and waits until they are empty. Missing directories
    /// are empty.
    fn cgroup_kill(&self, dirs: &[PathBuf]) -> SysResult<()>;
    /// Kills every process of the instance in `dir` (whose cgroups are `cgroups`) and waits
    /// until they are gone; the instance itself stays usable. Cancelling a build uses it.
    fn stop_processes(&self, _dir: &Path, cgroups: &[PathBuf]) -> SysResult<()> {
        self.cgroup_kill(cgroups)
    }
    /// Removes the cgroup directories (missing ones are fine).
    fn cgroup_remove(&self, dirs: &[PathBuf]) -> SysResult<()>;
    /// The mount points at or below `dir` in this process's mount namespace, the most recently
    /// mounted first (the order to unmount them in).
    fn mounts_under(&self, dir: &Path) -> SysResult<Vec<PathBuf>>;
    /// Makes `cmd` start isolated as `plan` says.
    fn isolate(&self, cmd: &mut Command, plan: &IsolationPlan);
    /// Called once the instance in `dir` is set up (everything mounted and created, `plan`
    /// final), before any command runs. [`crate::RootlessPrivileged`] starts the process that
    /// holds the instance's namespaces and mounts here.
    fn instance_ready(&self, _dir: &Path, _plan: &IsolationPlan) -> SysResult<()> {
        Ok(())
    }
    /// Called when another process opens the instance in `dir` ([`crate::Instance::attach`]):
    /// `Err` when its commands cannot run (its mounts are gone).
    fn instance_attached(&self, _dir: &Path) -> SysResult<()> {
        Ok(())
    }
    /// The host path that shows the instance's root filesystem mounted at `merged` (the
    /// overlay mount point): `merged` itself where the mounts are the host's.
    fn host_root(&self, merged: &Path) -> PathBuf {
        merged.to_path_buf()
    }
    /// `Some((uid, gid))` when the instance's root user is this host user and group (a user
    /// namespace): files "root" makes in the instance belong to them on the host.
    fn uid_map(&self) -> Option<(u32, u32)> {
        None
    }
    /// Creates a user namespace for the instance in `dir` (pinned at `dir/userns`) that maps
    /// the instance's ids to the host ids starting at the answered base ([`crate::userns`]);
    /// `Ok(None)` where root in an instance stays host root.
    fn user_namespace(&self, _dir: &Path) -> SysResult<Option<(PathBuf, u32)>> {
        Ok(None)
    }
    /// Binds `src` read-only at `dst` with its ids mapped through the user namespace pinned
    /// at `userns`.
    fn mount_idmapped(&self, src: &Path, dst: &Path, _userns: &Path) -> SysResult<()> {
        Err(SysError::invalid(
            "mount idmapped",
            dst,
            &format!("no idmapped mounts here (of {})", src.display()),
        ))
    }
    /// The capabilities commands keep.
    fn capabilities(&self) -> Vec<u32> {
        DEFAULT_CAPABILITIES.to_vec()
    }
    /// Gives the instance in `dir` a network namespace of its own with outbound access, and
    /// answers the namespace file its commands join; `None` where commands share the host's
    /// network (rootless instances).
    fn network_create(&self, _dir: &Path) -> SysResult<Option<PathBuf>> {
        Ok(None)
    }
    /// Removes what [`Privileged::network_create`] made on the host for the instance in `dir`
    /// (called by teardown after the unmounts; nothing made is success).
    fn network_remove(&self, _dir: &Path) -> SysResult<()> {
        Ok(())
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
