//! Garbage collection and the store's usage report.
//!
//! Reachability is the only rule for blobs and unpacked layers: one is kept while a tag in
//! `index.json` or a live pin ([`crate::Pin`]) reaches it — a tag or an `image` pin reaches
//! the manifest, its configuration, its layer blobs and the unpacked directories of its
//! diff_ids; a `blob` pin reaches one blob. Everything else goes at once, whatever its age.
//!
//! Temporary entries (`tmp/*`, `unpacked/.tmp-*`) are named `.tmp-<what>-<pid>-<n>-<nanos>`:
//! one goes when the process that made it is gone (a crash in the middle of writing a blob or
//! unpacking a layer leaves only these). An entry whose name carries no process id goes after
//! the caller's grace period.
//!
//! Crash safety: a deletion removes the tag first and the blobs in a later collection, under
//! the index lock; the collection is idempotent, so a crash between the two (or in the middle
//! of a collection) leaves unreachable objects the next collection (at the latest the one
//! `kiln worker` runs when it starts) removes.
//!
//! [`ImageStore::usage`] computes the same reachability without changing anything: bytes per
//! tag, split into unique (only this tag reaches them: freed if it alone were deleted) and
//! shared, the bytes on disk, and what a collection would free now. Bytes are the apparent
//! sizes of regular files (each inode counted once), not directory entries or block rounding.

use crate::pin::Pinned;
use crate::store::{digest_hex, FileLock};
use crate::{io_err, ImageRef, ImageStore, Result};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What [`ImageStore::gc`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Digests of the removed blobs.
    pub blobs: Vec<String>,
    /// Bytes freed by removing blobs.
    pub bytes: u64,
    /// diff_ids whose unpacked directories were removed.
    pub unpacked: Vec<String>,
    /// Bytes freed by removing unpacked directories.
    pub unpacked_bytes: u64,
    /// Temporary files and directories removed (their owners are gone).
    pub temporary: usize,
    /// Pin files of dead processes removed.
    pub stale_pins: usize,
}

/// One tag's share of the store (see [`ImageStore::usage`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageUsage {
    pub tag: String,
    /// The manifest digest.
    pub digest: String,
    /// Every byte the image needs: `unique_bytes + shared_bytes`.
    pub bytes: u64,
    /// Bytes no other tag reaches: freed if this tag alone were deleted (and nothing pins them).
    pub unique_bytes: u64,
    /// Bytes other tags reach too (a common parent's layers).
    pub shared_bytes: u64,
}

/// The store's usage (see [`ImageStore::usage`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreUsage {
    pub images: Vec<ImageUsage>,
    /// Bytes on disk: `blob_bytes + unpacked_bytes + temporary_bytes`.
    pub total_bytes: u64,
    /// `blobs/sha256/*`.
    pub blob_bytes: u64,
    /// `unpacked/*` (layers unpacked as overlay lower directories).
    pub unpacked_bytes: u64,
    /// `tmp/*` and `unpacked/.tmp-*`.
    pub temporary_bytes: u64,
    /// Bytes only pins reach (running builds' parents and fresh layers, imports, exports).
    pub pinned_bytes: u64,
    /// What a collection would free now: unreachable blobs and unpacked layers, and temporary
    /// entries whose owners are gone.
    pub reclaimable_bytes: u64,
}

/// An object of the store: a blob or an unpacked layer directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Object {
    Blob(String),
    /// The diff_id's hex.
    Unpacked(String),
}

/// `pid` still runs (or is ours). A pid of another user's process answers EPERM: alive.
fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The process id in a temporary name `.tmp-<what>-<pid>-<n>-<nanos>[.suffix]`.
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(".tmp-")?;
    let mut fields = rest.rsplitn(4, '-');
    let nanos = fields.next()?;
    let nanos = nanos.split('.').next()?;
    let counter = fields.next()?;
    let pid = fields.next()?;
    fields.next()?;
    if nanos.is_empty() || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// A temporary entry that may go: its owner is gone, or (no owner in its name) it is older
/// than `grace`.
fn stale_temporary(name: &str, md: &fs::Metadata, grace: Duration) -> bool {
    match owner_pid(name) {
        Some(pid) => !alive(pid),
        None => md
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age >= grace),
    }
}

/// Apparent bytes of the regular files under `path` (itself included), each inode once.
fn tree_bytes(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(md) = fs::symlink_metadata(path) else {
        return 0;
    };
    if md.is_dir() {
        let Ok(entries) = fs::read_dir(path) else {
            return 0;
        };
        entries.flatten().map(|e| tree_bytes(&e.path(), seen)).sum()
    } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
        md.len()
    } else {
        0
    }
}

