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
//! # How a command starts isolated
//!
//! [`RealPrivileged::isolate`] installs a `pre_exec` hook: code that runs in the child between
//! `fork` and `exec`. Everything it needs is prepared before the fork (C strings, the capability
//! masks), because after a fork in a multi-threaded program the child may only make
//! async-signal-safe calls: no allocation, no locks. In the child the hook
//!
//! 1. writes `0` (the writer itself) into every `cgroup.procs` of the instance, so the command
//!    and everything it starts count against the instance's limits and are found at teardown;
//! 2. joins the instance's network namespace (an instance with networking has one of its own,
//!    see [`crate::network`]) or `unshare`s an empty one; in an instance with a user namespace
//!    ([`crate::userns`]) it enters the root directory (still as host root, who may search the
//!    directories above it), joins that namespace and becomes its root (an unprivileged host
//!    uid); then it `unshare`s the mount, PID, UTS and IPC namespaces;
//! 3. `fork`s again, because only the children of a process that unshared its PID namespace are
//!    inside it. The middle process closes every descriptor (so the parent's `spawn` returns as
//!    soon as the inner `exec` happened, and output pipes close when the command's processes
//!    are gone), waits for its child and exits with its status (128 + signal number when it
//!    was killed). The engine runs commands in their own process group, which both processes
//!    share, so killing the group kills both;
//! 4. in the inner process (PID 1 of the new namespace, which takes every other process in the
//!    namespace with it when it exits): asks for `SIGKILL` when the middle process dies, makes
//!    every mount private (in a user namespace, binds the root onto itself: `pivot_root`
//!    refuses the host's mounts, which are locked there), sets the hostname, mounts `/proc`,
//!    and (best effort) a read-only `/sys` and a private `/dev/pts` inside the root, masks runc's [`MASKED_PATHS`] and makes
//!    its [`READONLY_PATHS`] read-only, `pivot_root`s into the root and detaches the old root
//!    (unlike `chroot`, nothing of the host stays reachable), then reduces the capabilities to
//!    the set a container runtime grants by default ([`DEFAULT_CAPABILITIES`], what runc
//!    gives): the bounding set, so nothing can regain others, the ambient set cleared, and
//!    effective/permitted set to that set;
//! 5. sets NoNewPrivs and applies the seccomp filters ([`crate::seccomp`]), the last thing
//!    before `exec`, so none of the set-up above is filtered;
//! 6. returns, and the standard library `exec`s the program, looking it up in `PATH` inside the
//!    new root.
//!
//! The instance's cgroups include a device allow-list ([`ALLOWED_DEVICES`]: a v1 `devices`
//! cgroup, and the eBPF program of [`crate::devices`] on the unified hierarchy), and its root
//! filesystem is mounted `nodev`.

use crate::limits::Limits;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Linux capability numbers (`linux/capability.h`) a container runtime keeps by default.
pub const DEFAULT_CAPABILITIES: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

const CAP_MKNOD: u32 = 27;

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
}

/// What runc masks in a container: directories get an empty read-only tmpfs, files
/// `/dev/null`. Paths relative to the instance's root.
pub const MASKED_PATHS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// What runc makes read-only in a container (`/proc/sys/kernel/core_pattern` is the classic
/// way from a writable `/proc` to root on the host).
pub const READONLY_PATHS: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// The character devices an instance may use (runc's defaults): `(major, minor)`, `None` for
/// any minor. Everything else is refused by the device cgroup, also when a node is made.
pub const ALLOWED_DEVICES: &[(u32, Option<u32>)] = &[
    (1, Some(3)), // null
    (1, Some(5)), // zero
    (1, Some(7)), // full
    (1, Some(8)), // random
    (1, Some(9)), // urandom
    (5, Some(0)), // tty
    (5, Some(1)), // console
    (5, Some(2)), // ptmx
    (136, None),  // /dev/pts/*
];

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

pub(crate) fn cstring(op: &'static str, path: &Path) -> SysResult<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::invalid(op, path, "the path contains a NUL byte"))
}

fn check(op: &'static str, path: &Path, rc: libc::c_int) -> SysResult<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(SysError::new(op, path, io::Error::last_os_error()))
    }
}

