//! Running `qemu-img` and `debugfs` on a disk a caller gave, with as little power as they
//! need: both parse untrusted bytes (qcow2 and VMDK headers, ext4 metadata), the kind of input
//! that memory-safety bugs in C parsers are found with.
//!
//! - As root, the tools run as `nobody` (uid and gid 65534, no supplementary groups,
//!   no-new-privs): they can write only where `nobody` may, which is the import's own `out/`
//!   directory (made theirs), and they die with Kiln (parent-death signal).
//! - The disk is given as an open descriptor, fd 3 (`/dev/fd/3`), so no path of the host is
//!   named on their command line, and their working directory is `out/`, entered by descriptor
//!   (the directories above it stay closed to `nobody`).
//! - `qemu-img info` also runs under resource limits (30 s of CPU, 1 GiB of address space), as
//!   QEMU's own advice for probing untrusted images says.
//! - A cancel check runs every 50 ms; a cancelled tool is killed.

use crate::{Error, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The user the tools run as when Kiln is root.
pub(crate) const NOBODY: u32 = 65534;
/// The descriptor the disk is given as.
pub(crate) const DISK_FD: i32 = 3;
/// `/dev/fd/3`: how the tools name the disk.
pub(crate) const DISK_PATH: &str = "/dev/fd/3";
/// The most output a tool may print (a listing of a very large tree stays well below).
const MAX_OUTPUT: u64 = 1 << 30;
/// The end of a tool's standard error that is kept.
const MAX_STDERR: usize = 256 * 1024;

/// Resource limits of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub cpu_seconds: u64,
    pub address_space: u64,
}

/// The limits of `qemu-img info`, as OpenStack and QEMU's security notes use them.
pub(crate) const PROBE_LIMITS: Limits = Limits {
    cpu_seconds: 30,
    address_space: 1 << 30,
};

/// Whether Kiln runs as root (and so drops to `nobody` for the tools).
pub(crate) fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One program run.
pub(crate) struct Tool<'a> {
    pub name: &'static str,
    pub package: &'static str,
    pub args: Vec<OsString>,
    /// Becomes fd 3 in the tool.
    pub disk: Option<BorrowedFd<'a>>,
    /// The working directory, entered by descriptor.
    pub cwd: Option<BorrowedFd<'a>>,
    pub stdin: Vec<u8>,
    pub limits: Option<Limits>,
}

/// What a tool printed; it exited 0.
#[derive(Debug)]
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Tool<'_> {
    /// The program: on `PATH`, else in the sbin directories (which many users' `PATH` lacks).
    fn program(&self) -> PathBuf {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        {
            let candidate = dir.join(self.name);
            if candidate.is_file() {
                return candidate;
            }
        }
        PathBuf::from(self.name)
    }

    /// Runs the tool to its end; a non-zero exit is an error with its standard error.
    pub(crate) fn run(&self, cancel: &dyn Fn() -> bool) -> Result<Output> {
        let shown = std::iter::once(self.name.to_string())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new(self.program());
        cmd.args(&self.args)
            .env("DEBUGFS_PAGER", "__none__")
            .env("PAGER", "__none__")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let disk = self.disk.map(|fd| fd.as_raw_fd());
        let cwd = self.cwd.map(|fd| fd.as_raw_fd());
        let limits = self.limits;
        let drop_privileges = privileged();
        // SAFETY: the hook only makes system calls (no allocation, no locks), as `pre_exec`
        // requires after a fork; the descriptors it uses stay open in the parent meanwhile.
        unsafe {
            cmd.pre_exec(move || isolate(disk, cwd, limits, drop_privileges));
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Invalid(format!(
                    "`{}` not found: install the Debian package {}",
                    self.name, self.package
                ))
            } else {
                Error::Invalid(format!("running `{shown}`: {e}"))
            }
        })?;
        let (mut stdin, mut stdout, mut stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => return Err(Error::Invalid(format!("running `{shown}`: no pipes"))),
            };
        let outcome = std::thread::scope(|scope| {
            let input = &self.stdin;
            scope.spawn(move || {
                let _ = stdin.write_all(input);
            });
            let out = scope.spawn(move || {
                let mut buf = Vec::new();
                let read = (&mut stdout).take(MAX_OUTPUT + 1).read_to_end(&mut buf);
                read.map(|_| buf)
            });
            // Read to the end (a tool writing to a closed pipe would die of SIGPIPE), keeping
            // the last part: the cause of a failure is at the end.
            let err = scope.spawn(move || {
                let mut kept = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * MAX_STDERR {
                        kept.drain(..kept.len() - MAX_STDERR);
                    }
                }
                if kept.len() > MAX_STDERR {
                    kept.drain(..kept.len() - MAX_STDERR);
                }
                String::from_utf8_lossy(&kept).into_owned()
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) if cancel() => {
                        // SAFETY: a signal to the group the child leads (its pid is not reused
                        // before the wait below reaps it).
                        unsafe {
                            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                        }
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(Error::Cancelled);
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Err(e) => break Err(Error::Invalid(format!("waiting for `{shown}`: {e}"))),
                }
            };
            let stdout = out.join().unwrap_or_else(|_| Ok(Vec::new()));
            let stderr = err.join().unwrap_or_default();
            (status, stdout, stderr)
        });
        let (status, stdout, stderr) = outcome;
        let status = status?;
        let stdout = stdout.map_err(|e| Error::Invalid(format!("reading `{shown}`: {e}")))?;
        if stdout.len() as u64 > MAX_OUTPUT {
            return Err(Error::Invalid(format!(
                "`{shown}` printed more than {MAX_OUTPUT} bytes"
            )));
        }
        if !status.success() {
            return Err(Error::Invalid(format!(
                "`{shown}` failed ({status}): {}",
                stderr.trim()
            )));
        }
        Ok(Output { stdout, stderr })
    }
}

