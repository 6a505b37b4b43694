//! Writing layer tars: the entry model, PAX records, and the walk of an overlay upper
//! directory (whiteouts, opaque directories, hard links, xattrs).

use crate::{io_err, Error, Result};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use tar::{EntryType, Header};

/// The prefix of an OCI whiteout file name.
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the OCI opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The overlayfs xattr that makes a directory opaque.
pub(crate) const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";
/// Overlayfs private attributes, never carried into or out of a layer.
pub(crate) const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// The same attributes of an overlay mounted with `userxattr` (rootless instances: overlayfs
/// in a user namespace cannot use `trusted.*`).
pub(crate) const USER_OVERLAY_OPAQUE: &str = "user.overlay.opaque";
pub(crate) const USER_OVERLAY_XATTR_PREFIX: &str = "user.overlay.";

/// Whether an xattr is overlayfs's own, in either namespace.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(OVERLAY_XATTR_PREFIX.as_bytes())
        || name.starts_with(USER_OVERLAY_XATTR_PREFIX.as_bytes())
}

/// What a tar entry is.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// The attributes of one tar entry.
#[derive(Clone, Debug)]
pub(crate) struct EntryMeta {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    pub(crate) fn simple(kind: Kind, mode: u32, mtime: u64) -> Self {
        EntryMeta {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            xattrs: Vec::new(),
        }
    }
}

/// A tar stream being written, with PAX records where ustar cannot hold a value.
pub(crate) struct LayerWriter<W: Write> {
    builder: tar::Builder<W>,
}

const USTAR_MAX_ID: u64 = 0o7777777;

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n" where len counts the whole record, itself included.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn set_raw_name(header: &mut Header, name: &[u8]) {
    let old = header.as_old_mut();
    old.name = [0; 100];
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.prefix = [0; 155];
    }
}

impl<W: Write> LayerWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        let mut builder = tar::Builder::new(inner);
        builder.mode(tar::HeaderMode::Complete);
        LayerWriter { builder }
    }

    /// Writes the end-of-archive blocks and answers the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    /// Appends one entry; `data` must yield exactly `meta.size` bytes for files.
    pub(crate) fn append(
        &mut self,
        name: &[u8],
        meta: &EntryMeta,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let mut header = Header::new_ustar();
        let mut pax = Vec::new();
        let (ty, size) = match &meta.kind {
            Kind::File => (EntryType::Regular, meta.size),
            Kind::Dir => (EntryType::Directory, 0),
            Kind::Symlink(_) => (EntryType::Symlink, 0),
            Kind::HardLink(_) => (EntryType::Link, 0),
            Kind::Char(..) => (EntryType::Char, 0),
            Kind::Block(..) => (EntryType::Block, 0),
            Kind::Fifo => (EntryType::Fifo, 0),
        };
        header.set_entry_type(ty);
        header.set_size(size);
        header.set_mode(meta.mode & 0o7777);
        header.set_mtime(meta.mtime);
        if meta.uid > USTAR_MAX_ID {
            pax_record(&mut pax, b"uid", meta.uid.to_string().as_bytes());
            header.set_uid(0);
        } else {
            header.set_uid(meta.uid);
        }
        if meta.gid > USTAR_MAX_ID {
            pax_record(&mut pax, b"gid", meta.gid.to_string().as_bytes());
            header.set_gid(0);
        } else {
            header.set_gid(meta.gid);
        }
        if header.set_path(Path::new(OsStr::from_bytes(name))).is_err() {
            pax_record(&mut pax, b"path", name);
            set_raw_name(&mut header, name);
        }
        if let Kind::Symlink(target) | Kind::HardLink(target) = &meta.kind {
            if header.set_link_name_literal(target).is_err() {
                pax_record(&mut pax, b"linkpath", target);
                let n = target.len().min(100);
                let old = header.as_old_mut();
                old.linkname = [0; 100];
                old.linkname[..n].copy_from_slice(&target[..n]);
            }
        }
        if let Kind::Char(major, minor) | Kind::Block(major, minor) = meta.kind {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }
        for (key, value) in &meta.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            pax_record(&mut pax, &k, value);
        }
        if !pax.is_empty() {
            let mut xh = Header::new_ustar();
            let mut xname = b"PaxHeaders.0/".to_vec();
            let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
            xname.extend_from_slice(&base[..base.len().min(80)]);
            set_raw_name(&mut xh, &xname);
            xh.set_entry_type(EntryType::XHeader);
            xh.set_size(pax.len() as u64);
            xh.set_mode(0o644);
            xh.set_mtime(meta.mtime);
            xh.set_cksum();
            self.builder.append(&xh, pax.as_slice())?;
        }
        header.set_cksum();
        self.builder.append(&header, data)
    }
}

fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Overlay attributes that mean the upper directory cannot be read on its own: a renamed
/// directory (`redirect_dir=on`) or a metadata-only copy-up (`metacopy=on`).
const OVERLAY_UNSUPPORTED: [&str; 4] = [
    "trusted.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.redirect",
    "user.overlay.metacopy",
];

/// The extended attributes of a path worth keeping in a layer, sorted by name. Fails on an
/// upper directory made with `redirect_dir` or `metacopy`, which a layer cannot express.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing xattrs of", path)(e)),
    };
    let mut out = Vec::new();
    for name in names {
        if is_overlay_xattr(name.as_bytes()) {
            if OVERLAY_UNSUPPORTED
                .iter()
                .any(|u| name.as_bytes() == u.as_bytes())
            {
                return Err(Error::Invalid(format!(
                    "{} has {}: mount build overlays with redirect_dir=off,metacopy=off",
                    path.display(),
                    name.to_string_lossy()
                )));
            }
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push((name.as_bytes().to_vec(), value)),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(io_err("reading xattrs of", path)(e)),
        }
    }
    out.sort();
    Ok(out)
}

/// Whether overlayfs marked the directory opaque: `trusted.overlay.opaque`, or
/// `user.overlay.opaque` for an overlay mounted with `userxattr`.
fn is_opaque(path: &Path) -> Result<bool> {
    for name in [OVERLAY_OPAQUE, USER_OVERLAY_OPAQUE] {
        match xattr::get(path, name) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => return Err(io_err("reading the opaque attribute of", path)(e)),
        }
    }
    Ok(false)
}

/// Walks an overlay upper directory and writes it as an OCI layer.
pub(crate) struct UpperWalk<'a, W: Write> {
    out: &'a mut LayerWriter<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The host user and group that are root in the instance (a rootless instance's user
    /// namespace): recorded as 0:0.
    root_ids: Option<(u32, u32)>,
    /// No entry is recorded newer than this (seconds since the epoch), so that a tree made
    /// now from fixed content gives a fixed layer (the Debian base's `SOURCE_DATE_EPOCH`).
    max_mtime: Option<u64>,
}

impl<'a, W: Write> UpperWalk<'a, W> {
    pub(crate) fn new(out: &'a mut LayerWriter<W>) -> Self {
        UpperWalk {
            out,
            links: HashMap::new(),
            root_ids: None,
            max_mtime: None,
        }
    }

    /// Records mtimes later than `max` as `max`.
    pub(crate) fn clamping_mtime(mut self, max: u64) -> Self {
        self.max_mtime = Some(max);
        self
    }

    /// Records files of host user `uid` and group `gid` as owned by 0:0.
    pub(crate) fn mapping_root(mut self, root_ids: Option<(u32, u32)>) -> Self {
        self.root_ids = root_ids;
        self
    }

    fn owner(&self, md: &fs::Metadata) -> (u64, u64) {
        let (uid, gid) = (md.uid(), md.gid());
        match self.root_ids {
            Some((ru, rg)) => (
                u64::from(if uid == ru { 0 } else { uid }),
                u64::from(if gid == rg { 0 } else { gid }),
            ),
            None => (u64::from(uid), u64::from(gid)),
        }
    }

