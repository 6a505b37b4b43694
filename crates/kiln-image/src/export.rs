//! Disk-image export: an image's merged root file system as an ext4 file system in a raw,
//! qcow2, VMDK or VHD disk image.
//!
//! # How
//!
//! 1. The image's layers are applied ([`ImageStore::merged_rootfs`]) into a temporary
//!    directory under the store's `tmp/`, removed when the export ends, whether it succeeds
//!    or not.
//! 2. `mkfs.ext4 -d` (e2fsprogs) builds the file system from that directory without mounting
//!    anything: owners, modes (setuid/setgid/sticky), mtimes, symbolic and hard links, device
//!    nodes, FIFOs and extended attributes are kept. The file system is labelled `kiln-root`,
//!    has 4 KiB blocks and 256-byte inodes, and a fresh random UUID. The image is the bare
//!    file system (no partition table, no boot loader).
//! 3. For formats other than raw, `qemu-img convert` (qemu-utils) turns the raw image into
//!    the target format.
//!
//! The result is written under a temporary name beside the output path, synced, then renamed
//! over it, so the output path never holds a partial image.
//!
//! # Size
//!
//! The file system size comes from the tree, so exports stay small but usable:
//!
//! - *tree bytes*: every regular file's length rounded up to a 4 KiB block, 4 KiB (at least)
//!   per directory, 4 KiB per symbolic link whose target is 60 bytes or longer (shorter ones
//!   live in the inode), hard-linked files counted once, plus 256 bytes of inode table per
//!   inode — like `du --apparent-size` at 4 KiB blocks, and so independent of the file
//!   system the temporary directory is on (tmpfs, overlay, btrfs compression...);
//! - *size* = tree bytes + 20% + 64 MiB, rounded up to a whole MiB. The 20% covers ext4's
//!   own metadata (journal, group descriptors, bitmaps, directory index blocks, large
//!   extended attributes); the 64 MiB is free space for the booted system;
//! - *inodes* (`-N`) = the larger of (entries + 20% + 1024) and size / 16 KiB (ext4's usual
//!   ratio), so trees of many small files do not run out of inodes.
//!
//! Every format has this size as its virtual size (a whole number of MiB, which Azure needs
//! for VHDs).
//!
//! # Formats
//!
//! - [`DiskFormat::Raw`]: the ext4 image itself (a sparse file).
//! - [`DiskFormat::Qcow2`]: qcow2 (compat 1.1), qemu's defaults.
//! - [`DiskFormat::Vmdk`]: VMDK, `subformat=streamOptimized` — the single-file compressed
//!   flavour that AWS VM Import/Export and vSphere/OVA imports take.
//! - [`DiskFormat::Vhd`]: VHD (qemu's `vpc` driver), `subformat=fixed,force_size=on` — a
//!   fixed VHD whose virtual size is exactly the file system size, which Azure needs (it takes
//!   no dynamic VHDs, and only sizes that are whole MiB; without `force_size` qemu rounds the
//!   size to a CHS geometry). Hyper-V and AWS VM Import take fixed VHDs too. A fixed VHD is
//!   the raw data plus a 512-byte footer, so probing tools see a raw file: pass the format
//!   (`qemu-img info -f vpc`).

use crate::{io_err, Error, ImageRef, ImageStore, Result};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A disk image format of [`ImageStore::export_disk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// The ext4 file system image as is.
    Raw,
    /// qcow2.
    Qcow2,
    /// VMDK, stream-optimized.
    Vmdk,
    /// VHD, fixed.
    Vhd,
}

impl DiskFormat {
    /// All formats, in the order of [`DiskFormat::NAMES`].
    pub const ALL: [DiskFormat; 4] = [
        DiskFormat::Raw,
        DiskFormat::Qcow2,
        DiskFormat::Vmdk,
        DiskFormat::Vhd,
    ];

    /// The accepted names: `raw`, `qcow2`, `vmdk`, `vhd`.
    pub const NAMES: [&'static str; 4] = ["raw", "qcow2", "vmdk", "vhd"];

    /// Parses a format name (`raw`, `qcow2`, `vmdk`, `vhd`; ASCII case is ignored).
    pub fn parse(name: &str) -> Result<DiskFormat> {
        DiskFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown disk image format `{name}` (expected one of: {})",
                    DiskFormat::NAMES.join(", ")
                ))
            })
    }

    /// The name [`DiskFormat::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vhd => "vhd",
        }
    }

    /// The name of qemu's driver for the format (`raw`, `qcow2`, `vmdk`, `vpc`), as
    /// `qemu-img info` reports it.
    pub fn qemu_format(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vhd => "vpc",
        }
    }

    /// The `qemu-img convert -o` options used for the format.
    fn qemu_options(self) -> Option<&'static str> {
        match self {
            DiskFormat::Raw | DiskFormat::Qcow2 => None,
            DiskFormat::Vmdk => Some("subformat=streamOptimized"),
            DiskFormat::Vhd => Some("subformat=fixed,force_size=on"),
        }
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DiskFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<DiskFormat> {
        DiskFormat::parse(s)
    }
}

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;
const INODE_SIZE: u64 = 256;
/// Symbolic link targets shorter than this are stored in the inode ("fast" symlinks).
const FAST_SYMLINK_MAX: u64 = 60;

