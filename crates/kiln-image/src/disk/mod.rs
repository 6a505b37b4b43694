//! Disk image imports: a raw, qcow2, VMDK or VHD disk of an installed Linux system becomes a
//! one-layer image whose root file system is the disk's (ImportDiskImage, ImportVmImage). The
//! reverse of `export_disk`, and its disks round-trip.
//!
//! # How
//!
//! 1. **Probe** ([`probe`]): `qemu-img info` says what the file is, by content; images that
//!    would make qemu open other files (backing files, external data, multi-file VMDKs),
//!    encrypted ones and ISO installation media are refused.
//! 2. **Raw**: a raw disk or a fixed VHD is read as it is; the others are converted to a sparse
//!    raw file with `qemu-img convert` (source opened with `backing: null`).
//! 3. **Find the root** ([`partitions`]): the disk's MBR (logical partitions included) or GPT,
//!    or no table (a file system on the whole disk, as Kiln's exports are). Each volume's
//!    signature says what it holds; the ext2/3/4 one is the root, and with several, the one
//!    that has `/etc/os-release`. Others (xfs, btrfs, LVM, LUKS...) are named in the refusal.
//! 4. **Copy the tree** ([`extract`]): `debugfs` reads the file system from its offset on the
//!    disk, without mounting it; Kiln builds the tree from what it lists and dumps. What is kept
//!    and what is lost is listed there (extended attributes, notably, are lost).
//! 5. **Commit**: the tree is snapshotted into one zstd layer and committed under the tag.
//!
//! Everything happens in a work directory the caller gives (and removes): `out/` is where the
//! tools write (as `nobody` when Kiln is root, see [`tools`]), `rootfs/` the copied tree,
//! which the caller may read (the OS and packages) before removing it.

mod debugfs;
mod extract;
mod partitions;
mod probe;
mod tools;

pub use extract::Extracted;

use crate::confined::Confined;
use crate::store::CommitMeta;
use crate::{io_err, Compression, DiskFormat, Error, ImageRef, ImageStore, Result};
use partitions::{Filesystem, Partition, TableKind};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tools::{Tool, DISK_PATH};

