//! Reading a caller's parent image from a directory the operator allowed, without leaving it.
//! The API checked the path when the recipe was created, but the file system may
//! have changed since (a symlink swapped in, a directory moved), so the reads themselves are
//! confined: `openat2(RESOLVE_BENEATH)` from the allowed directory resolves symlinks only while
//! they stay beneath it, and files inside an OCI layout are opened without following any
//! symlink. Only regular files are read (a FIFO or device would block or never end).

use crate::store::CommitMeta;
use crate::{io_err, Error, ImageRef, ImageStore, Result};
use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A file or directory opened beneath an allowed directory.
pub struct Confined {
    fd: OwnedFd,
    /// Where it really is (from `/proc/self/fd`), for checks and messages.
    pub real_path: PathBuf,
}

/// Opens `relative` (empty: `dir` itself) beneath `dir`; symlinks that lead out of `dir` make
/// it fail. `directory` asks for a directory, otherwise a regular file.
pub fn open_beneath(dir: &Path, relative: &Path, directory: bool) -> Result<Confined> {
    let root = File::open(dir).map_err(io_err("opening", dir))?;
    let shown = dir.join(relative);
    let rel: &Path = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let fd = open_at(&root, rel, directory, ResolveFlags::empty())
        .map_err(|e| confined_err(&shown, dir, e))?;
    let real_path = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(io_err("finding the real path of", &shown))?;
    Ok(Confined { fd, real_path })
}

/// `openat2` beneath `dirfd`, non-blocking (a FIFO must not hang the build), checked to be a
/// directory or a regular file.
fn open_at(
    dirfd: impl AsFd,
    rel: &Path,
    directory: bool,
    extra: ResolveFlags,
) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if directory {
        flags |= OFlags::DIRECTORY;
    }
    let fd = openat2(
        dirfd,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | extra,
    )?;
    let kind = rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT;
    if !directory && kind != libc::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(fd)
}

fn confined_err(path: &Path, dir: &Path, e: io::Error) -> Error {
    // openat2 answers EXDEV when resolution would leave the directory.
    if e.raw_os_error() == Some(libc::EXDEV) || e.raw_os_error() == Some(libc::ELOOP) {
        return Error::Invalid(format!(
            "{} leads (through a symbolic link) outside {}, which Kiln does not read",
            path.display(),
            dir.display()
        ));
    }
    Error::Io {
        action: "opening",
        path: path.to_path_buf(),
        source: e,
    }
}

impl Confined {
    /// Another descriptor of the opened file.
    pub fn try_clone_file(&self) -> io::Result<File> {
        self.fd.try_clone().map(File::from)
    }

    /// The path that reopens exactly this file.
    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

impl ImageStore {
    /// [`ImageStore::import_rootfs_archive`] of an archive opened with [`open_beneath`].
    pub fn import_confined_archive(&self, archive: &Confined, tag: &str) -> Result<ImageRef> {
        let layer = self.import_layer_file(&archive.proc_path())?;
        let meta = CommitMeta {
            comment: Some(format!("imported from {}", archive.real_path.display())),
            ..CommitMeta::default()
        };
        self.commit(None, layer, &meta, tag)
    }

    /// [`ImageStore::import_oci_layout`] of a layout directory opened with [`open_beneath`]:
    /// its `oci-layout`, `index.json` and `blobs/sha256/*` are copied into the store's
    /// temporary directory, each opened beneath the layout without following symlinks, and
    /// imported from there.
    pub fn import_confined_layout(
        &self,
        layout: &Confined,
        tag_in: &str,
        tag: &str,
    ) -> Result<ImageRef> {
        let copy = TempDir(self.temp_path("layout"));
        let blobs = copy.0.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err("creating directory", &blobs))?;
        let shown = |rel: &str| layout.real_path.join(rel);
        let no_links = ResolveFlags::NO_SYMLINKS;
        for (name, required) in [("oci-layout", false), ("index.json", true)] {
            match open_at(&layout.fd, Path::new(name), false, no_links) {
                Ok(fd) => copy_fd(fd, &shown(name), &copy.0.join(name))?,
                Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(confined_err(&shown(name), &layout.real_path, e)),
            }
        }
        let dir = open_at(&layout.fd, Path::new("blobs/sha256"), true, no_links)
            .map_err(|e| confined_err(&shown("blobs/sha256"), &layout.real_path, e))?;
        let entries = rustix::fs::Dir::read_from(&dir)
            .map_err(|e| io_err("listing", &shown("blobs/sha256"))(e.into()))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("listing", &shown("blobs/sha256"))(e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let rel = format!("blobs/sha256/{name}");
            let fd = open_at(&dir, Path::new(name), false, no_links)
                .map_err(|e| confined_err(&shown(&rel), &layout.real_path, e))?;
            copy_fd(fd, &shown(&rel), &blobs.join(name))?;
        }
        self.import_oci_layout(&copy.0, tag_in, tag)
    }
}

fn copy_fd(fd: OwnedFd, shown: &Path, dst: &Path) -> Result<()> {
    let mut src = File::from(fd);
    let mut out = File::create(dst).map_err(io_err("creating", dst))?;
    io::copy(&mut src, &mut out).map_err(io_err("copying", shown))?;
    Ok(())
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn opens_stay_beneath_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("allowed");
        let outside = root.path().join("outside");
        fs::create_dir_all(allowed.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(allowed.join("sub/a.tar"), b"a").unwrap();
        fs::write(outside.join("secret.tar"), b"s").unwrap();
        symlink("sub/a.tar", allowed.join("inside.tar")).unwrap();
        symlink(outside.join("secret.tar"), allowed.join("absolute.tar")).unwrap();
        symlink("../outside/secret.tar", allowed.join("relative.tar")).unwrap();
        symlink("../outside", allowed.join("dir")).unwrap();

        let ok = open_beneath(&allowed, Path::new("inside.tar"), false).unwrap();
        assert_eq!(
            ok.real_path,
            fs::canonicalize(allowed.join("sub/a.tar")).unwrap()
        );
        assert!(open_beneath(&allowed, Path::new(""), true).is_ok());
        for rel in [
            "absolute.tar",
            "relative.tar",
            "dir/secret.tar",
            "../outside/secret.tar",
        ] {
            let err = open_beneath(&allowed, Path::new(rel), false)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("outside"), "{rel}: {err}");
        }
        // Directories and FIFOs are not archives (and a FIFO must not block).
        assert!(open_beneath(&allowed, Path::new("sub"), false).is_err());
        let fifo = allowed.join("fifo.tar");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_beneath(&allowed, Path::new("fifo.tar"), false).is_err());
    }
}