/// What the file system needs for a tree, per the rule of the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FsSize {
    /// Bytes, a multiple of 1 MiB.
    bytes: u64,
    /// Number of inodes.
    inodes: u64,
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Sums the tree: (data bytes as 4 KiB blocks plus inode table, inode count).
fn tree_usage(root: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let md = fs::symlink_metadata(&path).map_err(io_err("reading metadata of", &path))?;
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 && !seen.insert((md.dev(), md.ino())) {
            continue; // another name of an inode already counted
        }
        inodes += 1;
        bytes += INODE_SIZE;
        if ft.is_file() {
            bytes += round_up(md.len(), BLOCK);
        } else if ft.is_symlink() {
            if md.len() >= FAST_SYMLINK_MAX {
                bytes += BLOCK;
            }
        } else if ft.is_dir() {
            bytes += round_up(md.len(), BLOCK).max(BLOCK);
            for entry in fs::read_dir(&path).map_err(io_err("reading", &path))? {
                stack.push(entry.map_err(io_err("reading", &path))?.path());
            }
        }
    }
    Ok((bytes, inodes))
}

fn fs_size(tree_bytes: u64, tree_inodes: u64) -> FsSize {
    let bytes = round_up(tree_bytes + tree_bytes / 5 + 64 * MIB, MIB);
    let inodes = (tree_inodes + tree_inodes / 5 + 1024).max(bytes / 16384);
    FsSize { bytes, inodes }
}

/// A temporary name that tells the garbage collection which process owns it.
fn unique(what: &str) -> String {
    crate::store::unique_name(what)
}

/// A path removed (file or directory tree) when dropped, unless kept.
struct TempPath {
    path: PathBuf,
    keep: bool,
}

impl TempPath {
    fn new(path: PathBuf) -> TempPath {
        TempPath { path, keep: false }
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match fs::symlink_metadata(&self.path) {
            Ok(md) if md.is_dir() => {
                let _ = fs::remove_dir_all(&self.path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}

/// An external tool and the Debian package that has it.
struct Tool {
    name: &'static str,
    package: &'static str,
}

const MKFS_EXT4: Tool = Tool {
    name: "mkfs.ext4",
    package: "e2fsprogs",
};
const QEMU_IMG: Tool = Tool {
    name: "qemu-img",
    package: "qemu-utils",
};

impl Tool {
    /// The program: found on `PATH`, else in the sbin directories (which the `PATH` of
    /// ordinary users often lacks).
    fn program(&self) -> PathBuf {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(self.name).is_file()))
            .unwrap_or(false);
        if !on_path {
            for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
                let p = Path::new(dir).join(self.name);
                if p.is_file() {
                    return p;
                }
            }
        }
        PathBuf::from(self.name)
    }

    /// Runs the tool; fails naming it, its exit status and its stderr.
    fn run<I, S>(&self, args: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let shown = std::iter::once(self.name.to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        let out = Command::new(self.program())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Error::Invalid(format!(
                        "`{}` not found: install the Debian package {}",
                        self.name, self.package
                    ))
                } else {
                    Error::Invalid(format!("running `{shown}`: {e}"))
                }
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let text = if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                stderr.trim()
            };
            return Err(Error::Invalid(format!(
                "`{shown}` failed ({}): {text}",
                out.status
            )));
        }
        Ok(())
    }
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", path))
}