/// Where a disk image is.
pub enum DiskInput<'a> {
    /// A file of Kiln's own (a download into the work directory); opened without following a
    /// symbolic link.
    File(&'a Path),
    /// A file opened beneath an operator's import directory
    /// ([`open_beneath`](crate::confined::open_beneath)).
    Confined(&'a Confined),
}

/// An imported disk.
#[derive(Debug)]
pub struct DiskImport {
    pub image: ImageRef,
    /// The disk image's format, by content.
    pub format: DiskFormat,
    /// Where the root file system was, for messages: `the whole disk (no partition table)`,
    /// `partition 1 (Linux filesystem) of its GPT partition table`.
    pub location: String,
    /// `ext2`, `ext3` or `ext4`.
    pub filesystem: String,
    /// The copied tree, in the work directory (for reading the OS and packages).
    pub root: PathBuf,
    pub extracted: Extracted,
}

/// Bytes read from the start of a file for the probe (an ISO's signature is at 32 KiB).
const HEAD_BYTES: usize = 36 * 1024;

impl ImageStore {
    /// Imports the disk image `input` as a one-layer image tagged `tag` (see the module
    /// documentation of `disk`). `work` is an empty directory of the caller's that only it can
    /// enter (mode 0700); the copied tree stays in it as [`DiskImport::root`]. `comment` goes
    /// into the image's history (where it came from). `cancel` is asked between steps and
    /// while tools run; when it answers true the import ends with [`Error::Cancelled`].
    pub fn import_disk(
        &self,
        input: DiskInput,
        work: &Path,
        tag: &str,
        comment: &str,
        cancel: &dyn Fn() -> bool,
    ) -> Result<DiskImport> {
        let check_cancel = || {
            if cancel() {
                Err(Error::Cancelled)
            } else {
                Ok(())
            }
        };
        let out = work.join("out");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&out)
            .map_err(io_err("creating directory", &out))?;
        tools::give_to_tools(&out)?;
        let out_dir = File::open(&out).map_err(io_err("opening", &out))?;
        let source = match input {
            DiskInput::File(path) => open_own(path)?,
            DiskInput::Confined(c) => c
                .try_clone_file()
                .map_err(io_err("reading", &c.real_path))?,
        };
        let source = readable_by_tools(source, &out)?;
        let size = source.metadata().map_err(io_err("reading", &out))?.len();

        let probe = probe_disk(&source, size, &out_dir, cancel)?;
        check_cancel()?;
        let (raw, raw_size) = if probe.format == DiskFormat::Raw || probe.fixed_vhd {
            let footer = if probe.fixed_vhd { 512 } else { 0 };
            (source, size.saturating_sub(footer))
        } else {
            convert_to_raw(&source, probe.format, &out, &out_dir, cancel)?
        };
        check_cancel()?;

        let read_at = |offset: u64, buf: &mut [u8]| raw.read_exact_at(buf, offset);
        let layout = partitions::read_layout(&read_at, raw_size).map_err(Error::Invalid)?;
        let mut found: Vec<(&Partition, Filesystem)> = Vec::new();
        for p in &layout.partitions {
            let len = (partitions::SIGNATURE_BYTES as u64).min(p.size) as usize;
            let mut head = vec![0u8; len];
            read_at(p.start, &mut head).map_err(io_err("reading", &out))?;
            found.push((p, partitions::identify(&head)));
        }
        let debugfs_on = |p: &Partition, commands: &[u8]| {
            let device = match p.start {
                0 => DISK_PATH.to_string(),
                start => format!("{DISK_PATH}?offset={start}"),
            };
            Tool {
                name: "debugfs",
                package: "e2fsprogs",
                // Catastrophic mode: read-only, and the bitmaps (which nothing here needs) are
                // not read.
                args: vec!["-c".into(), "-f".into(), "-".into(), device.into()],
                disk: Some(raw.as_fd()),
                cwd: Some(out_dir.as_fd()),
                stdin: commands.to_vec(),
                limits: None,
            }
            .run(cancel)
        };
        let (root_volume, filesystem) = choose_root(layout.table, &found, &debugfs_on)?;
        check_cancel()?;
        let root = work.join("rootfs");
        let debugfs = |commands: &[u8]| debugfs_on(root_volume, commands);
        let extracted = extract::extract(&debugfs, &out, &out_dir, &root, cancel)?;
        check_cancel()?;

        let layer = self.snapshot_layer(&root, Compression::Zstd)?;
        let meta = CommitMeta {
            comment: Some(comment.to_string()),
            ..CommitMeta::default()
        };
        let image = self.commit(None, layer, &meta, tag)?;
        Ok(DiskImport {
            image,
            format: probe.format,
            location: location(layout.table, root_volume),
            filesystem: filesystem.to_string(),
            root,
            extracted,
        })
    }
}

/// Opens a file of Kiln's own for reading, refusing a symbolic link or anything but a regular
/// file.
fn open_own(path: &Path) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("opening", path))?;
    let md = file.metadata().map_err(io_err("reading", path))?;
    if !md.is_file() {
        return Err(Error::Invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// The disk as the tools (running as `nobody`) can open it by `/dev/fd/3`, which reopens the
/// file and so checks its permissions: as it is when others may read it, else a copy in `out/`.
fn readable_by_tools(source: File, out: &Path) -> Result<File> {
    let md = source.metadata().map_err(io_err("reading", out))?;
    if !tools::privileged() || md.mode() & 0o004 != 0 || md.uid() == tools::NOBODY {
        return Ok(source);
    }
    let copy = out.join("source");
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&copy)
        .map_err(io_err("creating", &copy))?;
    std::io::copy(&mut (&source).take(md.len()), &mut target)
        .map_err(io_err("copying to", &copy))?;
    target
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io_err("writing", &copy))?;
    drop(target);
    open_own(&copy)
}

