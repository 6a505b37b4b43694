//! How a command starts isolated.
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
//!    and (best effort) a read-only `/sys` and a private `/dev/pts` inside the root, masks
//!    runc's [`MASKED_PATHS`] and makes its [`READONLY_PATHS`] read-only, `pivot_root`s into
//!    the root and detaches the old root (unlike `chroot`, nothing of the host stays
//!    reachable), then reduces the capabilities to the set a container runtime grants by
//!    default ([`DEFAULT_CAPABILITIES`], what runc gives): the bounding set, so nothing can
//!    regain others, the ambient set cleared, and effective/permitted set to that set;
//! 5. sets NoNewPrivs and applies the seccomp filters ([`crate::seccomp`]), the last thing
//!    before `exec`, so none of the set-up above is filtered;
//! 6. returns, and the standard library `exec`s the program, looking it up in `PATH` inside the
//!    new root.
//!
//! [`RealPrivileged::isolate`]: super::RealPrivileged
//! [`DEFAULT_CAPABILITIES`]: super::DEFAULT_CAPABILITIES

use super::calls::{cstring, os_result, write_file};
use super::policy::{MASKED_PATHS, READONLY_PATHS};
use super::{IsolationPlan, SysError, SysResult};
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

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
/// `pre_exec` hooks of [`crate::RealPrivileged`] and [`crate::RootlessPrivileged`] share it.
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
    /// The command's working directory inside the root ([`IsolationPlan::process`]).
    working_dir: Option<CString>,
    /// The command's uid, gid and supplementary groups ([`IsolationPlan::process`]).
    user: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
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
            working_dir: match plan.process.as_ref().and_then(|p| p.working_dir.as_ref()) {
                Some(dir) => Some(c(Path::new(dir))?),
                None => None,
            },
            user: plan.process.as_ref().and_then(|p| p.user.clone()),
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

    /// After [`Isolation::drop_capabilities`]: enters the command's working directory and
    /// becomes its user. Leaving uid 0 clears the effective and permitted capabilities, as a
    /// container runtime's non-root process has none.
    ///
    /// # Safety
    ///
    /// Runs in the child after `fork`: async-signal-safe calls only, on data owned by `self`.
    pub(crate) unsafe fn become_process(&self) -> io::Result<()> {
        if let Some(dir) = &self.working_dir {
            os_result(libc::chdir(dir.as_ptr()))?;
        }
        if let Some((uid, gid, groups)) = &self.user {
            os_result(libc::setgroups(groups.len(), groups.as_ptr()))?;
            os_result(libc::setresgid(*gid, *gid, *gid))?;
            os_result(libc::setresuid(*uid, *uid, *uid))?;
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

/// Everything the `pre_exec` hook needs, prepared before the fork.
pub(super) struct Hook {
    procs: Vec<CString>,
    /// The instance's network namespace, opened before the fork.
    netns: Option<std::os::fd::OwnedFd>,
    /// The instance's user namespace, opened before the fork.
    userns: Option<std::os::fd::OwnedFd>,
    isolation: Isolation,
}

impl Hook {
    pub(super) fn new(plan: &IsolationPlan) -> SysResult<Hook> {
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
    pub(super) fn run(&self) -> io::Result<()> {
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
            self.isolation.become_process()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::DEFAULT_CAPABILITIES;

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
            process: None,
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
