//! How a command of a rootless instance starts.
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
//! [`Privileged::instance_attached`]: crate::sys::Privileged::instance_attached
//! [`RootlessPrivileged::isolate`]: crate::RootlessPrivileged

use super::holder::Holder;
use super::state::RootlessState;
use super::steps::c_path;
use super::PIDS_FILE;
use crate::sys::{os_result, wait_and_exit, Isolation, IsolationPlan, SysError, SysResult};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Everything a command's `pre_exec` hook needs, prepared before the fork.
pub(super) struct CommandHook {
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
    pub(super) fn new(
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
    pub(super) fn run(&self) -> io::Result<()> {
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
            self.isolation.become_process()?;
            self.isolation.confine()
        }
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
}
