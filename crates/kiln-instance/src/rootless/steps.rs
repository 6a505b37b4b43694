//! The steps that make a rootless instance's mounts inside a namespace, prepared from the
//! recorded [`MountOp`]s before a fork and replayed by the holder and by each command (mounts,
//! directories and files to mount over, symlinks the launcher made).
//!
//! [`MountOp`]: super::MountOp

use super::state::MountOp;
use crate::sys::{cstring, tmpfs_options, SysError, SysResult};
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// One step of the inner process before `pivot_root`.
pub(super) enum Step {
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Makes the path a directory (replacing a file or symlink there).
    Dir(CString),
    /// Makes an empty file at the path if nothing is there (a bind mount target).
    File(CString),
    Symlink {
        to: CString,
        at: CString,
    },
}

impl Step {
    /// What the step does, for an error message.
    pub(super) fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Step::Mount {
                source,
                target,
                fstype,
                ..
            } => format!(
                "mounting {} ({}) at {}",
                s(source),
                fstype.as_ref().map_or_else(|| "bind".into(), s),
                s(target)
            ),
            Step::Dir(p) => format!("making the directory {}", s(p)),
            Step::File(p) => format!("making the file {}", s(p)),
            Step::Symlink { at, .. } => format!("making the symlink {}", s(at)),
        }
    }

    /// Runs in the inner process: async-signal-safe calls only.
    pub(super) unsafe fn run(&self) -> io::Result<()> {
        let fail = || Err(io::Error::last_os_error());
        match self {
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let rc = libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                    *flags,
                    data.as_ref()
                        .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
                );
                if rc != 0 {
                    return fail();
                }
            }
            Step::Dir(path) => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::lstat(path.as_ptr(), &mut st) == 0 {
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        return Ok(());
                    }
                    // A file or symlink the image put there: a mount would follow it.
                    if libc::unlink(path.as_ptr()) != 0 {
                        return fail();
                    }
                }
                if libc::mkdir(path.as_ptr(), 0o755) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return fail();
                }
            }
            Step::File(path) => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0o644,
                );
                if fd < 0 {
                    return fail();
                }
                libc::close(fd);
            }
            Step::Symlink { to, at } => {
                if libc::symlink(to.as_ptr(), at.as_ptr()) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return fail();
                }
            }
        }
        Ok(())
    }
}

pub(super) fn c_path(p: &Path) -> SysResult<CString> {
    cstring("isolate", p)
}

fn c_text(text: &str, about: &Path) -> SysResult<CString> {
    CString::new(text)
        .map_err(|_| SysError::invalid("isolate", about, "an argument contains a NUL byte"))
}

/// What the launcher put below `host_dir` on the host (directories, symlinks), to be made again
/// in the mount that covers it in the command's namespace. `deep`: below subdirectories too.
fn replay(host_dir: &Path, deep: bool, steps: &mut Vec<Step>) -> SysResult<()> {
    let entries = match std::fs::read_dir(host_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SysError::new("read", host_dir, e)),
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            steps.push(Step::Dir(c_path(&path)?));
            if deep {
                replay(&path, deep, steps)?;
            }
        } else if ft.is_symlink() {
            let to = std::fs::read_link(&path).map_err(|e| SysError::new("read link", &path, e))?;
            steps.push(Step::Symlink {
                to: c_path(&to)?,
                at: c_path(&path)?,
            });
        }
    }
    Ok(())
}

