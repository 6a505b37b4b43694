//! Where a document runs: the execution target.
//!
//! The engine never touches a path or starts a process directly. It asks its [`Target`] to map a
//! document path to a host path ([`Target::resolve`]) and to build the command for a program
//! ([`Target::command`]). The local host is a target whose root is `/`; a build instance
//! (`kiln_instance`) is a target whose root is its root filesystem and whose commands run
//! isolated inside it.
//!
//! Paths are resolved the way the kernel resolves them under `chroot` (`RESOLVE_IN_ROOT`): one
//! component at a time, `..` at the root stays at the root, and a symlink's target, absolute or
//! relative, is read again inside the root. So no path in a document reaches outside the root,
//! whatever links the document or its commands have planted.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// How many symlinks one resolution may follow, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("path `{path}`: {message}")]
    Path { path: String, message: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What happened when the target was asked to reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// The target came back (or pretends to have): the engine goes on in the same process and
    /// re-runs the step that asked for the reboot.
    Resumed,
    /// The target really goes down: the engine saves its state and stops; a later run with the
    /// same state directory resumes at the step.
    Exit,
}

/// An execution target: a root directory that document paths live in, and a way to run
/// programs inside it.
pub trait Target: Send + Sync {
    /// The target's root directory on the host.
    fn root(&self) -> &Path;

    /// The directory relative document paths start from (a path inside the target).
    fn working_dir(&self) -> String {
        "/".to_string()
    }

    /// A command that runs `program` with `args` inside the target, with its working directory
    /// set to [`Target::working_dir`]. The engine adds pipes, environment and a process group.
    fn command(&self, program: &str, args: &[String]) -> Command;

    /// Whether `name` is an executable on the target's `PATH` (`binaryExists`).
    fn binary_exists(&self, name: &str) -> bool {
        if name.contains('/') {
            return self.resolve(name).is_ok_and(|p| is_executable(&p));
        }
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .any(|dir| {
            self.resolve(&format!("{dir}/{name}"))
                .is_ok_and(|p| is_executable(&p))
        })
    }

    /// Asks the target to reboot (action Reboot, exit code 194).
    fn reboot(&self) -> Reboot {
        Reboot::Resumed
    }

    /// Maps a document path to a host path inside the root, following every symlink inside the
    /// root.
    fn resolve(&self, path: &str) -> Result<PathBuf, TargetError> {
        resolve_in_root(self.root(), &self.working_dir(), path, true)
    }

    /// Like [`Target::resolve`], but a symlink in the last component is not followed: the
    /// answer names the link itself (to delete, move or replace it).
    fn resolve_link(&self, path: &str) -> Result<PathBuf, TargetError> {
        resolve_in_root(self.root(), &self.working_dir(), path, false)
    }

    /// The document path for a host path inside the root (for messages and outputs).
    fn document_path(&self, host: &Path) -> String {
        match host.strip_prefix(self.root()) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => host.display().to_string(),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `path` (absolute, or relative to `cwd`) inside `root` with chroot semantics.
/// Components that do not exist yet are kept as written, so the answer also names files that an
/// action is about to create.
///
/// `root` is canonicalized first; see [`resolve_in_canonical_root`] for a root that must be
/// taken as it is.
pub fn resolve_in_root(
    root: &Path,
    cwd: &str,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, TargetError> {
    let path = checked(path)?;
    let root = std::fs::canonicalize(root)?;
    walk_in_root(&root, cwd, path, follow_last)
}

/// [`resolve_in_root`] without canonicalizing `root`: the caller answers for `root` being
/// canonical already (absolute, no `.` or `..` components), and the answer starts with `root`
/// exactly as given. Symlinks below `root` are still followed inside it.
///
/// For a root that canonicalizing would turn into another directory: a rootless instance's
/// `/proc/<pid>/root/<dir>/merged` shows the mounts of that process's mount namespace, which
/// `canonicalize` would replace with the host's (unmounted) `<dir>/merged`.
pub fn resolve_in_canonical_root(
    root: &Path,
    cwd: &str,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, TargetError> {
    walk_in_root(root, cwd, checked(path)?, follow_last)
}

/// `path`, unless it is empty or contains a NUL byte.
fn checked(path: &str) -> Result<&str, TargetError> {
    if path.is_empty() {
        return Err(TargetError::Path {
            path: path.into(),
            message: "the path is empty".into(),
        });
    }
    if path.contains('\0') {
        return Err(TargetError::Path {
            path: path.escape_default().to_string(),
            message: "the path contains a NUL byte".into(),
        });
    }
    Ok(path)
}

/// The walk of [`resolve_in_root`] for a checked `path`, one component at a time from `root`
/// (canonical).
fn walk_in_root(
    root: &Path,
    cwd: &str,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, TargetError> {
    let mut pending: Vec<OsString> = Vec::new();
    push_reversed(&mut pending, Path::new(path));
    if !path.starts_with('/') {
        push_reversed(&mut pending, Path::new(cwd));
    }
    let mut current = root.to_path_buf();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if current != root {
                current.pop();
            }
            continue;
        }
        let next = current.join(&part);
        let is_last = pending.is_empty();
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() && (follow_last || !is_last) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(TargetError::Path {
                        path: path.into(),
                        message: "too many levels of symbolic links".into(),
                    });
                }
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    current = root.to_path_buf();
                }
                push_reversed(&mut pending, &target);
            }
            _ => current = next,
        }
    }
    debug_assert!(current.starts_with(root));
    Ok(current)
}

