//! Unpacking layer tars safely: as overlay lower directories (OCI whiteouts become overlay
//! whiteouts) or applied on top of each other into one merged root file system.

use crate::layer::{
    is_overlay_xattr, OPAQUE_MARKER, OVERLAY_OPAQUE, USER_OVERLAY_OPAQUE, WHITEOUT_PREFIX,
};
use crate::{io_err, Error, Result};
use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

/// Whether this process may chown, make device nodes and set `trusted.*` attributes.
fn privileged() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Marks `dir` opaque for overlayfs: `trusted.overlay.opaque` as root (Kiln's overlays are
/// mounted by root), `user.overlay.opaque` unprivileged (a rootless instance's overlay is
/// mounted with `userxattr` in a user namespace, and reads only that one; `trusted.*` needs
/// root). Not both: a root overlay would show the `user.overlay.*` attribute as an ordinary
/// one. A cache unpacked by root is not usable rootless anyway (its owners are the layer's).
fn mark_opaque(dir: &Path) -> Result<()> {
    let name = if privileged() {
        OVERLAY_OPAQUE
    } else {
        USER_OVERLAY_OPAQUE
    };
    xattr::set(dir, name, b"y").map_err(io_err("marking opaque", dir))
}

/// How whiteouts are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One directory per layer, usable as an overlay lowerdir: whiteouts are recorded as
    /// overlay whiteouts (char 0/0, `trusted.overlay.opaque=y`).
    Overlay,
    /// Layers applied in order into one directory: whiteouts delete.
    Merged,
}

fn refuse(entry: &[u8], reason: impl Into<String>) -> Error {
    Error::UnsafeEntry {
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.into(),
    }
}

/// Normalises an entry name to a relative path: `.` and empty components are dropped,
/// absolute names and `..` components are refused.
pub(crate) fn check_name(raw: &[u8]) -> Result<PathBuf> {
    if raw.first() == Some(&b'/') {
        return Err(refuse(
            raw,
            "absolute path (entries must be relative to the layer root)",
        ));
    }
    if raw.contains(&0) {
        return Err(refuse(raw, "NUL byte in the name"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(refuse(raw, "`..` component would leave the layer root"))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(
                    raw,
                    "absolute path (entries must be relative to the layer root)",
                ))
            }
        }
    }
    Ok(out)
}

/// Fails if any existing ancestor of `rel` (inside `root`, `rel` itself excluded) is a symbolic
/// link or not a directory.
fn check_parents(root: &Path, rel: &Path, raw: &[u8]) -> Result<()> {
    let mut cur = root.to_path_buf();
    let mut shown = PathBuf::new();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        shown.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(refuse(
                    raw,
                    format!("goes through the symbolic link `{}`", shown.display()),
                ))
            }
            Ok(md) if !md.is_dir() => {
                return Err(refuse(
                    raw,
                    format!("`{}` is not a directory", shown.display()),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("checking", cur)(e)),
        }
    }
    Ok(())
}