impl ImageStore {
    /// Writes `image` as a disk image in `format` at `out`: an ext4 file system (label
    /// `kiln-root`, no partition table) made from the image's merged root file system with
    /// `mkfs.ext4 -d`, converted with `qemu-img convert` unless `format` is raw. See the
    /// module documentation of `export` (in the source) for the size rule and the formats:
    /// the file system gets the tree's size + 20% + 64 MiB, in whole MiB; VMDKs are
    /// stream-optimized, VHDs fixed.
    ///
    /// `out` is replaced atomically (written beside it, then renamed). Needs `mkfs.ext4`
    /// (e2fsprogs) and, for qcow2/vmdk/vhd, `qemu-img` (qemu-utils); run as root so the
    /// merged tree keeps its owners.
    /// Writes `image` to `out` as a `docker save` archive (what `docker load` and `podman load`
    /// read) named `reference` (`name:tag`). Docker images cannot hold zstd layers, so skopeo
    /// first copies the image into a temporary layout with gzip layers, then writes the archive
    /// from that (with plain tar layers, as docker archives hold them).
    pub fn export_docker_archive(
        &self,
        image: &ImageRef,
        out: &Path,
        reference: &str,
    ) -> Result<()> {
        let exported = TempPath::new(self.tmp_dir().join(unique("docker-archive")));
        let gzipped = TempPath::new(self.tmp_dir().join(unique("docker-archive-gzip")));
        self.export_oci_layout(image, &exported.path, "export")?;
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--quiet",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
        ])
        .arg(format!("oci:{}:export", exported.path.display()))
        .arg(format!("oci:{}:export", gzipped.path.display()));
        crate::fetch::run(&mut cmd, "skopeo")?;
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet"])
            .arg(format!("oci:{}:export", gzipped.path.display()))
            .arg(format!("docker-archive:{}:{reference}", out.display()));
        crate::fetch::run(&mut cmd, "skopeo")
    }

    pub fn export_disk(&self, image: &ImageRef, format: DiskFormat, out: &Path) -> Result<()> {
        // Fail on a bad image before any work.
        self.manifest(image).map_err(|e| match e {
            Error::MissingBlob(_) => Error::Invalid(format!(
                "image `{}` ({}) is not in the image store: {e}",
                image.tag, image.digest
            )),
            e => e,
        })?;
        let file_name = out.file_name().ok_or_else(|| {
            Error::Invalid(format!("output path {} has no file name", out.display()))
        })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::Invalid(format!(
                "output directory {} does not exist",
                parent.display()
            )));
        }

        let tmp = self.root().join("tmp");
        let work = TempPath::new(tmp.join(unique("export")));
        fs::create_dir(&work.path).map_err(io_err("creating directory", &work.path))?;
        let rootfs = work.path.join("rootfs");
        self.merged_rootfs(image, &rootfs)?;
        let (tree_bytes, tree_inodes) = tree_usage(&rootfs)?;
        let size = fs_size(tree_bytes, tree_inodes);

        let mut staged = TempPath::new(parent.join(format!(
            "{}.{}",
            unique("disk"),
            file_name.to_string_lossy()
        )));
        // A raw export is made right beside the output; others go through a raw file in
        // the work directory.
        let raw = match format {
            DiskFormat::Raw => staged.path.clone(),
            _ => work.path.join("disk.raw"),
        };
        {
            let f = File::create(&raw).map_err(io_err("creating", &raw))?;
            f.set_len(size.bytes).map_err(io_err("sizing", &raw))?;
        }
        let mut mkfs_args: Vec<std::ffi::OsString> = vec![
            "-q".into(),
            "-F".into(),
            "-t".into(),
            "ext4".into(),
            "-L".into(),
            "kiln-root".into(),
            "-b".into(),
            BLOCK.to_string().into(),
            "-I".into(),
            INODE_SIZE.to_string().into(),
            "-N".into(),
            size.inodes.to_string().into(),
            "-d".into(),
        ];
        mkfs_args.push(rootfs.clone().into_os_string());
        mkfs_args.push(raw.clone().into_os_string());
        mkfs_args.push(format!("{}k", size.bytes / 1024).into());
        MKFS_EXT4.run(&mkfs_args)?;

        if format != DiskFormat::Raw {
            let mut args: Vec<std::ffi::OsString> = vec![
                "convert".into(),
                "-q".into(),
                "-f".into(),
                "raw".into(),
                "-O".into(),
                format.qemu_format().into(),
            ];
            if let Some(o) = format.qemu_options() {
                args.push("-o".into());
                args.push(o.into());
            }
            args.push(raw.clone().into_os_string());
            args.push(staged.path.clone().into_os_string());
            QEMU_IMG.run(&args)?;
        }
        sync_file(&staged.path)?;
        fs::rename(&staged.path, out).map_err(io_err("renaming into place", out))?;
        staged.keep = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rule() {
        // Empty tree: just the headroom.
        assert_eq!(
            fs_size(0, 0),
            FsSize {
                bytes: 64 * MIB,
                inodes: 4096
            }
        );
        // 100 MiB tree: 120 MiB + 64 MiB.
        assert_eq!(fs_size(100 * MIB, 10).bytes, 184 * MIB);
        // Rounded up to a MiB.
        assert_eq!(fs_size(5, 1).bytes, 65 * MIB);
        // Many small files: inodes from the count.
        assert_eq!(fs_size(MIB, 1_000_000).inodes, 1_201_024);
    }

    #[test]
    fn tool_errors() {
        let missing = Tool {
            name: "kiln-no-such-tool",
            package: "kiln-pkg",
        };
        let e = missing.run(["x"]).unwrap_err().to_string();
        assert!(
            e.contains("`kiln-no-such-tool` not found") && e.contains("Debian package kiln-pkg"),
            "{e}"
        );
        let failing = Tool {
            name: "sh",
            package: "dash",
        };
        let e = failing
            .run(["-c", "echo oops >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`sh -c echo oops >&2; exit 3` failed (exit status: 3): oops"),
            "{e}"
        );
        failing.run(["-c", "true"]).unwrap();
    }

    #[test]
    fn parse_formats() {
        for (name, f) in DiskFormat::NAMES.iter().zip(DiskFormat::ALL) {
            assert_eq!(DiskFormat::parse(name).unwrap(), f);
            assert_eq!(f.to_string(), *name);
        }
        assert_eq!(DiskFormat::parse("QCOW2").unwrap(), DiskFormat::Qcow2);
        let e = DiskFormat::parse("vdi").unwrap_err().to_string();
        assert!(
            e.contains("`vdi`") && e.contains("raw, qcow2, vmdk, vhd"),
            "{e}"
        );
    }
}