fn push_reversed(pending: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => pending.push(n.to_os_string()),
            Component::ParentDir => pending.push("..".into()),
            _ => {}
        }
    }
}

/// A directory on this machine as the target.
///
/// With root `/` this is the local host (`kiln toe run`): commands run directly. With any other
/// root, commands run under `chroot`, which needs root privileges and a shell inside the root;
/// file actions are confined by [`resolve_in_root`] either way.
#[derive(Debug, Clone)]
pub struct LocalTarget {
    root: PathBuf,
    working_dir: String,
    reboot: Reboot,
}

impl LocalTarget {
    /// The local host: root `/`, relative paths from the current directory.
    pub fn host() -> Self {
        let cwd = std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/".into());
        LocalTarget {
            root: PathBuf::from("/"),
            working_dir: cwd,
            reboot: Reboot::Resumed,
        }
    }

    /// A directory used as a root filesystem; commands run chrooted into it.
    pub fn chroot(root: impl Into<PathBuf>) -> Self {
        LocalTarget {
            root: root.into(),
            working_dir: "/".into(),
            reboot: Reboot::Resumed,
        }
    }

    /// What [`Target::reboot`] answers: `Resumed` (the default; nothing really reboots) or
    /// `Exit` (save state and stop, as awstoe does before it reboots a machine).
    pub fn with_reboot(mut self, reboot: Reboot) -> Self {
        self.reboot = reboot;
        self
    }

    fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }
}

impl Target for LocalTarget {
    fn root(&self) -> &Path {
        &self.root
    }

    fn working_dir(&self) -> String {
        self.working_dir.clone()
    }

    fn command(&self, program: &str, args: &[String]) -> Command {
        if self.is_host() {
            let mut cmd = Command::new(program);
            cmd.args(args).current_dir(&self.working_dir);
            cmd
        } else {
            let mut cmd = Command::new("chroot");
            cmd.arg(&self.root)
                .arg(program)
                .args(args)
                .current_dir(&self.root);
            cmd
        }
    }

    fn reboot(&self) -> Reboot {
        self.reboot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let base = tempdir("resolve");
        let root = base.join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"abc").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("d/up")).unwrap();
        std::os::unix::fs::symlink("d/f", root.join("ok-link")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        let canon = std::fs::canonicalize(&root).unwrap();
        let cases: &[(&str, &str)] = &[
            ("/d/f", "d/f"),
            ("d/f", "d/f"),
            ("/ok-link", "d/f"),
            ("/d/../d/f", "d/f"),
            ("../etc/passwd", "etc/passwd"),
            ("/../../etc/passwd", "etc/passwd"),
            ("/etc-link/passwd", "etc/passwd"),
            ("/d/up/etc/shadow", "etc/shadow"),
            ("/new/dir/file", "new/dir/file"),
        ];
        for (path, want) in cases {
            let got = resolve_in_root(&root, "/", path, true).unwrap();
            assert_eq!(got, canon.join(want), "{path}");
        }
        assert_eq!(
            resolve_in_root(&root, "/", "/ok-link", false).unwrap(),
            canon.join("ok-link")
        );
        assert_eq!(
            resolve_in_root(&root, "/d", "f", true).unwrap(),
            canon.join("d/f")
        );
        assert!(resolve_in_root(&root, "/", "/loop1", true).is_err());
        assert!(resolve_in_root(&root, "/", "", true).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn binary_exists_looks_inside_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempdir("binary");
        std::fs::create_dir_all(base.join("usr/bin")).unwrap();
        let tool = base.join("usr/bin/tool");
        std::fs::write(&tool, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(base.join("usr/bin/plain"), b"").unwrap();
        let target = LocalTarget::chroot(&base);
        assert!(target.binary_exists("tool"));
        assert!(!target.binary_exists("plain"));
        assert!(!target.binary_exists("bash"));
        assert!(LocalTarget::host().binary_exists("sh"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kiln-toe-target-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
