//! Root builds in a user namespace: uid 0 in an instance is an unprivileged host uid.
//!
//! Where the kernel allows it, an instance launched by a root Kiln gets a user namespace of its
//! own that maps its ids `0..RANGE` to the host ids `base..base+RANGE` ([`DEFAULT_BASE`]), pinned
//! by a bind mount of its namespace file at `<instance dir>/userns` ([`create`]). Overlayfs
//! refuses an idmapped overlay, and an overlay whose upper or work dir is idmapped cannot
//! create its work dir, so only the **lower** layers are idmapped: each one is bound read-only
//! at `<instance dir>/lower/<n>` with `MOUNT_ATTR_IDMAP` ([`mount_idmapped`]), where a file the
//! image gives to uid `k` appears owned by host uid `base + k`. Host root mounts the overlay with
//! a plain upper and work dir; copy-up keeps the apparent owner, and commands join the user
//! namespace, so everything the build writes in the upper dir is owned by shifted ids.
//!
//! The component engine writes some files from the host side (file actions, the scripts of
//! ExecuteBash) as host root. Before every command the instance shifts what the host wrote into
//! the namespace's range ([`shift_into_range`]: ids below [`RANGE`] become `base + id`), so the
//! build sees them as root's (or as the owner the action asked for). After the last command,
//! [`shift_back`] gives the upper dir the image's ids again (`base + id` becomes `id`), so the
//! snapshot, and a test instance that uses the upper dir as a lower, see plain ids.
//!
//! `chown` clears the setuid and setgid bits and the file capability of a regular file; both
//! shifts put them back (a namespaced, version 3 file capability whose root is `base` becomes
//! the version 2 one a build outside a user namespace would have written).

use crate::sys::{cstring, SysError, SysResult};
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The first host uid (and gid) of an instance's range when nothing else is configured: far
/// above the ids of host users, `/etc/subuid` ranges of ordinary setups and `nobody`.
pub const DEFAULT_BASE: u32 = 1_000_000_000;
/// How many ids an instance's user namespace maps (what images use: 0 to 65535).
pub const RANGE: u32 = 65536;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The file below an instance's directory where its user namespace is pinned.
pub const PIN: &str = "userns";

/// Creates a user namespace mapping ids `0..RANGE` (users and groups) to `base..base+RANGE`
/// and pins it by bind-mounting its namespace file onto `pin` (created here).
pub fn create(pin: &Path, base: u32) -> SysResult<()> {
    if base.checked_add(RANGE).is_none() || base < RANGE {
        return Err(SysError::invalid(
            "create user namespace",
            pin,
            "the id range must lie between 65536 and 2^32",
        ));
    }
    fs::File::create(pin).map_err(|e| SysError::new("create", pin, e))?;
    in_child(pin, None, |pid| {
        let map = format!("0 {base} {RANGE}\n");
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{pid}/{file}");
            fs::write(&path, &map).map_err(|e| SysError::new("write", path, e))?;
        }
        crate::sys::bind_file(Path::new(&format!("/proc/{pid}/ns/user")), pin)
    })
}

/// Creates a network namespace owned by the user namespace pinned at `userns` and pins it
/// by bind-mounting its namespace file onto `pin` (created here).
pub fn create_owned_netns(userns: &Path, pin: &Path) -> SysResult<()> {
    let ns = fs::File::open(userns).map_err(|e| SysError::new("network create", userns, e))?;
    fs::File::create(pin).map_err(|e| SysError::new("network create", pin, e))?;
    in_child(pin, Some(ns.as_raw_fd()), |pid| {
        crate::sys::bind_file(Path::new(&format!("/proc/{pid}/ns/net")), pin)
    })
}