/// Checks a whole tar stream without writing anything: names, link targets, and paths that
/// would go through a symlink the archive itself creates.
pub(crate) fn validate_archive<R: Read>(reader: R) -> Result<R> {
    let mut archive = tar::Archive::new(reader);
    let mut symlinks: HashSet<PathBuf> = HashSet::new();
    {
        let entries = archive
            .entries()
            .map_err(|e| Error::Invalid(format!("reading the tar stream: {e}")))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::Invalid(format!("reading the tar stream: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let rel = check_name(&raw)?;
            let mut prefix = PathBuf::new();
            if let Some(parent) = rel.parent() {
                for c in parent.components() {
                    prefix.push(c);
                    if symlinks.contains(&prefix) {
                        return Err(refuse(
                            &raw,
                            format!("goes through the symbolic link `{}`", prefix.display()),
                        ));
                    }
                }
            }
            let ty = entry.header().entry_type();
            if ty == EntryType::Link {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let t = check_name(&target)?;
                let mut prefix = PathBuf::new();
                for c in t.components() {
                    prefix.push(c);
                    if symlinks.contains(&prefix) && prefix != t {
                        return Err(refuse(
                            &raw,
                            format!(
                                "hard link goes through the symbolic link `{}`",
                                prefix.display()
                            ),
                        ));
                    }
                }
            }
            if ty == EntryType::Symlink {
                symlinks.insert(rel);
            } else {
                symlinks.remove(&rel);
            }
        }
    }
    Ok(archive.into_inner())
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path with a NUL byte: {}", p.display())))
}

fn makedev(major: u32, minor: u32) -> libc::dev_t {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

fn mknod(path: &Path, kind: libc::mode_t, mode: u32, dev: libc::dev_t) -> Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | (mode & 0o7777), dev) };
    if rc != 0 {
        return Err(io_err("creating device node", path)(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn lchown(path: &Path, uid: u64, gid: u64) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid as u32), Some(gid as u32))
        .map_err(io_err("changing the owner of", path))
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let c = cpath(path)?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io_err("setting the mtime of", path)(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path).map_err(io_err("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(io_err("removing", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("checking", path)(e)),
    }
}

/// Applies layer tars to a directory.
pub(crate) struct Unpacker {
    root: PathBuf,
    mode: Mode,
}

impl Unpacker {
    pub(crate) fn new(root: &Path, mode: Mode) -> Self {
        Unpacker {
            root: root.to_path_buf(),
            mode,
        }
    }

    /// Applies one uncompressed tar stream.
    pub(crate) fn apply<R: Read>(&self, reader: R) -> Result<R> {
        let mut archive = tar::Archive::new(reader);
        let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
        let mut this_layer: HashSet<PathBuf> = HashSet::new();
        let tar_err = |e: io::Error| Error::Invalid(format!("reading the layer tar: {e}"));
        {
            let entries = archive.entries().map_err(tar_err)?;
            for entry in entries {
                let mut entry = entry.map_err(tar_err)?;
                let raw = entry.path_bytes().into_owned();
                let rel = check_name(&raw)?;
                let Some(base) = rel.file_name().map(|b| b.as_bytes().to_vec()) else {
                    continue; // the layer root itself
                };
                let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
                check_parents(&self.root, &rel, &raw)?;
                let parent = self.root.join(&parent_rel);
                fs::create_dir_all(&parent).map_err(io_err("creating directory", &parent))?;

                if base == OPAQUE_MARKER.as_bytes() {
                    match self.mode {
                        Mode::Overlay => mark_opaque(&parent)?,
                        Mode::Merged => {
                            let list = fs::read_dir(&parent).map_err(io_err("reading", &parent))?;
                            for child in list {
                                let child = child.map_err(io_err("reading", &parent))?;
                                let crel = parent_rel.join(child.file_name());
                                if !this_layer.contains(&crel) {
                                    remove_any(&child.path())?;
                                }
                            }
                        }
                    }
                    continue;
                }
                if let Some(name) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                    if name.is_empty() || name == b"." || name == b".." {
                        return Err(refuse(&raw, "whiteout without a name"));
                    }
                    let target = parent.join(OsStr::from_bytes(name));
                    remove_any(&target)?;
                    if self.mode == Mode::Overlay {
                        mknod(&target, libc::S_IFCHR, 0, 0)?;
                    }
                    continue;
                }

                let dst = self.root.join(&rel);
                let header = entry.header().clone();
                let ty = header.entry_type();
                let mut uid = header.uid().map_err(tar_err)?;
                let mut gid = header.gid().map_err(tar_err)?;
                let mode = header.mode().map_err(tar_err)?;
                let mtime = header.mtime().map_err(tar_err)?;
                let mut xattrs = Vec::new();
                if let Some(exts) = entry.pax_extensions().map_err(tar_err)? {
                    for ext in exts {
                        let ext = ext.map_err(tar_err)?;
                        let key = ext.key_bytes();
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            // Overlayfs's own attributes (either namespace) are never taken
                            // from a layer: a crafted one could make directories opaque.
                            if !is_overlay_xattr(name) {
                                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                            }
                        } else if key == b"uid" {
                            uid = parse_num(ext.value_bytes(), &raw)?;
                        } else if key == b"gid" {
                            gid = parse_num(ext.value_bytes(), &raw)?;
                        }
                    }
                }

                let existing = fs::symlink_metadata(&dst).ok();
                match (&existing, ty) {
                    (Some(md), EntryType::Directory) if md.is_dir() => {}
                    (Some(_), _) => remove_any(&dst)?,
                    (None, _) => {}
                }
                match ty {
                    EntryType::Regular | EntryType::Continuous => {
                        let mut f = fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&dst)
                            .map_err(io_err("creating", &dst))?;
                        io::copy(&mut entry, &mut f).map_err(io_err("writing", &dst))?;
                    }
                    EntryType::Directory => {
                        if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                            fs::create_dir(&dst).map_err(io_err("creating directory", &dst))?;
                        }
                    }
                    EntryType::Symlink => {
                        let target = entry
                            .link_name_bytes()
                            .map(|c| c.into_owned())
                            .unwrap_or_default();
                        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dst)
                            .map_err(io_err("creating symlink", &dst))?;
                    }
                    EntryType::Link => {
                        let target_raw = entry
                            .link_name_bytes()
                            .map(|c| c.into_owned())
                            .unwrap_or_default();
                        let target = check_name(&target_raw)?;
                        check_parents(&self.root, &target, &raw)?;
                        let src = self.root.join(&target);
                        if fs::symlink_metadata(&src).is_err() {
                            return Err(refuse(
                                &raw,
                                format!(
                                    "hard link to `{}`, which is not in this layer",
                                    target.display()
                                ),
                            ));
                        }
                        fs::hard_link(&src, &dst).map_err(io_err("creating hard link", &dst))?;
                        this_layer.insert(rel);
                        continue;
                    }
                    EntryType::Char | EntryType::Block => {
                        let major = header.device_major().map_err(tar_err)?.unwrap_or(0);
                        let minor = header.device_minor().map_err(tar_err)?.unwrap_or(0);
                        let kind = if ty == EntryType::Char {
                            libc::S_IFCHR
                        } else {
                            libc::S_IFBLK
                        };
                        if let Err(e) = mknod(&dst, kind, mode, makedev(major, minor)) {
                            // Unprivileged (rootless) a device node cannot be made; instances
                            // get their /dev from the host's nodes anyway.
                            if !privileged() {
                                this_layer.insert(rel);
                                continue;
                            }
                            return Err(e);
                        }
                    }
                    EntryType::Fifo => mknod(&dst, libc::S_IFIFO, mode, 0)?,
                    EntryType::XGlobalHeader => continue,
                    other => {
                        return Err(refuse(
                            &raw,
                            format!("unsupported tar entry type {other:?}"),
                        ))
                    }
                }
                let as_root = privileged();
                // Unprivileged, everything belongs to the unpacking user: root in a rootless
                // instance's user namespace.
                if as_root {
                    lchown(&dst, uid, gid)?;
                }
                for (name, value) in &xattrs {
                    if let Err(e) = xattr::set(&dst, OsStr::from_bytes(name), value) {
                        // Unprivileged, only `user.*` attributes can be set (not
                        // `security.capability` or `trusted.*`): the others are dropped.
                        if as_root || name.starts_with(b"user.") {
                            return Err(io_err("setting an xattr on", &dst)(e));
                        }
                    }
                }
                if ty != EntryType::Symlink {
                    use std::os::unix::fs::PermissionsExt;
                    let mut mode = mode & 0o7777;
                    if !as_root && ty == EntryType::Directory {
                        // The unprivileged owner must be able to fill, read and remove it.
                        mode |= 0o700;
                    }
                    fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
                        .map_err(io_err("setting the mode of", &dst))?;
                }
                if ty == EntryType::Directory {
                    dirs.push((dst, mtime));
                } else {
                    set_mtime(&dst, mtime)?;
                }
                this_layer.insert(rel);
            }
        }
        for (dir, mtime) in dirs.iter().rev() {
            set_mtime(dir, *mtime)?;
        }
        Ok(archive.into_inner())
    }
}