/// The child's side, between fork and exec: only system calls.
fn isolate(
    disk: Option<i32>,
    cwd: Option<i32>,
    limits: Option<Limits>,
    drop_privileges: bool,
) -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: plain system calls on descriptors and ids this process owns.
    unsafe {
        // A group of its own, so that a cancel kills whatever the tool started too (a child
        // left alive would hold the output pipes open, and the reads with them).
        check(libc::setpgid(0, 0))?;
        if let Some(dir) = cwd {
            check(libc::fchdir(dir))?;
        }
        if let Some(fd) = disk {
            if fd == DISK_FD {
                // dup2 onto itself would keep close-on-exec.
                check(libc::fcntl(fd, libc::F_SETFD, 0))?;
            } else {
                check(libc::dup2(fd, DISK_FD))?;
            }
        }
        if let Some(l) = limits {
            let cpu = libc::rlimit {
                rlim_cur: l.cpu_seconds,
                rlim_max: l.cpu_seconds,
            };
            check(libc::setrlimit(libc::RLIMIT_CPU, &cpu))?;
            let memory = libc::rlimit {
                rlim_cur: l.address_space,
                rlim_max: l.address_space,
            };
            check(libc::setrlimit(libc::RLIMIT_AS, &memory))?;
        }
        if drop_privileges {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(NOBODY))?;
            check(libc::setuid(NOBODY))?;
        }
        // Whole registers: the kernel reads unsigned longs from a variadic call.
        let (one, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
        check(libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            one,
            zero,
            zero,
            zero,
        ))?;
        // After the uid change, which clears it.
        let kill = libc::SIGKILL as libc::c_ulong;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, kill, zero, zero, zero))?;
    }
    Ok(())
}

/// Makes `dir` the tools' to write in (when they run as `nobody`).
pub(crate) fn give_to_tools(dir: &Path) -> Result<()> {
    if privileged() {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))
            .map_err(crate::io_err("handing over", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_get_the_disk_as_fd_3_and_can_be_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk");
        std::fs::write(&file, b"hello disk").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let opened = std::fs::File::open(&file).unwrap();
        let tool = |args: &[&str]| Tool {
            name: "sh",
            package: "dash",
            args: args.iter().map(OsString::from).collect(),
            disk: Some(std::os::fd::AsFd::as_fd(&opened)),
            cwd: None,
            stdin: b"from stdin".to_vec(),
            limits: None,
        };
        let out = tool(&["-c", "cat /dev/fd/3; cat; id -u"])
            .run(&|| false)
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let expected_uid = if privileged() {
            NOBODY
        } else {
            unsafe { libc::geteuid() }
        };
        assert_eq!(text, format!("hello diskfrom stdin{expected_uid}\n"));
        let err = tool(&["-c", "echo bad >&2; exit 4"])
            .run(&|| false)
            .unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        let start = std::time::Instant::now();
        // The shell forks the sleep (it has more to do after it): the cancel kills both.
        let err = tool(&["-c", "sleep 30; true"]).run(&|| true).unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
