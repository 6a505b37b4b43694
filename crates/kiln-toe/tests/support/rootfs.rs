//! A throwaway root filesystem for integration tests: an overlay of the host's `/` whose writes
//! land in a temporary upper directory, with `/dev` bound and `/proc` mounted so commands work
//! under `chroot`. Everything is unmounted and deleted when the [`ThrowawayRoot`] is dropped,
//! even when the test panics. Needs root (CI runs as root); without it the constructor panics
//! with a clear message instead of letting the test pass silently.
//!
//! [`isolate_network`] moves the calling thread (and every process and thread it starts later)
//! into a fresh network namespace with only the loopback interface, so nothing a document does
//! can reach beyond 127.0.0.1 even if a classification in a test table is wrong.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ThrowawayRoot {
    dir: Option<tempfile::TempDir>,
    merged: PathBuf,
    upper: PathBuf,
    /// Mount points, in the order they were mounted.
    mounts: Vec<PathBuf>,
}

/// Panics unless the test runs as root.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} needs root: it mounts an overlay of / as a throwaway root and chroots into it \
         (run the test as root, as CI does); refusing to pass without running"
    );
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl ThrowawayRoot {
    pub fn new() -> ThrowawayRoot {
        require_root("the throwaway root");
        let dir = tempfile::Builder::new()
            .prefix("kiln-rootfs-")
            .tempdir()
            .expect("tempdir");
        let upper = dir.path().join("upper");
        let work = dir.path().join("work");
        let merged = dir.path().join("merged");
        for d in [&upper, &work, &merged] {
            std::fs::create_dir(d).expect("create overlay directory");
        }
        let mut root = ThrowawayRoot {
            dir: Some(dir),
            merged: merged.clone(),
            upper: upper.clone(),
            mounts: Vec::new(),
        };
        let options = format!(
            "lowerdir=/,upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        root.mount(
            &["-t", "overlay", "overlay", "-o", &options],
            merged.clone(),
        );
        root.mount(&["--bind", "/dev"], merged.join("dev"));
        root.mount(&["-t", "proc", "proc"], merged.join("proc"));
        root
    }

    fn mount(&mut self, args: &[&str], at: PathBuf) {
        let at_str = at.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.push(&at_str);
        if let Err(e) = run("mount", &all) {
            // The guard unmounts whatever was mounted so far.
            panic!("cannot build the throwaway root: {e}");
        }
        self.mounts.push(at);
    }

    /// The root directory (the overlay's merged view): hand it to `LocalTarget::chroot`.
    pub fn path(&self) -> &Path {
        &self.merged
    }

    /// The overlay's upper directory: every file the root wrote or changed.
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// A scratch directory outside the root (for logs and state).
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.as_ref().expect("dir").path().join("scratch");
        std::fs::create_dir_all(&p).expect("scratch");
        p
    }

    /// The host path of `path` inside the root (no symlink resolution: test paths only).
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.merged.join(path.trim_start_matches('/'))
    }

    /// Runs `script` with bash inside the root; panics with its output when it fails.
    pub fn sh(&self, script: &str) {
        let out = Command::new("chroot")
            .arg(&self.merged)
            .args(["/bin/bash", "-c", script])
            .output()
            .expect("start chroot");
        assert!(
            out.status.success(),
            "in the throwaway root, `{script}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether `name` is an executable in one of the root's usual bin directories.
    pub fn has_binary(&self, name: &str) -> bool {
        Command::new("chroot")
            .arg(&self.merged)
            .args(["/bin/sh", "-c", &format!("command -v {name} >/dev/null")])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for ThrowawayRoot {
    fn drop(&mut self) {
        let mut leftovers = Vec::new();
        for at in self.mounts.drain(..).rev() {
            let at_str = at.display().to_string();
            if run("umount", &[&at_str]).is_err() {
                if let Err(e) = run("umount", &["-l", &at_str]) {
                    leftovers.push(e);
                }
            }
        }
        if !leftovers.is_empty() {
            // Deleting the directory now would walk into a still-mounted tree (the host's
            // /dev or /): keep it and say so.
            let dir = self.dir.take().expect("dir").keep();
            eprintln!(
                "throwaway root: could not unmount ({}); left {} in place",
                leftovers.join("; "),
                dir.display()
            );
        }
        // Otherwise TempDir's own Drop deletes the directory.
    }
}

/// Moves the calling thread into a new network namespace whose only interface is `lo`, up.
/// Processes and threads started from this thread afterwards inherit it.
pub fn isolate_network() {
    require_root("network isolation");
    // SAFETY: unshare(2) with CLONE_NEWNET only changes the calling thread's namespace.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a plain socket used only for the interface ioctls below, closed at the end; the
    // ifreq is zeroed and its name is a NUL-terminated "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        assert_eq!(
            rc,
            0,
            "SIOCGIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        let rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        assert_eq!(
            rc,
            0,
            "SIOCSIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}
