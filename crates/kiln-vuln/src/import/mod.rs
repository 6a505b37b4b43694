//! Readers that turn vulnerability data files into [`Advisory`]s, one at a time, into a
//! [`Sink`] (so that a 100,000-record `all.zip` is never held in memory as JSON at once).
//!
//! What [`import_path`] reads, told apart by content, not by name:
//! - an OSV record (a JSON object with `id` and `modified`); a directory, recursively (its
//!   `.json` and `.zip` files, so an osv-scanner offline cache such as
//!   `<dir>/osv-scanner/Debian/all.zip` or `osv-scalibr/...` works as it is); a `.zip` (each
//!   `.json` entry one record). Source `osv`, [`Mode::Incremental`].
//! - the Debian security tracker JSON (an object of packages, each an object keyed by CVE
//!   ids): source `debian-tracker`, [`Mode::Snapshot`].
//! - an Alpine secdb JSON file (an object with `distroversion` and `packages`): source
//!   `alpine-secdb:<distroversion>/<reponame>`, [`Mode::Snapshot`]. secdb's YAML form is
//!   refused (its JSON twin holds the same data).
//!
//! Hostile input: every file and zip entry has a size cap ([`Limits`]), zips also a cap on what
//! they expand to in total and on each entry's compression ratio (zip bombs); entry names are
//! only ever printed, never used as paths; symlinks inside a directory are not followed.
//! Errors name the file, the zip entry and serde's line and column.

mod alpine;
mod debian;
mod osv;
mod sniff;
mod time;

use crate::advisory::Advisory;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use alpine::read_secdb;
pub use debian::read_tracker;
pub use osv::{parse_osv_record, read_osv_zip};

/// A failed import: the file, the zip entry when there is one, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), entry.as_ref().map(|e| format!(" (zip entry {e:?})")).unwrap_or_default())]
pub struct ImportError {
    pub path: PathBuf,
    pub entry: Option<String>,
    pub message: String,
}

impl ImportError {
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        ImportError {
            path: path.to_path_buf(),
            entry: None,
            message: message.into(),
        }
    }

    pub fn in_entry(path: &Path, entry: &str, message: impl Into<String>) -> Self {
        ImportError {
            path: path.to_path_buf(),
            entry: Some(entry.to_string()),
            message: message.into(),
        }
    }
}

/// Size limits against hostile input (the defaults are generous for the real feeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One JSON record: an OSV file or zip entry, an Alpine secdb file.
    pub max_record_bytes: u64,
    /// The Debian security tracker file (about 100 MiB in 2025).
    pub max_tracker_bytes: u64,
    /// Everything one zip expands to.
    pub max_zip_total_bytes: u64,
    /// An entry larger than [`Limits::ratio_checked_above`] may expand at most this many times
    /// its compressed size (OSV JSON compresses 5 to 20 times).
    pub max_zip_ratio: u64,
    pub ratio_checked_above: u64,
    /// Entries of one zip.
    pub max_zip_entries: usize,
}

pub const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 * MIB,
            max_tracker_bytes: 2048 * MIB,
            max_zip_total_bytes: 16 * 1024 * MIB,
            max_zip_ratio: 200,
            ratio_checked_above: MIB,
            max_zip_entries: 2_000_000,
        }
    }
}

/// How a source's records replace what the store holds of it (`incremental`, `snapshot` in an
/// upload's lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Record by record: a newer `modified` replaces, withdrawn records are removed.
    Incremental,
    /// The batch is everything the source holds: records it does not list are removed.
    Snapshot,
}

/// One file (or zip) read: where its records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `osv`, `debian-tracker`, `alpine-secdb:v3.20/main`.
    pub source: String,
    pub mode: Mode,
    pub path: PathBuf,
}

/// Where the records go. `end` is called only after the whole batch read without an error;
/// a caller that stores records keeps a failed batch's records out (one transaction).
pub trait Sink {
    fn begin(&mut self, batch: &Batch) -> Result<(), ImportError>;
    fn advisory(&mut self, batch: &Batch, advisory: Advisory) -> Result<(), ImportError>;
    fn end(&mut self, batch: &Batch) -> Result<(), ImportError>;
}

/// A sink that keeps everything (tests, small imports).
#[derive(Debug, Default)]
pub struct Collect {
    pub batches: Vec<(Batch, Vec<Advisory>)>,
}

impl Collect {
    pub fn advisories(&self) -> impl Iterator<Item = &Advisory> {
        self.batches.iter().flat_map(|(_, a)| a.iter())
    }
}

impl Sink for Collect {
    fn begin(&mut self, batch: &Batch) -> Result<(), ImportError> {
        self.batches.push((batch.clone(), Vec::new()));
        Ok(())
    }
    fn advisory(&mut self, _: &Batch, advisory: Advisory) -> Result<(), ImportError> {
        if let Some((_, list)) = self.batches.last_mut() {
            list.push(advisory);
        }
        Ok(())
    }
    fn end(&mut self, _: &Batch) -> Result<(), ImportError> {
        Ok(())
    }
}