pub(super) fn steps_for(mounts: &[MountOp]) -> SysResult<Vec<Step>> {
    let mut steps = Vec::new();
    for mount in mounts {
        match mount {
            MountOp::Overlay {
                lowers,
                upper,
                work,
                target,
            } => {
                let data = overlay_data(lowers, upper, work, target)?;
                steps.push(Step::Mount {
                    source: c"overlay".into(),
                    target: c_path(target)?,
                    fstype: Some(c"overlay".into()),
                    flags: 0,
                    data: Some(c_text(&data, target)?),
                });
                // The directories the launcher made in the root (`proc`, `sys`, `tmp`, ...).
                replay(target, false, &mut steps)?;
            }
            MountOp::Tmpfs { target, options } => {
                let (flags, data) = tmpfs_options(options);
                steps.push(Step::Dir(c_path(target)?));
                steps.push(Step::Mount {
                    source: c"tmpfs".into(),
                    target: c_path(target)?,
                    fstype: Some(c"tmpfs".into()),
                    flags,
                    data: Some(c_text(&data, target)?),
                });
                // `/dev`'s links (`fd`, `stdin`, ...) and directories (`pts`, `shm`).
                replay(target, true, &mut steps)?;
            }
            MountOp::Device { src, dst } => {
                steps.push(Step::File(c_path(dst)?));
                steps.push(Step::Mount {
                    source: c_path(src)?,
                    target: c_path(dst)?,
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                });
            }
            MountOp::Bind { src, dst, readonly } => {
                steps.push(if src.is_dir() {
                    Step::Dir(c_path(dst)?)
                } else {
                    Step::File(c_path(dst)?)
                });
                steps.push(Step::Mount {
                    source: c_path(src)?,
                    target: c_path(dst)?,
                    fstype: None,
                    flags: libc::MS_BIND | libc::MS_REC,
                    data: None,
                });
                if *readonly {
                    steps.push(Step::Mount {
                        source: c"none".into(),
                        target: c_path(dst)?,
                        fstype: None,
                        flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        data: None,
                    });
                }
            }
        }
    }
    Ok(steps)
}

/// The overlay's mount data, or why the paths cannot be given to overlayfs.
pub(super) fn overlay_data(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> SysResult<String> {
    const OP: &str = "mount overlay";
    if lowers.is_empty() {
        return Err(SysError::invalid(
            OP,
            target,
            "an overlay needs at least one lower directory",
        ));
    }
    let mut paths = Vec::new();
    for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        let text = p
            .to_str()
            .ok_or_else(|| SysError::invalid(OP, p, "the path is not valid UTF-8"))?;
        if text.contains([',', ':', '\\', '\0']) {
            return Err(SysError::invalid(
                OP,
                p,
                "overlay layer paths may not contain `,`, `:`, `\\` or NUL",
            ));
        }
        paths.push(text);
    }
    // `userxattr`: overlayfs in a user namespace keeps its attributes (opaque directories) in
    // `user.overlay.*`; it also turns redirect_dir and metacopy off (asking for them is an
    // error with userxattr), so the upper dir holds plain files and whiteouts only.
    Ok(format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        paths[..lowers.len()].join(":"),
        paths[lowers.len()],
        paths[lowers.len() + 1]
    ))
}

/// The host device node a rootless instance binds for `c major:minor`.
pub(super) fn host_device(major: u32, minor: u32) -> Option<&'static str> {
    Some(match (major, minor) {
        (1, 3) => "/dev/null",
        (1, 5) => "/dev/zero",
        (1, 7) => "/dev/full",
        (1, 8) => "/dev/random",
        (1, 9) => "/dev/urandom",
        (5, 0) => "/dev/tty",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_data_uses_userxattr_and_refuses_bad_paths() {
        let data = overlay_data(
            &["/l1".into(), "/l2".into()],
            Path::new("/i/upper"),
            Path::new("/i/work"),
            Path::new("/i/merged"),
        )
        .unwrap();
        assert_eq!(
            data,
            "lowerdir=/l1:/l2,upperdir=/i/upper,workdir=/i/work,userxattr"
        );
        assert!(overlay_data(&[], Path::new("/u"), Path::new("/w"), Path::new("/m")).is_err());
        assert!(overlay_data(
            &["/a:b".into()],
            Path::new("/u"),
            Path::new("/w"),
            Path::new("/m")
        )
        .is_err());
    }
}
