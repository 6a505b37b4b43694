//! The holder: the process that keeps a rootless instance's namespaces and mounts.
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
//! [`Privileged::host_root`]: crate::sys::Privileged::host_root
//! [`Privileged::instance_ready`]: crate::sys::Privileged::instance_ready
//! [`STATE_FILE`]: super::STATE_FILE

use super::privileged::host_ids;
use super::state::{MountOp, RootlessState};
use super::steps::{steps_for, Step};
use super::HOLDER_FILE;
use crate::sys::{write_file, IsolationPlan, SysError, SysResult};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The process that holds a rootless instance's namespaces, as `rootless.holder` records it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Holder {
    pub(super) pid: u32,
    /// `/proc/<pid>/stat` field 22, so a reused pid is not mistaken for it.
    pub(super) start: u64,
}

impl Holder {
    pub(super) fn read(dir: &Path) -> SysResult<Option<Holder>> {
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

    pub(super) fn alive(&self) -> bool {
        process_start(self.pid) == Some(self.start)
    }

    /// SIGKILLs the holder (if it is still the recorded process) and waits until it is gone.
    pub(super) fn kill_and_wait(&self) -> bool {
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

/// Start time of process `pid` in clock ticks after boot, if it exists and is not a zombie.
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), None | Some("Z") | Some("X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The instance's holder, if it runs; otherwise why commands cannot run.
pub(super) fn running_holder(dir: &Path) -> SysResult<Holder> {
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

/// What the holder process does before it waits, prepared before the fork.
pub(super) struct HolderSetup {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    steps: Vec<Step>,
}

/// The status message a holder sends its launcher: tag (0 ok, 1 failed), then the holder's
/// pid (ok) or the errno and the index of the failed step, little-endian.
const STATUS_LEN: usize = 9;

impl HolderSetup {
    pub(super) fn new(plan: &IsolationPlan, state: &RootlessState) -> SysResult<HolderSetup> {
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
    pub(super) fn start(&self, dir: &Path) -> SysResult<u32> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            process: None,
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