/// What an import read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub batches: usize,
    pub records: u64,
    pub withdrawn: u64,
    /// Files of a directory that were not read (neither `.json` nor `.zip`, or symlinks).
    pub skipped: Vec<PathBuf>,
}

/// Counts what passes through to another sink.
struct Counting<'a> {
    inner: &'a mut dyn Sink,
    summary: &'a mut Summary,
}

impl Sink for Counting<'_> {
    fn begin(&mut self, batch: &Batch) -> Result<(), ImportError> {
        self.inner.begin(batch)
    }
    fn advisory(&mut self, batch: &Batch, advisory: Advisory) -> Result<(), ImportError> {
        self.summary.records += 1;
        if advisory.withdrawn.is_some() {
            self.summary.withdrawn += 1;
        }
        self.inner.advisory(batch, advisory)
    }
    fn end(&mut self, batch: &Batch) -> Result<(), ImportError> {
        self.summary.batches += 1;
        self.inner.end(batch)
    }
}

/// Reads a file or a directory (see the module's documentation).
pub fn import_path(
    path: &Path,
    limits: &Limits,
    sink: &mut dyn Sink,
) -> Result<Summary, ImportError> {
    let mut summary = Summary::default();
    let metadata = std::fs::metadata(path).map_err(|e| ImportError::new(path, e.to_string()))?;
    if metadata.is_dir() {
        let mut skipped = Vec::new();
        let mut counting = Counting {
            inner: sink,
            summary: &mut summary,
        };
        walk(path, limits, &mut counting, &mut skipped)?;
        summary.skipped = skipped;
    } else {
        let mut counting = Counting {
            inner: sink,
            summary: &mut summary,
        };
        import_file(path, limits, &mut counting)?;
    }
    Ok(summary)
}

fn walk(
    dir: &Path,
    limits: &Limits,
    sink: &mut dyn Sink,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), ImportError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ImportError::new(dir, e.to_string()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| ImportError::new(dir, e.to_string()))?;
    entries.sort();
    for path in entries {
        let kind = std::fs::symlink_metadata(&path)
            .map_err(|e| ImportError::new(&path, e.to_string()))?
            .file_type();
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if kind.is_dir() {
            walk(&path, limits, sink, skipped)?;
        } else if kind.is_file() && (extension == "json" || extension == "zip") {
            import_file(&path, limits, sink)?;
        } else {
            skipped.push(path);
        }
    }
    Ok(())
}

/// Reads one file: a zip by its name, JSON by its content.
pub fn import_file(path: &Path, limits: &Limits, sink: &mut dyn Sink) -> Result<(), ImportError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match extension {
        "zip" => return read_osv_zip(path, limits, sink),
        "yaml" | "yml" => {
            return Err(ImportError::new(
                path,
                "YAML is not read: import the JSON form of the file (secdb publishes both)",
            ))
        }
        _ => {}
    }
    let mut file = File::open(path).map_err(|e| ImportError::new(path, e.to_string()))?;
    let size = file
        .metadata()
        .map_err(|e| ImportError::new(path, e.to_string()))?
        .len();
    let mut prefix = Vec::with_capacity(64 * 1024);
    (&mut file)
        .take(64 * 1024)
        .read_to_end(&mut prefix)
        .map_err(|e| ImportError::new(path, e.to_string()))?;
    if sniff::is_debian_tracker(&prefix) {
        if size > limits.max_tracker_bytes {
            return Err(ImportError::new(
                path,
                format!(
                    "{size} bytes is more than the {} bytes a Debian tracker file may have",
                    limits.max_tracker_bytes
                ),
            ));
        }
        let file = File::open(path).map_err(|e| ImportError::new(path, e.to_string()))?;
        let reader = std::io::BufReader::new(file.take(limits.max_tracker_bytes));
        return read_tracker(path, reader, modified_of(path), sink);
    }
    if size > limits.max_record_bytes {
        return Err(ImportError::new(
            path,
            format!(
                "{size} bytes is more than the {} bytes a JSON record may have",
                limits.max_record_bytes
            ),
        ));
    }
    let mut bytes = prefix;
    file.take(limits.max_record_bytes + 1 - bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| ImportError::new(path, e.to_string()))?;
    if bytes.len() as u64 > limits.max_record_bytes {
        return Err(ImportError::new(
            path,
            "the file grew past the size limit while read",
        ));
    }
    match sniff::kind_of(&bytes).map_err(|m| ImportError::new(path, m))? {
        sniff::Kind::Osv => {
            let batch = Batch {
                source: "osv".to_string(),
                mode: Mode::Incremental,
                path: path.to_path_buf(),
            };
            let advisory = parse_osv_record(&bytes).map_err(|m| ImportError::new(path, m))?;
            sink.begin(&batch)?;
            sink.advisory(&batch, advisory)?;
            sink.end(&batch)
        }
        sniff::Kind::AlpineSecdb => read_secdb(path, &bytes, modified_of(path), sink),
        sniff::Kind::DebianTracker => read_tracker(path, bytes.as_slice(), modified_of(path), sink),
    }
}

/// A file's modification time in milliseconds (the `modified` of records made from snapshot
/// feeds, which carry none of their own).
fn modified_of(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}