fn parse_num(v: &[u8], raw: &[u8]) -> Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| refuse(raw, "bad numeric PAX record"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{EntryMeta, Kind, LayerWriter};

    fn layer(entries: &[(&str, EntryMeta)]) -> Vec<u8> {
        let mut w = LayerWriter::new(Vec::new());
        for (name, meta) in entries {
            w.append(name.as_bytes(), meta, &mut io::empty()).unwrap();
        }
        w.finish().unwrap()
    }

    fn dir_with(xattrs: &[(&str, &str)]) -> EntryMeta {
        let mut m = EntryMeta::simple(Kind::Dir, 0o755, 0);
        m.xattrs = xattrs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        m
    }

    #[test]
    fn overlay_attributes_come_from_markers_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lower");
        fs::create_dir(&root).unwrap();
        let tar = layer(&[
            (
                "forged",
                dir_with(&[
                    ("user.overlay.opaque", "y"),
                    ("trusted.overlay.opaque", "y"),
                    ("user.overlay.redirect", "/x"),
                    ("user.kept", "1"),
                ]),
            ),
            ("opaque", dir_with(&[])),
            (
                "opaque/.wh..wh..opq",
                EntryMeta::simple(Kind::File, 0o600, 0),
            ),
            ("ro", EntryMeta::simple(Kind::Dir, 0o555, 0)),
            ("ro/f", EntryMeta::simple(Kind::File, 0o444, 0)),
        ]);
        Unpacker::new(&root, Mode::Overlay)
            .apply(io::Cursor::new(tar))
            .unwrap();
        let get = |p: &str, name: &str| xattr::get(root.join(p), name).ok().flatten();
        // A layer cannot mark a directory opaque (or anything else) for overlayfs.
        assert_eq!(get("forged", "user.overlay.opaque"), None);
        assert_eq!(get("forged", "trusted.overlay.opaque"), None);
        assert_eq!(get("forged", "user.overlay.redirect"), None);
        assert_eq!(get("forged", "user.kept").as_deref(), Some(&b"1"[..]));
        // The OCI marker makes it opaque for the overlay this process can mount: trusted.*
        // as root, user.* (userxattr) unprivileged.
        let (set, unset) = if privileged() {
            ("trusted.overlay.opaque", "user.overlay.opaque")
        } else {
            ("user.overlay.opaque", "trusted.overlay.opaque")
        };
        assert_eq!(get("opaque", set).as_deref(), Some(&b"y"[..]));
        assert_eq!(get("opaque", unset), None);
        assert!(!root.join("opaque/.wh..wh..opq").exists());
        // Unprivileged, directories stay usable by their owner; as root modes are exact.
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(root.join("ro")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, if privileged() { 0o555 } else { 0o755 });
    }
}
