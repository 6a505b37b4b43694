//! [`RecordingPrivileged`]: a [`Privileged`] that makes no system call, for tests of the
//! instance lifecycle without root.

use super::{lock, IsolationPlan, Privileged, SysError, SysResult};
use crate::limits::Limits;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

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