/// Forks a child that (after joining the user namespace `userns`, when given) unshares a
/// namespace (a user namespace without `userns`, a network namespace with it), runs `parent`
/// with the child's pid while the child waits, then lets the child exit. A process of its
/// own: a multi-threaded process cannot join or make a user namespace.
fn in_child(
    pin: &Path,
    userns: Option<libc::c_int>,
    parent: impl FnOnce(libc::pid_t) -> SysResult<()>,
) -> SysResult<()> {
    let mut ready = [0 as libc::c_int; 2];
    let mut done = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the arrays.
    unsafe {
        if libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(SysError::new("pipe", pin, io::Error::last_os_error()));
        }
        if libc::pipe2(done.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            let err = io::Error::last_os_error();
            libc::close(ready[0]);
            libc::close(ready[1]);
            return Err(SysError::new("pipe", pin, err));
        }
    }
    // SAFETY: the child makes async-signal-safe calls only (close_range, setns, unshare,
    // write, read, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            // Only what it needs: a descriptor another thread had open at the fork (the
            // exec-error pipe of a spawn) would otherwise stay open as long as this process.
            let mut keep = [ready[1], done[0], userns.unwrap_or(-1)];
            close_all_but(&mut keep);
            let ok = match userns {
                Some(fd) => {
                    libc::setns(fd, libc::CLONE_NEWUSER) == 0
                        && libc::unshare(libc::CLONE_NEWNET) == 0
                }
                None => libc::unshare(libc::CLONE_NEWUSER) == 0,
            };
            let byte = [u8::from(ok)];
            libc::write(ready[1], byte.as_ptr().cast(), 1);
            let mut buf = [0u8; 1];
            libc::read(done[0], buf.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closing the child's ends, which this process no longer needs.
    unsafe {
        libc::close(ready[1]);
        libc::close(done[0]);
    }
    let result = if pid < 0 {
        Err(SysError::new("fork", pin, io::Error::last_os_error()))
    } else {
        let mut byte = [0u8; 1];
        // SAFETY: reads one byte into a local buffer.
        let n = unsafe { libc::read(ready[0], byte.as_mut_ptr().cast(), 1) };
        if n != 1 || byte[0] != 1 {
            Err(SysError::new(
                "create namespace",
                pin,
                io::Error::other("the kernel refused to make the namespace"),
            ))
        } else {
            parent(pid)
        }
    };
    // SAFETY: closing our ends lets the child's read return; waitpid reaps it.
    unsafe {
        libc::close(ready[0]);
        libc::close(done[1]);
        if pid > 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
    result
}

/// Closes every descriptor but those in `keep` (`-1` entries are ignored; sorted here).
///
/// # Safety
///
/// Runs in a child after `fork`: async-signal-safe calls only.
unsafe fn close_all_but(keep: &mut [libc::c_int]) {
    keep.sort_unstable();
    let mut first: u32 = 0;
    for &fd in keep.iter().filter(|&&fd| fd >= 0) {
        let fd = fd as u32;
        if fd > first {
            libc::syscall(libc::SYS_close_range, first, fd - 1, 0u32);
        }
        first = fd + 1;
    }
    libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32);
}