fn probe_disk(
    source: &File,
    size: u64,
    out_dir: &File,
    cancel: &dyn Fn() -> bool,
) -> Result<probe::Probe> {
    let mut head = vec![0u8; (HEAD_BYTES as u64).min(size) as usize];
    source
        .read_exact_at(&mut head, 0)
        .map_err(|e| Error::Invalid(format!("reading the disk image: {e}")))?;
    let tail_len = 512.min(size);
    let mut tail = vec![0u8; tail_len as usize];
    source
        .read_exact_at(&mut tail, size - tail_len)
        .map_err(|e| Error::Invalid(format!("reading the disk image: {e}")))?;
    let info = Tool {
        name: "qemu-img",
        package: "qemu-utils",
        args: ["info", "--output=json", "-U", DISK_PATH]
            .map(OsString::from)
            .to_vec(),
        disk: Some(source.as_fd()),
        cwd: Some(out_dir.as_fd()),
        stdin: Vec::new(),
        limits: Some(tools::PROBE_LIMITS),
    }
    .run(cancel)?;
    let info: serde_json::Value = serde_json::from_slice(&info.stdout)
        .map_err(|e| Error::Invalid(format!("reading what qemu-img info says: {e}")))?;
    probe::judge(&info, DISK_PATH, &head, &tail).map_err(Error::Invalid)
}

/// Converts the disk to a sparse raw file `out/disk.raw`; answers it opened, and its size.
fn convert_to_raw(
    source: &File,
    format: DiskFormat,
    out: &Path,
    out_dir: &File,
    cancel: &dyn Fn() -> bool,
) -> Result<(File, u64)> {
    let image = serde_json::json!({
        "driver": format.qemu_format(),
        "backing": null,
        "file": {"driver": "file", "filename": DISK_PATH},
    });
    Tool {
        name: "qemu-img",
        package: "qemu-utils",
        args: vec![
            "convert".into(),
            "-q".into(),
            "-U".into(),
            "-O".into(),
            "raw".into(),
            format!("json:{image}").into(),
            "disk.raw".into(),
        ],
        disk: Some(source.as_fd()),
        cwd: Some(out_dir.as_fd()),
        stdin: Vec::new(),
        limits: None,
    }
    .run(cancel)?;
    let raw = open_own(&out.join("disk.raw"))?;
    let size = raw
        .metadata()
        .map_err(io_err("reading", out.join("disk.raw")))?
        .len();
    Ok((raw, size))
}

/// The volume that holds the root file system: the only ext2/3/4 one, or among several the
/// first with `/etc/os-release`.
fn choose_root<'p>(
    table: TableKind,
    found: &[(&'p Partition, Filesystem)],
    debugfs_on: &dyn Fn(&Partition, &[u8]) -> Result<tools::Output>,
) -> Result<(&'p Partition, &'static str)> {
    let ext: Vec<(&Partition, &'static str)> = found
        .iter()
        .filter_map(|(p, fs)| match fs {
            Filesystem::Ext(version) => Some((*p, *version)),
            _ => None,
        })
        .collect();
    match ext.as_slice() {
        [] => {
            let seen: Vec<String> = found
                .iter()
                .map(|(p, fs)| {
                    let what = match fs {
                        Filesystem::Other(name) => name.to_string(),
                        _ => "no file system Kiln recognizes".to_string(),
                    };
                    format!("{}: {what}", location(table, p))
                })
                .collect();
            Err(Error::Invalid(format!(
                "it holds no ext2, ext3 or ext4 file system ({}); Kiln imports Linux disks whose root file system is ext2, ext3 or ext4",
                seen.join("; ")
            )))
        }
        [(p, version)] => Ok((p, version)),
        several => {
            for (p, version) in several {
                let out = debugfs_on(p, b"stat /etc/os-release\n")?;
                if String::from_utf8_lossy(&out.stdout).contains("\nInode: ") {
                    return Ok((p, version));
                }
            }
            let numbers: Vec<String> = several.iter().map(|(p, _)| p.number.to_string()).collect();
            Err(Error::Invalid(format!(
                "partitions {} hold ext file systems and none has /etc/os-release, so Kiln cannot tell which is the root",
                numbers.join(", ")
            )))
        }
    }
}

fn location(table: TableKind, p: &Partition) -> String {
    match table {
        TableKind::None => "the whole disk (no partition table)".to_string(),
        _ => format!(
            "partition {} ({}) of its {} partition table",
            p.number,
            p.type_name,
            table.name()
        ),
    }
}