    /// Writes every entry under `dir` (not `dir` itself), names relative to `prefix`.
    pub(crate) fn walk(&mut self, dir: &Path, prefix: &[u8]) -> Result<()> {
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
            .map_err(io_err("reading directory", dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(io_err("reading directory", dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let mut rel = prefix.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.entry(&path, name.as_bytes(), rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, base: &[u8], rel: Vec<u8>) -> Result<()> {
        let md = fs::symlink_metadata(path).map_err(io_err("reading metadata of", path))?;
        let ft = md.file_type();
        let (uid, gid) = self.owner(&md);
        let mut meta = EntryMeta {
            kind: Kind::File,
            mode: md.mode(),
            uid,
            gid,
            mtime: (md.mtime().max(0) as u64).min(self.max_mtime.unwrap_or(u64::MAX)),
            size: 0,
            xattrs: Vec::new(),
        };
        let write_err = |e| io_err("writing the layer entry for", path)(e);
        if ft.is_char_device() && md.rdev() == 0 {
            // An overlay whiteout: the OCI form is an empty file named `.wh.<name>`.
            let parent_len = rel.len() - base.len();
            let mut wh = rel[..parent_len].to_vec();
            wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            wh.extend_from_slice(base);
            return self
                .out
                .append(&wh, &meta, &mut io::empty())
                .map_err(write_err);
        }
        if !ft.is_symlink() {
            meta.xattrs = read_xattrs(path)?;
        }
        if ft.is_dir() {
            meta.kind = Kind::Dir;
            self.out
                .append(&rel, &meta, &mut io::empty())
                .map_err(write_err)?;
            if is_opaque(path)? {
                let mut marker = rel.clone();
                marker.push(b'/');
                marker.extend_from_slice(OPAQUE_MARKER.as_bytes());
                let m = EntryMeta {
                    kind: Kind::File,
                    mode: 0o600,
                    xattrs: Vec::new(),
                    ..meta.clone()
                };
                self.out
                    .append(&marker, &m, &mut io::empty())
                    .map_err(write_err)?;
            }
            return self.walk(path, &rel);
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.links.get(&key) {
                    meta.kind = Kind::HardLink(first.clone());
                    return self
                        .out
                        .append(&rel, &meta, &mut io::empty())
                        .map_err(write_err);
                }
                self.links.insert(key, rel.clone());
            }
            meta.size = md.len();
            let file = fs::File::open(path).map_err(io_err("opening", path))?;
            // If the file changes size under us, tar would write a corrupt stream; take
            // exactly `size` bytes and fail if fewer come.
            let mut limited = ExactReader {
                inner: file.take(meta.size),
                left: meta.size,
            };
            return self
                .out
                .append(&rel, &meta, &mut limited)
                .map_err(write_err);
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err("reading symlink", path))?;
            meta.kind = Kind::Symlink(target.as_os_str().as_bytes().to_vec());
        } else if ft.is_char_device() {
            let (ma, mi) = split_dev(md.rdev());
            meta.kind = Kind::Char(ma, mi);
        } else if ft.is_block_device() {
            let (ma, mi) = split_dev(md.rdev());
            meta.kind = Kind::Block(ma, mi);
        } else if ft.is_fifo() {
            meta.kind = Kind::Fifo;
        } else {
            // Sockets have no tar form.
            return Ok(());
        }
        self.out
            .append(&rel, &meta, &mut io::empty())
            .map_err(write_err)
    }
}

impl crate::ImageStore {
    /// [`crate::ImageStore::snapshot_layer`] of the upper dir of an instance whose root is
    /// host user and group `root_ids` (a rootless instance: "root" in its user namespace is
    /// Kiln's user on the host): their files are recorded as owned by 0:0. `None` records
    /// owners as they are.
    pub fn snapshot_layer_mapped(
        &self,
        upper: &Path,
        compression: crate::Compression,
        root_ids: Option<(u32, u32)>,
    ) -> Result<crate::LayerInfo> {
        let md = fs::metadata(upper).map_err(io_err("reading", upper))?;
        if !md.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is not a directory",
                upper.display()
            )));
        }
        self.write_layer(compression, |w| {
            UpperWalk::new(w).mapping_root(root_ids).walk(upper, b"")
        })
    }

    /// [`crate::ImageStore::snapshot_layer_mapped`] on a thread of its own that runs beside a
    /// build's next stage (the test instance reads the same upper dir meanwhile): this thread
    /// and the compression workers it starts give way to the build's processes for the CPU
    /// (nice 10), so the tests, which the user waits for, are not slowed by a snapshot that
    /// has time to finish while they run. The thread keeps that priority: call it only on a
    /// thread made for the snapshot.
    pub fn snapshot_layer_beside_build(
        &self,
        upper: &Path,
        compression: crate::Compression,
        root_ids: Option<(u32, u32)>,
    ) -> Result<crate::LayerInfo> {
        // SAFETY: setpriority(2) on the calling thread (Linux gives each thread its own nice
        // value; threads it starts inherit it). Failing leaves the priority as it was.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, BESIDE_BUILD_NICE);
        }
        self.snapshot_layer_mapped(upper, compression, root_ids)
    }
}

/// The nice value of a snapshot that runs beside a build's tests.
const BESIDE_BUILD_NICE: libc::c_int = 10;

struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userxattr_overlays_mark_opaque_dirs_in_the_user_namespace() {
        let tmp = tempfile::tempdir().unwrap();
        let (plain, user, trusted) = (
            tmp.path().join("plain"),
            tmp.path().join("user"),
            tmp.path().join("trusted"),
        );
        for d in [&plain, &user, &trusted] {
            fs::create_dir(d).unwrap();
        }
        xattr::set(&user, USER_OVERLAY_OPAQUE, b"y").unwrap();
        xattr::set(&user, "user.overlay.origin", b"x").unwrap();
        xattr::set(&user, "user.kept", b"1").unwrap();
        assert!(is_opaque(&user).unwrap());
        assert!(!is_opaque(&plain).unwrap());
        // Overlayfs's own attributes never go into a layer; others do.
        assert_eq!(
            read_xattrs(&user).unwrap(),
            vec![(b"user.kept".to_vec(), b"1".to_vec())]
        );
        // trusted.* needs CAP_SYS_ADMIN: checked only where it can be set.
        if xattr::set(&trusted, OVERLAY_OPAQUE, b"y").is_ok() {
            assert!(is_opaque(&trusted).unwrap());
            assert!(read_xattrs(&trusted).unwrap().is_empty());
        }
        xattr::set(&plain, "user.overlay.redirect", b"/x").unwrap();
        let err = read_xattrs(&plain).unwrap_err().to_string();
        assert!(err.contains("redirect"), "{err}");
    }
}

#[cfg(test)]
mod mapping_tests {
    use super::*;

    fn owners(upper: &Path, root_ids: Option<(u32, u32)>) -> Vec<(String, u64, u64)> {
        let mut w = LayerWriter::new(Vec::new());
        UpperWalk::new(&mut w)
            .mapping_root(root_ids)
            .walk(upper, b"")
            .unwrap();
        let tar = w.finish().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_instances_root_user_is_recorded_as_root() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path();
        fs::create_dir(upper.join("d")).unwrap();
        fs::write(upper.join("d/mine"), "x").unwrap();
        fs::write(upper.join("other"), "y").unwrap();
        let md = fs::metadata(upper.join("d/mine")).unwrap();
        let (uid, gid) = (md.uid(), md.gid());
        // Root can give a file to someone else; unprivileged the "other" file stays ours.
        let other = if uid == 0 {
            std::os::unix::fs::lchown(upper.join("other"), Some(1234), Some(5678)).unwrap();
            (1234, 5678)
        } else {
            (u64::from(uid), u64::from(gid))
        };
        let (u, g) = (u64::from(uid), u64::from(gid));
        assert_eq!(
            owners(upper, None),
            vec![
                ("d".to_string(), u, g),
                ("d/mine".to_string(), u, g),
                ("other".to_string(), other.0, other.1),
            ]
        );
        let mapped = owners(upper, Some((uid, gid)));
        assert_eq!(mapped[0], ("d".to_string(), 0, 0));
        assert_eq!(mapped[1], ("d/mine".to_string(), 0, 0));
        if uid == 0 {
            assert_eq!(mapped[2], ("other".to_string(), 1234, 5678));
        }
        // Only the mapped ids change.
        let shifted = owners(upper, Some((uid + 1, gid + 1)));
        assert_eq!(shifted[1], ("d/mine".to_string(), u, g));
    }

    /// A snapshot beside a build (a niced thread) is the same snapshot: the same tree gives
    /// the same layer, byte for byte, whichever way it is taken and however often.
    #[test]
    fn a_snapshot_beside_a_build_is_the_same_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::ImageStore::open(&tmp.path().join("store")).unwrap();
        let upper = tmp.path().join("upper");
        fs::create_dir_all(upper.join("opt/app")).unwrap();
        fs::write(upper.join("opt/app/conf"), "port=8080\n").unwrap();
        fs::write(upper.join("big"), vec![7u8; 3 << 20]).unwrap();
        let plain = store
            .snapshot_layer_mapped(&upper, crate::Compression::Zstd, None)
            .unwrap();
        let beside = std::thread::scope(|scope| {
            scope
                .spawn(|| store.snapshot_layer_beside_build(&upper, crate::Compression::Zstd, None))
                .join()
                .unwrap()
        })
        .unwrap();
        assert_eq!(plain.descriptor.digest(), beside.descriptor.digest());
        assert_eq!(plain.descriptor.size(), beside.descriptor.size());
        assert_eq!(plain.diff_id, beside.diff_id);
    }
}