fn raw_mount(
    op: &'static str,
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    let invalid = |_| SysError::invalid(op, target, "an argument contains a NUL byte");
    let c_source = CString::new(source).map_err(invalid)?;
    let c_target = cstring(op, target)?;
    let c_fstype = fstype.map(CString::new).transpose().map_err(invalid)?;
    let c_data = data.map(CString::new).transpose().map_err(invalid)?;
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    let rc = unsafe {
        libc::mount(
            c_source.as_ptr(),
            c_target.as_ptr(),
            c_fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            c_data
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    check(op, target, rc)
}

/// Splits [`Privileged::mount_tmpfs`]'s options into mount flags (`nosuid`, `nodev`,
/// `noexec`) and the tmpfs data (the rest, comma-separated).
pub(crate) fn tmpfs_options(options: &str) -> (libc::c_ulong, String) {
    let mut flags = 0;
    let mut data = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// The privileged calls, made for real. Needs root.
#[derive(Debug, Clone)]
pub struct RealPrivileged {
    cgroup_root: PathBuf,
    /// Name of the directory under each hierarchy that holds Kiln's cgroups.
    cgroup_parent: String,
    /// Whether instances with networking may reach the host's own addresses.
    host_access: bool,
    /// The first host id of the range an instance's user namespace maps its ids to; `None`
    /// runs root builds as host root.
    userns_base: Option<u32>,
}

impl Default for RealPrivileged {
    fn default() -> Self {
        RealPrivileged {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "kiln".into(),
            host_access: false,
            userns_base: userns_base_from_env(),
        }
    }
}

/// The v1 controllers an instance uses; memory, pids and devices are required.
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "devices"];
const CPU_PERIOD_US: u64 = 100_000;

impl RealPrivileged {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets instances with networking reach the host's own addresses (`kiln serve
    /// --instance-host-access`); by default every packet from an instance to the host is
    /// dropped.
    pub fn with_host_access(mut self, allowed: bool) -> Self {
        self.host_access = allowed;
        self
    }

    /// Runs root builds in a user namespace mapping their ids to `base..base+65536`
    /// (`Some`), or as host root (`None`: what `KILN_BUILD_USERNS=off` selects).
    pub fn with_user_namespace(mut self, base: Option<u32>) -> Self {
        self.userns_base = base;
        self
    }

    /// Whether the cgroup mount is a pure cgroup v2 hierarchy.
    fn unified_only(&self) -> bool {
        self.cgroup_root.join("cgroup.controllers").exists()
    }

    fn write(path: &Path, value: &str) -> SysResult<()> {
        std::fs::write(path, value).map_err(|e| SysError::new("write", path, e))
    }

    fn mkdir_p(path: &Path) -> SysResult<()> {
        std::fs::create_dir_all(path).map_err(|e| SysError::new("mkdir", path, e))
    }

    fn create_v2(&self, dir: &Path, limits: &Limits) -> SysResult<()> {
        let parent = self.cgroup_root.join(&self.cgroup_parent);
        // Controllers must be enabled on the way down; the root may refuse some (then the
        // limit files below are missing and writing them fails with that path).
        let _ = Self::write(
            &self.cgroup_root.join("cgroup.subtree_control"),
            "+memory +pids +cpu",
        );
        Self::mkdir_p(&parent)?;
        let _ = Self::write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu");
        Self::mkdir_p(dir)?;
        Self::write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
        let _ = Self::write(&dir.join("memory.swap.max"), "0");
        Self::write(&dir.join("pids.max"), &limits.pids_max.to_string())?;
        let quota = u64::from(limits.vcpus) * CPU_PERIOD_US;
        let _ = Self::write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"));
        // No devices controller in v2: the eBPF device filter is the only allow-list.
        crate::devices::attach(dir)
    }

    fn create_v1(&self, dirs: &[PathBuf], limits: &Limits) -> SysResult<()> {
        for dir in dirs {
            Self::mkdir_p(dir)?;
            let controller = dir
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .and_then(OsStr::to_str)
                .unwrap_or("");
            match controller {
                "memory" => {
                    Self::write(
                        &dir.join("memory.limit_in_bytes"),
                        &limits.memory_bytes.to_string(),
                    )?;
                    // Present only with swap accounting; without it there is nothing to cap.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        Self::write(&memsw, &limits.memory_bytes.to_string())?;
                    }
                }
                "pids" => Self::write(&dir.join("pids.max"), &limits.pids_max.to_string())?,
                "devices" => {
                    // Deny everything, then allow the default devices (read, write, mknod).
                    Self::write(&dir.join("devices.deny"), "a")?;
                    for rule in device_rules() {
                        Self::write(&dir.join("devices.allow"), &rule)?;
                    }
                }
                "cpu" => {
                    let quota = u64::from(limits.vcpus) * CPU_PERIOD_US;
                    Self::write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    Self::write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
                // The cgroup2 directory of a hybrid layout, for cgroup.kill; the eBPF device
                // filter there doubles the v1 device cgroup where the kernel allows it.
                _ => {
                    let _ = crate::devices::attach(dir);
                }
            }
        }
        Ok(())
    }
}

/// `KILN_BUILD_USERNS`: `off` runs root builds as host root; a number is the first host id
/// of the instances' range; unset (or anything else) is [`crate::userns::DEFAULT_BASE`].
fn userns_base_from_env() -> Option<u32> {
    match std::env::var("KILN_BUILD_USERNS")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("off") | Some("0") => None,
        Some(n) => Some(n.parse().unwrap_or(crate::userns::DEFAULT_BASE)),
        None => Some(crate::userns::DEFAULT_BASE),
    }
}

/// Bind-mounts the file `src` onto the existing file `dst`.
pub(crate) fn bind_file(src: &Path, dst: &Path) -> SysResult<()> {
    let source = src
        .to_str()
        .ok_or_else(|| SysError::invalid("bind mount", src, "the path is not valid UTF-8"))?;
    raw_mount("bind mount", source, dst, None, libc::MS_BIND, None)
}

/// The device cgroup's allow rules for [`ALLOWED_DEVICES`] (`c 1:3 rwm`, `c 136:* rwm`).
pub fn device_rules() -> Vec<String> {
    ALLOWED_DEVICES
        .iter()
        .map(|(major, minor)| match minor {
            Some(minor) => format!("c {major}:{minor} rwm"),
            None => format!("c {major}:* rwm"),
        })
        .collect()
}

impl Privileged for RealPrivileged {
    fn preflight(&self) -> Result<(), String> {
        crate::detect::require_root()
    }

    /// On a pure cgroup v2 host the device allow-list is an eBPF program ([`crate::devices`]);
    /// commands also lose CAP_MKNOD there, so they cannot make a device node at all (the root
    /// filesystem is mounted `nodev` anyway, so nodes an image brings do not open).
    fn capabilities(&self) -> Vec<u32> {
        if self.unified_only() {
            DEFAULT_CAPABILITIES
                .iter()
                .copied()
                .filter(|&c| c != CAP_MKNOD)
                .collect()
        } else {
            DEFAULT_CAPABILITIES.to_vec()
        }
    }

    fn network_create(&self, dir: &Path) -> SysResult<Option<PathBuf>> {
        crate::network::create(dir, self.host_access).map(Some)
    }

    fn user_namespace(&self, dir: &Path) -> SysResult<Option<(PathBuf, u32)>> {
        let Some(base) = self.userns_base else {
            return Ok(None);
        };
        let pin = dir.join(crate::userns::PIN);
        crate::userns::create(&pin, base)?;
        Ok(Some((pin, base)))
    }

    fn mount_idmapped(&self, src: &Path, dst: &Path, userns: &Path) -> SysResult<()> {
        crate::userns::mount_idmapped(src, dst, userns)
    }

    fn network_remove(&self, dir: &Path) -> SysResult<()> {
        crate::network::remove(dir)
    }

    fn mount_overlay(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> SysResult<()> {
        if lowers.is_empty() {
            return Err(SysError::invalid(
                "mount overlay",
                target,
                "an overlay needs at least one lower directory",
            ));
        }
        let mut paths = Vec::new();
        for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
            let text = p.to_str().ok_or_else(|| {
                SysError::invalid("mount overlay", p, "the path is not valid UTF-8")
            })?;
            if text.contains([',', ':', '\\']) {
                return Err(SysError::invalid(
                    "mount overlay",
                    p,
                    "overlay layer paths may not contain `,`, `:` or `\\`",
                ));
            }
            paths.push(text);
        }
        let (upper_text, work_text) = (paths[lowers.len()], paths[lowers.len() + 1]);
        // redirect_dir and metacopy off: the upper dir must hold plain files and whiteouts only,
        // so that kiln-image can turn it into an OCI layer (it refuses redirects and metacopy).
        let data = format!(
            "lowerdir={},upperdir={upper_text},workdir={work_text},redirect_dir=off,metacopy=off",
            paths[..lowers.len()].join(":")
        );
        // nodev: a device node an image brings (or a build makes outside /dev) does not open;
        // only the instance's /dev tmpfs holds usable nodes.
        raw_mount(
            "mount overlay",
            "overlay",
            target,
            Some("overlay"),
            libc::MS_NODEV,
            Some(&data),
        )
    }

    fn mount_tmpfs(&self, target: &Path, options: &str) -> SysResult<()> {
        let (flags, data) = tmpfs_options(options);
        raw_mount(
            "mount tmpfs",
            "tmpfs",
            target,
            Some("tmpfs"),
            flags,
            Some(&data),
        )
    }

    fn bind_mount(&self, src: &Path, dst: &Path, readonly: bool) -> SysResult<()> {
        let source = src
            .to_str()
            .ok_or_else(|| SysError::invalid("bind mount", src, "the path is not valid UTF-8"))?;
        raw_mount("bind mount", source, dst, None, libc::MS_BIND, None)?;
        if readonly {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
            if let Err(e) = raw_mount("remount read-only", "none", dst, None, flags, None) {
                let _ = self.unmount(dst);
                return Err(e);
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> SysResult<()> {
        let c = cstring("unmount", target)?;
        // SAFETY: `c` is a NUL-terminated path alive for both calls.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()), // not (or no longer) mounted
            Some(libc::EBUSY) => {
                let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                check("unmount (detach)", target, rc)
            }
            _ => Err(SysError::new("unmount", target, err)),
        }
    }

    fn mknod_char(&self, path: &Path, major: u32, minor: u32, mode: u32) -> SysResult<()> {
        let c = cstring("mknod", path)?;
        let dev = libc::makedev(major, minor);
        // SAFETY: `c` is a NUL-terminated path alive for both calls.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | (mode & 0o7777), dev) };
        check("mknod", path, rc)?;
        // mknod applies the umask; the mode is meant as given.
        let rc = unsafe { libc::chmod(c.as_ptr(), mode & 0o7777) };
        check("chmod", path, rc)
    }

    fn cgroup_paths(&self, name: &str) -> Vec<PathBuf> {
        if self.unified_only() {
            return vec![self.cgroup_root.join(&self.cgroup_parent).join(name)];
        }
        let mut dirs: Vec<PathBuf> = V1_CONTROLLERS
            .iter()
            .map(|c| self.cgroup_root.join(c))
            .filter(|c| c.is_dir())
            .map(|c| c.join(&self.cgroup_parent).join(name))
            .collect();
        let unified = self.cgroup_root.join("unified");
        if unified.join("cgroup.procs").exists() {
            dirs.push(unified.join(&self.cgroup_parent).join(name));
        }
        dirs
    }

    fn cgroup_create(&self, name: &str, limits: &Limits) -> SysResult<Vec<PathBuf>> {
        let dirs = self.cgroup_paths(name);
        if self.unified_only() {
            self.create_v2(&dirs[0], limits)?;
        } else {
            for required in ["memory", "pids", "devices"] {
                let hierarchy = self.cgroup_root.join(required);
                if !hierarchy.is_dir() {
                    return Err(SysError::invalid(
                        "cgroup create",
                        hierarchy,
                        "no cgroup v1 hierarchy for this controller and no cgroup v2 mount",
                    ));
                }
            }
            self.create_v1(&dirs, limits)?;
        }
        Ok(dirs)
    }

    fn cgroup_add(&self, dirs: &[PathBuf], pid: u32) -> SysResult<()> {
        for dir in dirs {
            Self::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn cgroup_kill(&self, dirs: &[PathBuf]) -> SysResult<()> {
        let dirs: Vec<&PathBuf> = dirs.iter().filter(|d| d.is_dir()).collect();
        for dir in &dirs {
            let kill = dir.join("cgroup.kill");
            if kill.exists() {
                let _ = Self::write(&kill, "1");
            }
        }
        // cgroup.kill is asynchronous and v1 has none: SIGKILL what is listed until nothing is.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut alive = 0;
            for dir in &dirs {
                let procs = dir.join("cgroup.procs");
                let text = match std::fs::read_to_string(&procs) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(SysError::new("read", procs, e)),
                };
                for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    alive += 1;
                    // SAFETY: kill(2) takes plain integers.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if alive == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SysError::new(
                    "cgroup kill",
                    dirs.first().map_or_else(PathBuf::new, |d| d.to_path_buf()),
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{alive} processes still alive after 10 s of SIGKILL"),
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn cgroup_remove(&self, dirs: &[PathBuf]) -> SysResult<()> {
        for dir in dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // Killed processes leave the cgroup a moment after they are gone from
                    // cgroup.procs.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(SysError::new("cgroup remove", dir, e)),
                }
            }
        }
        Ok(())
    }

    fn mounts_under(&self, dir: &Path) -> SysResult<Vec<PathBuf>> {
        let info = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(info).map_err(|e| SysError::new("read", info, e))?;
        Ok(parse_mounts_under(&text, dir))
    }

    fn isolate(&self, cmd: &mut Command, plan: &IsolationPlan) {
        match Hook::new(plan) {
            Ok(hook) => {
                // SAFETY: the hook only makes async-signal-safe calls on data prepared here.
                unsafe { cmd.pre_exec(move || hook.run()) };
            }
            Err(_) => {
                // A path with a NUL byte: fail the spawn (EINVAL) rather than run the command
                // unisolated. Instance paths are checked at launch, so this does not happen.
                // SAFETY: the hook makes no call at all.
                unsafe { cmd.pre_exec(|| Err(io::Error::from_raw_os_error(libc::EINVAL))) };
            }
        }
    }
}

/// Mount points at or below `dir` in a mountinfo text, last mounted first.
pub fn parse_mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(field))))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.reverse();
    found
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// What the inner process of an isolated command needs (the namespaces to unshare, the root to
/// enter, the capabilities to keep), prepared from an [`IsolationPlan`] before the fork. The
/// `pre_exec` hooks of [`RealPrivileged`] and [`crate::RootlessPrivileged`] share it.
pub(crate) struct Isolation {
    /// The namespaces to `unshare`: mount, PID, UTS, IPC, and network unless the plan has
    /// networking.
    pub(crate) flags: libc::c_int,
    /// Whether the root is bound onto itself before anything is mounted in it: in a user
    /// namespace the host's mounts are locked, and `pivot_root` refuses a locked new root.
    bind_root: bool,
    hostname: Vec<u8>,
    /// The root, absolute; with `bind_root`, `../<name>` (the paths below are then relative).
    root: CString,
    /// The root as the host sees it.
    pub(crate) host_root: CString,
    proc_dir: CString,
    sys_dir: CString,
    pts_dir: CString,
    dev_null: CString,
    /// [`MASKED_PATHS`] and [`READONLY_PATHS`] inside the root.
    masked: Vec<CString>,
    readonly: Vec<CString>,
    /// The capabilities to drop from the bounding set.
    drop: Vec<libc::c_int>,
    /// The effective and permitted sets to keep (`capset`'s two 32-bit words).
    keep: [u32; 2],
    /// The seccomp filters, applied last ([`crate::seccomp`]).
    filters: Vec<seccompiler::BpfProgram>,
}

