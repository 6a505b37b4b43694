//! Pins: what a running operation uses that no tag names (yet), so garbage collection keeps it.
//!
//! The collection keeps what is reachable from a tag in `index.json` **or from a pin**. A pin
//! is a small file `pins/<unique name>` under the store root, listing one entry a line:
//!
//! - `image sha256:<manifest>` — a whole image: its manifest, configuration, layer blobs and
//!   unpacked layers (a build's parent, whose layers are mounted as lower directories even if
//!   the parent's tag is deleted while the build runs; an image being exported or unpacked);
//! - `blob sha256:<digest>` — one blob (a layer snapshotted but not committed yet, the blobs
//!   of an OCI layout being imported).
//!
//! Pins are files rather than in-memory sets so that every process working on the same store
//! (several `kiln worker`s on one data directory, `kiln store usage`) sees them. The owner holds
//! an exclusive `flock` on its pin file for as long as the [`Pin`] lives; dropping it removes
//! the file. A process that dies loses its locks, so a pin file whose lock can be taken is
//! stale: the collection removes it (crash safety without timeouts).
//!
//! Pins are made and extended only under the index lock, and always **before** the blob they
//! name is renamed into `blobs/`; the collection reads pins and removes blobs under that same
//! lock. So a collection either ran entirely before the blob appeared or sees its pin.

use crate::store::{digest_hex, unique_name, FileLock};
use crate::{io_err, ImageRef, ImageStore, Result};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

/// One entry of a pin file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pinned {
    /// A manifest and everything it names.
    Image(String),
    /// One blob.
    Blob(String),
}

impl Pinned {
    fn line(&self) -> String {
        match self {
            Pinned::Image(d) => format!("image {d}\n"),
            Pinned::Blob(d) => format!("blob {d}\n"),
        }
    }

    fn parse(line: &str) -> Option<Pinned> {
        let (kind, digest) = line.split_once(' ')?;
        digest_hex(digest).ok()?;
        match kind {
            "image" => Some(Pinned::Image(digest.to_string())),
            "blob" => Some(Pinned::Blob(digest.to_string())),
            _ => None,
        }
    }
}

/// A pin held by this process: what it names survives garbage collection until it is dropped
/// (see the module documentation).
pub struct Pin {
    path: PathBuf,
    // Holds the flock that tells collectors the pin is alive.
    _file: File,
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin").field("path", &self.path).finish()
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Unlink before the descriptor (and its lock) goes, so no collector takes the lock of
        // a file that still names something.
        let _ = fs::remove_file(&self.path);
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(true)` when taken.
fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// The pins found in a store, with the stale ones.
pub(crate) struct PinScan {
    pub live: Vec<Pinned>,
    pub stale: Vec<PathBuf>,
}

impl ImageStore {
    pub(crate) fn pins_dir(&self) -> PathBuf {
        self.root().join("pins")
    }

    /// A new pin naming `entries`; the caller holds the index lock.
    pub(crate) fn pin_locked(&self, entries: &[Pinned]) -> Result<Pin> {
        let dir = self.pins_dir();
        fs::create_dir_all(&dir).map_err(io_err("creating directory", &dir))?;
        let path = dir.join(unique_name("pin").trim_start_matches(".tmp-"));
        let mut file = File::create(&path).map_err(io_err("creating", &path))?;
        let pin = Pin {
            path: path.clone(),
            _file: file.try_clone().map_err(io_err("opening", &path))?,
        };
        // Blocking: a reader of the pins (`kiln store usage`) may hold it for a moment.
        FileLock::lock_file(&file, &path)?;
        let text: String = entries.iter().map(Pinned::line).collect();
        file.write_all(text.as_bytes())
            .map_err(io_err("writing", &path))?;
        Ok(pin)
    }

    /// Pins `image` (manifest, configuration, layers and their unpacked directories) until the
    /// answer is dropped: a build holds its parent's pin while the parent's layers are mounted,
    /// so deleting the parent meanwhile does not pull them away. Fails (`MissingBlob`) when the
    /// image is no longer whole, e.g. it was deleted and collected since it was looked up.
    pub fn pin_image(&self, image: &ImageRef) -> Result<Pin> {
        let _lock = FileLock::acquire(self.lock_path())?;
        self.check_whole(image)?;
        self.pin_locked(&[Pinned::Image(image.digest.clone())])
    }

    /// Reads every pin file. With `remove_stale` (the caller holds the index lock), the files
    /// of dead owners are removed.
    pub(crate) fn scan_pins(&self, remove_stale: bool) -> Result<PinScan> {
        let mut scan = PinScan {
            live: Vec::new(),
            stale: Vec::new(),
        };
        let dir = self.pins_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
            Err(e) => return Err(io_err("reading", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("reading", &dir))?;
            let path = entry.path();
            let mut file = match File::open(&path) {
                Ok(f) => f,
                // Dropped meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("opening", &path)(e)),
            };
            if try_lock(&file).map_err(io_err("locking", &path))? {
                // Nobody holds it: its owner died (or dropped it right now).
                if remove_stale {
                    let _ = fs::remove_file(&path);
                }
                scan.stale.push(path);
                continue;
            }
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(io_err("reading", &path))?;
            scan.live.extend(text.lines().filter_map(Pinned::parse));
        }
        Ok(scan)
    }
}