/// Binds `src` read-only at `dst` (an existing directory) with its ids mapped through the user
/// namespace pinned at `userns`.
pub fn mount_idmapped(src: &Path, dst: &Path, userns: &Path) -> SysResult<()> {
    let op = "mount idmapped";
    let c_src = cstring(op, src)?;
    let c_dst = cstring(op, dst)?;
    let ns = fs::File::open(userns).map_err(|e| SysError::new(op, userns, e))?;
    // SAFETY: open_tree(2) on a NUL-terminated path; the answer is a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    } as libc::c_int;
    if tree < 0 {
        return Err(SysError::new(op, src, io::Error::last_os_error()));
    }
    // SAFETY: `tree` is a descriptor this function owns from here on.
    let tree = unsafe { std::os::fd::OwnedFd::from_raw_fd(tree) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    let empty = CString::default();
    // SAFETY: mount_setattr(2) and move_mount(2) on owned descriptors, a NUL-terminated
    // empty path and a struct of the size passed.
    unsafe {
        if libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) != 0
        {
            return Err(SysError::new(op, src, io::Error::last_os_error()));
        }
        if libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c_dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) != 0
        {
            return Err(SysError::new(op, dst, io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Gives what the host wrote in the writable layer `upper` (ids under [`RANGE`]) to the
/// namespace's ids, `base + id`, through `root`, the mounted overlay: overlayfs keeps the owner
/// of its inodes in memory, so a `chown` behind its back (in `upper`) would not be seen by
/// permission checks. Entries removed while walking are skipped.
pub fn shift_into_range(upper: &Path, root: &Path, base: u32) -> io::Result<()> {
    walk(upper, root, &|id| (id < RANGE).then(|| base + id), base)
}

/// Gives the namespace's ids in the writable layer `upper` back to the image: `base + id`
/// becomes `id`. Only once the overlay is no longer used (its cached owners go stale).
pub fn shift_back(upper: &Path, base: u32) -> io::Result<()> {
    walk(
        upper,
        upper,
        &|id| (id >= base && id - base < RANGE).then(|| id - base),
        base,
    )
}

/// Walks `upper` and changes the owners of the same paths below `target`. Owners are read on
/// the upper side (a stat of a plain directory entry); only an entry whose owner `map` changes,
/// and every directory (to go on below it), is opened on the target side, where the owner is
/// changed: through a mounted overlay each open is a lookup in every layer, 100 ms for 20,000
/// files where reading them in the upper takes a fraction of that, and before every command
/// almost nothing needs a change. The target side goes by descriptors (`O_PATH`, never
/// following a symlink), so a build that swaps a directory for a symlink while the walk runs
/// cannot make it change a host file.
fn walk(
    upper: &Path,
    target: &Path,
    map: &dyn Fn(u32) -> Option<u32>,
    base: u32,
) -> io::Result<()> {
    let c = cstring("shift owners", target).map_err(|e| e.source)?;
    let root = open_path(libc::AT_FDCWD, &c).map_err(|e| with_path(target, e))?;
    match root {
        Some(fd) => {
            shift_one(target, &fd, map, base)?;
            walk_dir(upper, target, &fd, map, base)
        }
        None => Ok(()),
    }
}

/// Opens `name` (relative to `dir`) with `O_PATH | O_NOFOLLOW`; `None` when it is gone.
fn open_path(dir: libc::c_int, name: &std::ffi::CStr) -> io::Result<Option<OwnedFd>> {
    // SAFETY: openat(2) on a NUL-terminated name; the answer is a new descriptor or -1.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: a descriptor just opened, owned from here on.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Changes the owner of what `fd` (an `O_PATH` descriptor on the target side) is, when `map`
/// changes it; a whiteout (a character device 0:0, hiding a lower file) has nothing to own.
fn shift_one(
    shown: &Path,
    fd: &OwnedFd,
    map: &dyn Fn(u32) -> Option<u32>,
    base: u32,
) -> io::Result<()> {
    // SAFETY: fstat(2) into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(with_path(shown, io::Error::last_os_error()));
    }
    let kind = st.st_mode & libc::S_IFMT;
    let whiteout = kind == libc::S_IFCHR && st.st_rdev == 0;
    let (uid, gid) = (map(st.st_uid), map(st.st_gid));
    if !whiteout && (uid.is_some() || gid.is_some()) {
        chown_keeping(fd, &st, uid, gid, base).map_err(|e| with_path(shown, e))?;
    }
    Ok(())
}

/// The entries of the upper side's directory `upper`, whose target side is `dir` (see
/// [`walk`]).
fn walk_dir(
    upper: &Path,
    shown: &Path,
    dir: &OwnedFd,
    map: &dyn Fn(u32) -> Option<u32>,
    base: u32,
) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let entries = match fs::read_dir(upper) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Swapped for something else by the build: what it holds is not the upper's.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(()),
        Err(e) => return Err(with_path(upper, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| with_path(upper, e))?;
        let name = entry.file_name();
        // Not following a symlink: the entry itself.
        let md = match entry.metadata() {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(with_path(&upper.join(&name), e)),
        };
        let kind = md.file_type();
        let whiteout = kind.is_char_device() && md.rdev() == 0;
        let changes = !whiteout && (map(md.uid()).is_some() || map(md.gid()).is_some());
        if !changes && !kind.is_dir() {
            continue;
        }
        let c = CString::new(name.as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a NUL byte in a name"))?;
        let shown = shown.join(&name);
        // Most entries are plain files and links: their owner changes by name, relative to
        // the directory's descriptor, without opening them (a third of the system calls).
        if changes && !kind.is_dir() && md.mode() & 0o6000 == 0 {
            match shift_plain_at(dir, &c, &md, map).map_err(|e| with_path(&shown, e))? {
                Shifted::Done => continue,
                Shifted::NeedsCare => {}
            }
        }
        let Some(child) = open_path(dir.as_raw_fd(), &c).map_err(|e| with_path(&shown, e))? else {
            continue;
        };
        if changes {
            shift_one(&shown, &child, map, base)?;
        }
        if kind.is_dir() && is_dir(&child) {
            walk_dir(&upper.join(&name), &shown, &child, map, base)?;
        }
    }
    Ok(())
}

enum Shifted {
    Done,
    /// A file capability that the `chown` clears must be written back: [`chown_keeping`].
    NeedsCare,
}

/// Changes the owner of `name` in `dir` (the target side's descriptor) as `map` says of its
/// upper side's owner (`md`), for an entry that is not a directory and has no setuid or setgid
/// bit; a regular file with a file capability is left for [`chown_keeping`]. `fchownat` never
/// follows a symlink here: one put in the entry's place meanwhile has its own owner changed,
/// nothing it points to.
fn shift_plain_at(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    md: &fs::Metadata,
    map: &dyn Fn(u32) -> Option<u32>,
) -> io::Result<Shifted> {
    use std::os::unix::fs::MetadataExt;
    if md.file_type().is_file() {
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name.to_bytes());
        let path = CString::new(path).map_err(|_| io::Error::other("descriptor path"))?;
        if read_caps(&path, false)?.is_some() {
            return Ok(Shifted::NeedsCare);
        }
    }
    let (uid, gid) = (map(md.uid()), map(md.gid()));
    // SAFETY: fchownat(2) on a NUL-terminated name relative to an owned descriptor.
    let rc = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid.unwrap_or(u32::MAX),
            gid.unwrap_or(u32::MAX),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        // Removed meanwhile: nothing to own.
        if err.raw_os_error() != Some(libc::ENOENT) {
            return Err(err);
        }
    }
    Ok(Shifted::Done)
}

/// Whether `fd` is a directory on the target side (a build may have swapped one for a symlink
/// since the upper side was read: nothing below a symlink is walked).
fn is_dir(fd: &OwnedFd) -> bool {
    // SAFETY: fstat(2) into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe {
        libc::fstat(fd.as_raw_fd(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

const CAPABILITY: &std::ffi::CStr = c"security.capability";
const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;

/// Changes the owner of what `fd` (`O_PATH`) is, then puts back what that cleared on a
/// regular file: the setuid/setgid bits and the file capability (a version 3 one rooted at
/// `base` as version 2). The file itself is reached through `/proc/self/fd`, never by name.
fn chown_keeping(
    fd: &OwnedFd,
    st: &libc::stat,
    uid: Option<u32>,
    gid: Option<u32>,
    base: u32,
) -> io::Result<()> {
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    let proc_path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::other("descriptor path"))?;
    let caps = if regular { get_caps(&proc_path)? } else { None };
    // SAFETY: fchownat(2) on an owned descriptor with an empty, NUL-terminated path.
    let rc = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid.unwrap_or(u32::MAX),
            gid.unwrap_or(u32::MAX),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if regular {
        if st.st_mode & 0o6000 != 0 {
            // SAFETY: chmod(2) on the descriptor's magic link, which is this very file.
            if unsafe { libc::chmod(proc_path.as_ptr(), st.st_mode & 0o7777) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(caps) = caps {
            set_caps(&proc_path, &as_version_2(caps, base))?;
        }
    }
    Ok(())
}

/// Gives `path` the file capability `caps` (a `security.capability` value).
fn set_caps(path: &std::ffi::CStr, caps: &[u8]) -> io::Result<()> {
    // SAFETY: setxattr(2) with a buffer of the length passed.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            CAPABILITY.as_ptr(),
            caps.as_ptr().cast(),
            caps.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get_caps(path: &std::ffi::CStr) -> io::Result<Option<Vec<u8>>> {
    read_caps(path, true)
}

/// The file capability of `path`, if it has one; `follow`: through a symlink in its last
/// component (else the link's own, which never has one).
fn read_caps(path: &std::ffi::CStr, follow: bool) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 64];
    let read = if follow {
        libc::getxattr
    } else {
        libc::lgetxattr
    };
    // SAFETY: (l)getxattr(2) into a local buffer of the length passed.
    let n = unsafe {
        read(
            path.as_ptr(),
            CAPABILITY.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n >= 0 {
        return Ok(Some(buf[..n as usize].to_vec()));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
        // Removed meanwhile: nothing to keep.
        Some(libc::ENOENT) if !follow => Ok(None),
        _ => Err(err),
    }
}

/// A version 3 file capability whose root is `base` (written in the namespace) as the version
/// 2 one the same `setcap` writes outside a user namespace; anything else as it is.
fn as_version_2(caps: Vec<u8>, base: u32) -> Vec<u8> {
    if caps.len() != 24 {
        return caps;
    }
    let word = |i: usize| u32::from_le_bytes([caps[i], caps[i + 1], caps[i + 2], caps[i + 3]]);
    let magic = word(0);
    if magic & VFS_CAP_REVISION_MASK != VFS_CAP_REVISION_3 || word(20) != base {
        return caps;
    }
    let mut v2 = caps[..20].to_vec();
    let magic = (magic & !VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_2;
    v2[..4].copy_from_slice(&magic.to_le_bytes());
    v2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_capabilities_rooted_at_the_base_become_version_2() {
        let mut v3 = Vec::new();
        for w in [VFS_CAP_REVISION_3 | 1, 0x2000, 0, 0, 0, DEFAULT_BASE] {
            v3.extend_from_slice(&u32::to_le_bytes(w));
        }
        let v2 = as_version_2(v3.clone(), DEFAULT_BASE);
        assert_eq!(v2.len(), 20);
        assert_eq!(v2[..4], u32::to_le_bytes(VFS_CAP_REVISION_2 | 1));
        assert_eq!(v2[4..], v3[4..20]);
        // Rooted elsewhere: left alone.
        assert_eq!(as_version_2(v3.clone(), 5), v3);
    }

    #[test]
    fn shifting_never_follows_a_symlink_out_of_the_root() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: skipping");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let (upper, root, host) = (
            tmp.path().join("upper"),
            tmp.path().join("root"),
            tmp.path().join("host"),
        );
        for d in [upper.join("d"), root.clone(), host.clone()] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(upper.join("d/f"), "").unwrap();
        fs::write(host.join("f"), "").unwrap();
        fs::write(root.join("g"), "").unwrap();
        fs::write(upper.join("g"), "").unwrap();
        // The build swapped the directory for a link to a host directory.
        std::os::unix::fs::symlink(&host, root.join("d")).unwrap();
        shift_into_range(&upper, &root, DEFAULT_BASE).unwrap();
        assert_eq!(fs::metadata(host.join("f")).unwrap().uid(), 0);
        assert_eq!(fs::metadata(&host).unwrap().uid(), 0);
        assert_eq!(
            fs::symlink_metadata(root.join("d")).unwrap().uid(),
            DEFAULT_BASE
        );
        assert_eq!(fs::metadata(root.join("g")).unwrap().uid(), DEFAULT_BASE);
        shift_back(&root, DEFAULT_BASE).unwrap();
        assert_eq!(fs::metadata(root.join("g")).unwrap().uid(), 0);
    }

    /// Plain files change owner by name; a file with a capability keeps it; a file swapped
    /// for a symlink to a host file has the link's owner changed, never the host file's.
    #[test]
    fn shifting_plain_files_keeps_capabilities_and_follows_no_link() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: skipping");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let (upper, host) = (tmp.path().join("upper"), tmp.path().join("host"));
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::create_dir_all(&host).unwrap();
        for name in ["d/plain", "d/capable", "d/swapped"] {
            fs::write(upper.join(name), "x").unwrap();
        }
        fs::write(host.join("secret"), "").unwrap();
        // A version 2 capability (cap_net_bind_service permitted and effective).
        let mut caps = Vec::new();
        for w in [VFS_CAP_REVISION_2 | 1, 1 << 10, 0, 0, 0] {
            caps.extend_from_slice(&u32::to_le_bytes(w));
        }
        let path = CString::new(upper.join("d/capable").as_os_str().as_encoded_bytes()).unwrap();
        if set_caps(&path, &caps).is_err() {
            eprintln!("no file capabilities here: skipping");
            return;
        }
        // The upper side is read first; the target (here the same tree) then changes: the
        // build put a link to a host file where the plain file was.
        let target = tmp.path().join("target");
        fs::create_dir_all(target.join("d")).unwrap();
        for name in ["d/plain", "d/capable"] {
            fs::hard_link(upper.join(name), target.join(name)).unwrap();
        }
        std::os::unix::fs::symlink(host.join("secret"), target.join("d/swapped")).unwrap();
        shift_into_range(&upper, &target, DEFAULT_BASE).unwrap();
        assert_eq!(
            fs::metadata(upper.join("d/plain")).unwrap().uid(),
            DEFAULT_BASE
        );
        assert_eq!(
            fs::metadata(upper.join("d/capable")).unwrap().uid(),
            DEFAULT_BASE
        );
        assert_eq!(get_caps(&path).unwrap(), Some(caps));
        assert_eq!(fs::metadata(host.join("secret")).unwrap().uid(), 0);
        assert_eq!(
            fs::symlink_metadata(target.join("d/swapped"))
                .unwrap()
                .uid(),
            DEFAULT_BASE
        );
    }

    #[test]
    fn ranges_outside_the_id_space_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for base in [0, 100, u32::MAX - 10] {
            assert!(create(&dir.path().join("ns"), base).is_err());
        }
    }
}
