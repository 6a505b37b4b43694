//! Thin wrappers over the system calls the rest of `sys` (and `rootless`, `userns`, `network`)
//! make: C strings from paths, `mount`, and the async-signal-safe helpers a `pre_exec` hook may
//! call after `fork`.

use super::{SysError, SysResult};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) fn cstring(op: &'static str, path: &Path) -> SysResult<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::invalid(op, path, "the path contains a NUL byte"))
}

pub(super) fn check(op: &'static str, path: &Path, rc: libc::c_int) -> SysResult<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(SysError::new(op, path, io::Error::last_os_error()))
    }
}

pub(super) fn raw_mount(
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
///
/// [`Privileged::mount_tmpfs`]: crate::sys::Privileged::mount_tmpfs
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

/// Bind-mounts the file `src` onto the existing file `dst`.
pub(crate) fn bind_file(src: &Path, dst: &Path) -> SysResult<()> {
    let source = src
        .to_str()
        .ok_or_else(|| SysError::invalid("bind mount", src, "the path is not valid UTF-8"))?;
    raw_mount("bind mount", source, dst, None, libc::MS_BIND, None)
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