/// The seccomp filters, compiled once per process.
fn seccomp_filters() -> Result<Vec<seccompiler::BpfProgram>, String> {
    static FILTERS: std::sync::OnceLock<Result<Vec<seccompiler::BpfProgram>, String>> =
        std::sync::OnceLock::new();
    FILTERS
        .get_or_init(|| crate::seccomp::filters().map_err(|e| e.to_string()))
        .clone()
}

impl Isolation {
    /// Fails (`isolate`, invalid input) when a path contains a NUL byte.
    pub(crate) fn new(plan: &IsolationPlan) -> SysResult<Isolation> {
        let c = |p: &Path| cstring("isolate", p);
        let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS;
        flags |= libc::CLONE_NEWIPC;
        // With a namespace of the instance's own to join, or with none (a rootless instance
        // with networking shares the host's), there is no fresh one to make.
        if !plan.network && plan.netns.is_none() {
            flags |= libc::CLONE_NEWNET;
        }
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(40)
            .min(63);
        let mut keep = [0u32; 2];
        for &cap in &plan.capabilities {
            if cap < 64 {
                keep[(cap / 32) as usize] |= 1 << (cap % 32);
            }
        }
        let drop = (0..=last_cap)
            .filter(|cap| !plan.capabilities.contains(cap))
            .map(|cap| cap as libc::c_int)
            .collect();
        // In a user namespace, root is an unprivileged host uid that may not search the
        // directories above the root (a 0700 data directory): the hook enters the root as host
        // root first, and every path below is relative to it. `root` is then how to get back
        // into it from itself once it has been bound onto itself: `../<name>`.
        let bind_root = plan.userns.is_some();
        let base = if bind_root {
            PathBuf::new()
        } else {
            plan.root.clone()
        };
        let inside = |paths: &[&str]| -> SysResult<Vec<CString>> {
            paths.iter().map(|p| c(&base.join(p))).collect()
        };
        let root = if bind_root {
            let name = plan.root.file_name().ok_or_else(|| {
                SysError::invalid("isolate", &plan.root, "the root has no directory name")
            })?;
            Path::new("..").join(name)
        } else {
            plan.root.clone()
        };
        let filters = seccomp_filters()
            .map_err(|e| SysError::new("isolate", &plan.root, io::Error::other(e)))?;
        Ok(Isolation {
            flags,
            bind_root,
            hostname: plan.hostname.as_bytes().to_vec(),
            root: c(&root)?,
            host_root: c(&plan.root)?,
            proc_dir: c(&base.join("proc"))?,
            sys_dir: c(&base.join("sys"))?,
            pts_dir: c(&base.join("dev/pts"))?,
            dev_null: c(&base.join("dev/null"))?,
            masked: inside(MASKED_PATHS)?,
            readonly: inside(READONLY_PATHS)?,
            drop,
            keep,
            filters,
        })
    }