fn remove_any(path: &Path, md: &fs::Metadata) -> Result<()> {
    let r = if md.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

impl ImageStore {
    /// The objects an image reaches. A missing manifest or configuration (a store damaged
    /// outside Kiln) reaches what could be read.
    fn reach(&self, manifest_digest: &str) -> BTreeSet<Object> {
        let mut out = BTreeSet::from([Object::Blob(manifest_digest.to_string())]);
        let image = ImageRef {
            digest: manifest_digest.to_string(),
            tag: String::new(),
        };
        let Ok(manifest) = self.manifest(&image) else {
            return out;
        };
        out.insert(Object::Blob(manifest.config().digest().to_string()));
        for l in manifest.layers() {
            out.insert(Object::Blob(l.digest().to_string()));
        }
        if let Ok(config) = self.config(&image) {
            for d in config.rootfs().diff_ids() {
                if let Ok(hex) = digest_hex(d) {
                    out.insert(Object::Unpacked(hex.to_string()));
                }
            }
        }
        out
    }

    /// What live pins reach; with `remove_stale` (under the index lock) dead pins are removed.
    fn pinned(&self, remove_stale: bool) -> Result<(BTreeSet<Object>, usize)> {
        let scan = self.scan_pins(remove_stale)?;
        let mut out = BTreeSet::new();
        for p in scan.live {
            match p {
                Pinned::Image(d) => out.extend(self.reach(&d)),
                Pinned::Blob(d) => {
                    out.insert(Object::Blob(d));
                }
            }
        }
        Ok((out, scan.stale.len()))
    }

    /// Removes every blob and unpacked layer that no tag and no live pin reaches, at once (see
    /// the module documentation), the pin files of dead processes, and temporary entries whose
    /// owner process is gone. `tmp_grace` applies only to temporary entries whose name carries
    /// no process id (none of Kiln's own); pass `Duration::ZERO` otherwise. Safe while builds
    /// run, in this process or others on the same store: what they use is pinned.
    pub fn gc(&self, tmp_grace: Duration) -> Result<GcReport> {
        let _lock = FileLock::acquire(self.lock_path())?;
        let mut keep = BTreeSet::new();
        for image in self.images()? {
            keep.extend(self.reach(&image.digest));
        }
        let (pinned, stale_pins) = self.pinned(true)?;
        keep.extend(pinned);
        let mut report = GcReport {
            stale_pins,
            ..GcReport::default()
        };
        // Temporary entries (in every directory) go once their writer is gone.
        let mut temporary = |name: &str, path: &Path, md: &fs::Metadata| -> Result<bool> {
            if !name.starts_with(".tmp-") {
                return Ok(false);
            }
            if stale_temporary(name, md, tmp_grace) {
                remove_any(path, md)?;
                report.temporary += 1;
            }
            Ok(true)
        };
        let mut blobs_gone = Vec::new();
        for (name, path, md) in entries(&self.root().join("blobs/sha256"))? {
            if temporary(&name, &path, &md)? {
                continue;
            }
            let digest = format!("sha256:{name}");
            if keep.contains(&Object::Blob(digest.clone())) {
                continue;
            }
            remove_any(&path, &md)?;
            blobs_gone.push((digest, md.len()));
        }
        let mut unpacked_gone = Vec::new();
        for (name, path, md) in entries(&self.root().join("unpacked"))? {
            if temporary(&name, &path, &md)? || keep.contains(&Object::Unpacked(name.clone())) {
                continue;
            }
            let bytes = tree_bytes(&path, &mut HashSet::new());
            remove_any(&path, &md)?;
            unpacked_gone.push((format!("sha256:{name}"), bytes));
        }
        for (name, path, md) in entries(self.tmp_dir())? {
            // Everything in tmp/ is temporary, whatever its name.
            if stale_temporary(&name, &md, tmp_grace) {
                remove_any(&path, &md)?;
                report.temporary += 1;
            }
        }
        for (digest, bytes) in blobs_gone {
            report.bytes += bytes;
            report.blobs.push(digest);
        }
        for (digest, bytes) in unpacked_gone {
            report.unpacked_bytes += bytes;
            report.unpacked.push(digest);
        }
        Ok(report)
    }

    /// The store's usage, read without the index lock and without changing anything (it can
    /// run beside a server on the same store). See the module documentation.
    pub fn usage(&self) -> Result<StoreUsage> {
        let mut usage = StoreUsage::default();
        let mut seen = HashSet::new();
        // Every object on disk and its bytes; temporary entries apart.
        let mut on_disk: BTreeMap<Object, u64> = BTreeMap::new();
        let mut stale_tmp = 0u64;
        let blobs = self.root().join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_err("reading", &blobs))? {
            let entry = entry.map_err(io_err("reading", &blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = tree_bytes(&entry.path(), &mut seen);
            usage.blob_bytes += bytes;
            if name.starts_with(".tmp-") {
                usage.blob_bytes -= bytes;
                usage.temporary_bytes += bytes;
                if let Ok(md) = entry.metadata() {
                    if stale_temporary(&name, &md, Duration::ZERO) {
                        stale_tmp += bytes;
                    }
                }
                continue;
            }
            on_disk.insert(Object::Blob(format!("sha256:{name}")), bytes);
        }
        let unpacked = self.root().join("unpacked");
        for entry in fs::read_dir(&unpacked).map_err(io_err("reading", &unpacked))? {
            let entry = entry.map_err(io_err("reading", &unpacked))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = tree_bytes(&entry.path(), &mut seen);
            if name.starts_with(".tmp-") {
                usage.temporary_bytes += bytes;
                if let Ok(md) = entry.metadata() {
                    if stale_temporary(&name, &md, Duration::ZERO) {
                        stale_tmp += bytes;
                    }
                }
                continue;
            }
            usage.unpacked_bytes += bytes;
            on_disk.insert(Object::Unpacked(name), bytes);
        }
        let tmp = self.tmp_dir().to_path_buf();
        for entry in fs::read_dir(&tmp).map_err(io_err("reading", &tmp))? {
            let entry = entry.map_err(io_err("reading", &tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = tree_bytes(&entry.path(), &mut seen);
            usage.temporary_bytes += bytes;
            if let Ok(md) = entry.metadata() {
                if stale_temporary(&name, &md, Duration::ZERO) {
                    stale_tmp += bytes;
                }
            }
        }
        usage.total_bytes = usage.blob_bytes + usage.unpacked_bytes + usage.temporary_bytes;

        let images = self.images()?;
        let reached: Vec<BTreeSet<Object>> = images.iter().map(|i| self.reach(&i.digest)).collect();
        let mut tags_reaching: BTreeMap<&Object, usize> = BTreeMap::new();
        for set in &reached {
            for o in set {
                *tags_reaching.entry(o).or_default() += 1;
            }
        }
        for (image, set) in images.iter().zip(&reached) {
            let mut u = ImageUsage {
                tag: image.tag.clone(),
                digest: image.digest.clone(),
                bytes: 0,
                unique_bytes: 0,
                shared_bytes: 0,
            };
            for o in set {
                let bytes = on_disk.get(o).copied().unwrap_or(0);
                match tags_reaching.get(o) {
                    Some(1) => u.unique_bytes += bytes,
                    _ => u.shared_bytes += bytes,
                }
            }
            u.bytes = u.unique_bytes + u.shared_bytes;
            usage.images.push(u);
        }
        let (pinned, _) = self.pinned(false)?;
        for (o, bytes) in &on_disk {
            if tags_reaching.contains_key(o) {
                continue;
            }
            if pinned.contains(o) {
                usage.pinned_bytes += bytes;
            } else {
                usage.reclaimable_bytes += bytes;
            }
        }
        usage.reclaimable_bytes += stale_tmp;
        Ok(usage)
    }
}

/// The entries of `dir` with their names and metadata; an entry that vanished between the
/// listing and its metadata (a temporary entry its owner renamed or removed) is left out.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, fs::Metadata)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("reading", dir))? {
        let entry = entry.map_err(io_err("reading", dir))?;
        match entry.metadata() {
            Ok(md) => out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
                md,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("reading", entry.path())(e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_carry_their_owner() {
        assert_eq!(owner_pid(".tmp-layer-123-4-5678"), Some(123));
        assert_eq!(owner_pid(".tmp-docker-archive-gzip-123-4-5678"), Some(123));
        assert_eq!(owner_pid(".tmp-debian-77-0-99.tar.zst"), Some(77));
        assert_eq!(owner_pid(".tmp-x-1"), None);
        assert_eq!(owner_pid("other"), None);
        assert!(alive(std::process::id() as i32));
    }
}
