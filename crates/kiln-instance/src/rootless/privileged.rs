//! [`RootlessPrivileged`]: the [`Privileged`] calls of a rootless instance. Mount calls are
//! recorded (`state`), `instance_ready` starts the holder (`holder`), `isolate` installs the
//! command hook (`command`), and `mounts_under` ends the instance's processes (`teardown`).

use super::command::CommandHook;
use super::holder::{process_start, running_holder, Holder, HolderSetup};
use super::state::{read_state, write_state, MountOp, RootlessState};
use super::steps::{host_device, overlay_data};
use super::teardown::{end_processes, make_removable};
use super::{HOLDER_FILE, ROOT_DIR};
use crate::limits::Limits;
use crate::sys::{lock, IsolationPlan, Privileged, SysError, SysResult};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

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
pub(super) fn host_ids() -> (u32, u32) {
    // SAFETY: geteuid(2) and getegid(2) cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}