    /// In the inner process (PID 1 of the new PID namespace, after `unshare(self.flags)` and
    /// `fork`): asks for `SIGKILL` when the parent dies, makes every mount private, sets the
    /// hostname, mounts `/proc` (and, best effort, `/sys` and `/dev/pts`) in the root,
    /// `pivot_root`s into it and detaches the old root.
    ///
    /// # Safety
    ///
    /// Runs in the child after `fork`: async-signal-safe calls only, on data owned by `self`.
    pub(crate) unsafe fn enter_root(&self) -> io::Result<()> {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let slash = c"/".as_ptr();
        os_result(libc::mount(
            std::ptr::null(),
            slash,
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        if self.bind_root {
            // The working directory is the root (entered as host root, before the user
            // namespace); `..` and the root's name lead onto the bind just made.
            os_result(libc::mount(
                c".".as_ptr(),
                c".".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            os_result(libc::chdir(self.root.as_ptr()))?;
        }
        os_result(libc::sethostname(
            self.hostname.as_ptr().cast(),
            self.hostname.len(),
        ))?;
        os_result(libc::mount(
            c"proc".as_ptr(),
            self.proc_dir.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ))?;
        // Best effort: a sysfs showing the instance's own network devices, read-only (it
        // needs a network namespace of the command's own, which a rootless instance with
        // networking does not have).
        libc::mount(
            c"sysfs".as_ptr(),
            self.sys_dir.as_ptr(),
            c"sysfs".as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        );
        // Best effort: a private devpts, so /dev/ptmx (a link to pts/ptmx) works.
        libc::mount(
            c"devpts".as_ptr(),
            self.pts_dir.as_ptr(),
            c"devpts".as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"newinstance,ptmxmode=0666,mode=0620".as_ptr().cast(),
        );
        self.mask_and_protect()?;
        os_result(libc::chdir(self.root.as_ptr()))?;
        let dot = c".".as_ptr();
        os_result(libc::syscall(libc::SYS_pivot_root, dot, dot) as libc::c_int)?;
        os_result(libc::umount2(dot, libc::MNT_DETACH))?;
        os_result(libc::chdir(slash))
    }

    /// runc's masked and read-only paths in the fresh `/proc` and `/sys`: an empty read-only
    /// tmpfs over a masked directory, `/dev/null` over a masked file, a read-only bind of a
    /// read-only path onto itself. Paths this kernel (or a missing `/sys`) lacks are skipped.
    ///
    /// # Safety
    ///
    /// Runs in the child after `fork`: async-signal-safe calls only, on data owned by `self`.
    unsafe fn mask_and_protect(&self) -> io::Result<()> {
        let locked = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        for path in &self.masked {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::lstat(path.as_ptr(), &mut st) != 0 {
                continue;
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                os_result(libc::mount(
                    c"tmpfs".as_ptr(),
                    path.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | locked,
                    c"size=0,mode=555".as_ptr().cast(),
                ))?;
            } else {
                os_result(libc::mount(
                    self.dev_null.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
        }
        for path in &self.readonly {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::lstat(path.as_ptr(), &mut st) != 0 {
                continue;
            }
            os_result(libc::mount(
                path.as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            os_result(libc::mount(
                std::ptr::null(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                std::ptr::null(),
            ))?;
        }
        Ok(())
    }

    /// The last step before `exec`: `PR_SET_NO_NEW_PRIVS` (no setuid binary or file
    /// capability gives anything back) and the seccomp filters.
    ///
    /// # Safety
    ///
    /// Runs in the child after `fork`: async-signal-safe calls only, on data owned by `self`.
    pub(crate) unsafe fn confine(&self) -> io::Result<()> {
        crate::seccomp::apply(&self.filters)
    }

    /// Reduces the capabilities to the kept set: drops the others from the bounding set (so
    /// nothing can regain them), clears the ambient set and sets effective and permitted.
    ///
    /// # Safety
    ///
    /// Runs in the child after `fork`: async-signal-safe calls only, on data owned by `self`.
    pub(crate) unsafe fn drop_capabilities(&self) -> io::Result<()> {
        for &cap in &self.drop {
            os_result(libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0))?;
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let data = [0, 1].map(|i| CapData {
            effective: self.keep[i],
            permitted: self.keep[i],
            inheritable: 0,
        });
        os_result(libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) as libc::c_int)
    }
}

/// `Ok` when a system call answered 0, otherwise `errno`. Async-signal-safe.
pub(crate) fn os_result(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `data` to the file at `path` in one `write`. Async-signal-safe (no allocation).
///
/// # Safety
///
/// Plain system calls on `path` and `data`; callable in the child after `fork`.
pub(crate) unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let written = libc::write(fd, data.as_ptr().cast(), data.len());
    let err = io::Error::last_os_error();
    libc::close(fd);
    if written != data.len() as isize {
        return Err(err);
    }
    Ok(())
}

/// Everything the `pre_exec` hook needs, prepared before the fork.
struct Hook {
    procs: Vec<CString>,
    /// The instance's network namespace, opened before the fork.
    netns: Option<std::os::fd::OwnedFd>,
    /// The instance's user namespace, opened before the fork.
    userns: Option<std::os::fd::OwnedFd>,
    isolation: Isolation,
}

impl Hook {
    fn new(plan: &IsolationPlan) -> SysResult<Hook> {
        let netns = match &plan.netns {
            Some(path) => Some(
                std::fs::File::open(path)
                    .map_err(|e| SysError::new("open the network namespace", path, e))?
                    .into(),
            ),
            None => None,
        };
        let userns = match &plan.userns {
            Some(path) => Some(
                std::fs::File::open(path)
                    .map_err(|e| SysError::new("open the user namespace", path, e))?
                    .into(),
            ),
            None => None,
        };
        Ok(Hook {
            procs: plan
                .cgroup_procs
                .iter()
                .map(|p| cstring("isolate", p))
                .collect::<Result<_, _>>()?,
            netns,
            userns,
            isolation: Isolation::new(plan)?,
        })
    }

    /// Runs in the child after `fork`: async-signal-safe calls only.
    fn run(&self) -> io::Result<()> {
        // SAFETY (whole block): plain system calls on NUL-terminated strings and buffers
        // owned by `self`, which outlives them.
        unsafe {
            for procs in &self.procs {
                write_file(procs, b"0")?;
            }
            if let Some(fd) = &self.netns {
                use std::os::fd::AsRawFd;
                os_result(libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET))?;
            }
            // After the cgroups and the network namespace, which need host root: in the user
            // namespace the command is its root (a host id of the instance's range), and the
            // namespaces it makes next belong to it.
            if let Some(fd) = &self.userns {
                use std::os::fd::AsRawFd;
                os_result(libc::chdir(self.isolation.host_root.as_ptr()))?;
                os_result(libc::setns(fd.as_raw_fd(), libc::CLONE_NEWUSER))?;
                os_result(libc::setgroups(0, std::ptr::null()))?;
                os_result(libc::setresgid(0, 0, 0))?;
                os_result(libc::setresuid(0, 0, 0))?;
            }
            os_result(libc::unshare(self.isolation.flags))?;
            let pid = libc::fork();
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
            if pid > 0 {
                wait_and_exit(pid);
            }
            self.isolation.enter_root()?;
            self.isolation.drop_capabilities()?;
            self.isolation.confine()
        }
    }
}

/// The middle process: closes every descriptor, waits for `pid`, exits with its status
/// (128 + the signal number when it was killed).
///
/// # Safety
///
/// Runs in the child after `fork`: async-signal-safe calls only.
pub(crate) unsafe fn wait_and_exit(pid: libc::pid_t) -> ! {
    if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
        for fd in 0..1024 {
            libc::close(fd);
        }
    }
    let mut status = 0;
    loop {
        let r = libc::waitpid(pid, &mut status, 0);
        if r == pid {
            break;
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            libc::_exit(127);
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        libc::_exit(128 + libc::WTERMSIG(status));
    }
    libc::_exit(127)
}

/// One recorded call of [`RecordingPrivileged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    MountOverlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    MountTmpfs {
        target: PathBuf,
        options: String,
    },
    BindMount {
        src: PathBuf,
        dst: PathBuf,
        readonly: bool,
    },
    Unmount(PathBuf),
    Mknod {
        path: PathBuf,
        major: u32,
        minor: u32,
        mode: u32,
    },
    CgroupCreate {
        name: String,
        limits: Limits,
    },
    CgroupAdd {
        dirs: Vec<PathBuf>,
        pid: u32,
    },
    CgroupKill(Vec<PathBuf>),
    CgroupRemove(Vec<PathBuf>),
    Isolate(IsolationPlan),
    InstanceReady(PathBuf),
    NetworkCreate(PathBuf),
    NetworkRemove(PathBuf),
}

/// A [`Privileged`] that makes no system call: it records the calls, keeps a list of what is
/// "mounted", and can be told to fail one kind of call. For tests without root.
#[derive(Debug, Default)]
pub struct RecordingPrivileged {
    calls: Mutex<Vec<Call>>,
    mounted: Mutex<Vec<PathBuf>>,
    fail: Mutex<Option<&'static str>>,
}

impl RecordingPrivileged {
    pub fn new() -> Self {
        Self::default()
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// What is mounted now, in mount order.
    pub fn mounted(&self) -> Vec<PathBuf> {
        lock(&self.mounted).clone()
    }

    /// Makes every later call of kind `op` ("mount overlay", "mount tmpfs", "bind mount",
    /// "mknod", "cgroup create", "instance ready", "unmount") fail.
    pub fn fail_on(&self, op: &'static str) {
        *lock(&self.fail) = Some(op);
    }

    fn record(&self, op: &'static str, path: &Path, call: Call) -> SysResult<()> {
        lock(&self.calls).push(call);
        if *lock(&self.fail) == Some(op) {
            return Err(SysError::new(
                op,
                path,
                io::Error::other("injected failure"),
            ));
        }
        Ok(())
    }

    fn mount(&self, target: &Path) {
        lock(&self.mounted).push(target.to_path_buf());
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Privileged for RecordingPrivileged {
    fn preflight(&self) -> Result<(), String> {
        Ok(())
    }

    fn mount_overlay(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> SysResult<()> {
        let call = Call::MountOverlay {
            lowers: lowers.to_vec(),
            upper: upper.into(),
            work: work.into(),
            target: target.into(),
        };
        self.record("mount overlay", target, call)?;
        self.mount(target);
        Ok(())
    }

    fn mount_tmpfs(&self, target: &Path, options: &str) -> SysResult<()> {
        let call = Call::MountTmpfs {
            target: target.into(),
            options: options.into(),
        };
        self.record("mount tmpfs", target, call)?;
        self.mount(target);
        Ok(())
    }

    fn bind_mount(&self, src: &Path, dst: &Path, readonly: bool) -> SysResult<()> {
        let call = Call::BindMount {
            src: src.into(),
            dst: dst.into(),
            readonly,
        };
        self.record("bind mount", dst, call)?;
        self.mount(dst);
        Ok(())
    }

    fn unmount(&self, target: &Path) -> SysResult<()> {
        self.record("unmount", target, Call::Unmount(target.into()))?;
        let mut mounted = lock(&self.mounted);
        if let Some(i) = mounted.iter().rposition(|m| m == target) {
            mounted.remove(i);
        }
        Ok(())
    }

    fn mknod_char(&self, path: &Path, major: u32, minor: u32, mode: u32) -> SysResult<()> {
        let call = Call::Mknod {
            path: path.into(),
            major,
            minor,
            mode,
        };
        self.record("mknod", path, call)
    }

    fn cgroup_paths(&self, name: &str) -> Vec<PathBuf> {
        vec![PathBuf::from("/fake-cgroup").join(name)]
    }

    fn cgroup_create(&self, name: &str, limits: &Limits) -> SysResult<Vec<PathBuf>> {
        let call = Call::CgroupCreate {
            name: name.into(),
            limits: *limits,
        };
        self.record("cgroup create", Path::new(name), call)?;
        Ok(self.cgroup_paths(name))
    }

    fn cgroup_add(&self, dirs: &[PathBuf], pid: u32) -> SysResult<()> {
        let call = Call::CgroupAdd {
            dirs: dirs.to_vec(),
            pid,
        };
        self.record("cgroup add", Path::new(""), call)
    }

    fn cgroup_kill(&self, dirs: &[PathBuf]) -> SysResult<()> {
        self.record(
            "cgroup kill",
            Path::new(""),
            Call::CgroupKill(dirs.to_vec()),
        )
    }

    fn cgroup_remove(&self, dirs: &[PathBuf]) -> SysResult<()> {
        self.record(
            "cgroup remove",
            Path::new(""),
            Call::CgroupRemove(dirs.to_vec()),
        )
    }

    fn mounts_under(&self, dir: &Path) -> SysResult<Vec<PathBuf>> {
        let mut found: Vec<PathBuf> = self
            .mounted()
            .into_iter()
            .filter(|m| m.starts_with(dir))
            .collect();
        found.reverse();
        Ok(found)
    }

    fn isolate(&self, _cmd: &mut Command, plan: &IsolationPlan) {
        lock(&self.calls).push(Call::Isolate(plan.clone()));
    }

    fn instance_ready(&self, dir: &Path, _plan: &IsolationPlan) -> SysResult<()> {
        self.record("instance ready", dir, Call::InstanceReady(dir.into()))
    }

    fn network_create(&self, dir: &Path) -> SysResult<Option<PathBuf>> {
        self.record("network create", dir, Call::NetworkCreate(dir.into()))?;
        Ok(Some(dir.join("netns")))
    }

    fn network_remove(&self, dir: &Path) -> SysResult<()> {
        self.record("network remove", dir, Call::NetworkRemove(dir.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_is_parsed_and_filtered() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /var/kiln/i-1/merged rw - overlay overlay rw,lowerdir=/l
41 40 0:36 / /var/kiln/i-1/merged/dev rw,nosuid - tmpfs tmpfs rw
42 22 0:37 / /var/kiln/i-10/merged rw - overlay overlay rw
43 40 0:38 / /var/kiln/i-1/merged/my\\040dir rw - tmpfs tmpfs rw
";
        let got = parse_mounts_under(text, Path::new("/var/kiln/i-1"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/var/kiln/i-1/merged/my dir"),
                PathBuf::from("/var/kiln/i-1/merged/dev"),
                PathBuf::from("/var/kiln/i-1/merged"),
            ]
        );
    }

    #[test]
    fn the_device_cgroup_allows_runcs_default_devices_only() {
        let rules = device_rules();
        assert!(rules.contains(&"c 1:3 rwm".to_string()));
        assert!(rules.contains(&"c 136:* rwm".to_string()));
        assert!(!rules
            .iter()
            .any(|r| r.starts_with("c 10:") || r.starts_with('b')));
        assert!(V1_CONTROLLERS.contains(&"devices"));
    }

    #[test]
    fn without_a_device_controller_commands_lose_cap_mknod() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        let sys = RealPrivileged {
            cgroup_root: v2.path().to_path_buf(),
            ..RealPrivileged::default()
        };
        assert!(!sys.capabilities().contains(&CAP_MKNOD));
        let hybrid = tempfile::tempdir().unwrap();
        let sys = RealPrivileged {
            cgroup_root: hybrid.path().to_path_buf(),
            ..RealPrivileged::default()
        };
        assert_eq!(sys.capabilities(), DEFAULT_CAPABILITIES.to_vec());
    }

    /// The plan of an instance without network, cgroups or user namespace, rooted at `/r`.
    fn plain_plan() -> IsolationPlan {
        IsolationPlan {
            root: "/r".into(),
            hostname: "h".into(),
            network: false,
            cgroup_procs: vec![],
            capabilities: DEFAULT_CAPABILITIES.to_vec(),
            netns: None,
            userns: None,
        }
    }

    #[test]
    fn the_hook_masks_and_protects_runcs_paths() {
        let hook = Hook::new(&plain_plan()).unwrap();
        let names = |v: &[CString]| -> Vec<String> {
            v.iter().map(|c| c.to_string_lossy().into_owned()).collect()
        };
        let masked = names(&hook.isolation.masked);
        assert!(masked.contains(&"/r/proc/kcore".to_string()), "{masked:?}");
        assert!(
            masked.contains(&"/r/sys/firmware".to_string()),
            "{masked:?}"
        );
        let readonly = names(&hook.isolation.readonly);
        assert!(
            readonly.contains(&"/r/proc/sys".to_string()),
            "{readonly:?}"
        );
        assert!(readonly.contains(&"/r/proc/sysrq-trigger".to_string()));
        assert!(!hook.isolation.filters.is_empty());
        assert!(hook.netns.is_none());
    }

    #[test]
    fn hook_drops_everything_but_the_kept_capabilities() {
        let hook = Hook::new(&plain_plan()).unwrap();
        // Docker's 0xa80425fb without CAP_NET_RAW (bit 13).
        assert_eq!(hook.isolation.keep, [0xa804_05fb, 0]);
        assert!(hook.isolation.drop.contains(&21)); // CAP_SYS_ADMIN
        assert!(!hook.isolation.drop.contains(&0));
        assert_ne!(hook.isolation.flags & libc::CLONE_NEWNET, 0);
    }
}
