//! Kiln's OCI image store.
//!
//! A build instance is an overlay mount: the read-only layers of its parent image are the
//! lower directories and a fresh directory is the upper one. When the build ends, the upper
//! directory is turned into a new OCI layer ("snapshot") and committed on top of the parent's
//! layers as a new image. This crate owns everything about those images on disk.
//!
//! # Layout
//!
//! The store is a plain [OCI image layout] at its root, so `skopeo inspect oci:ROOT:TAG` and
//! `umoci unpack --image ROOT:TAG` read it directly:
//!
//! - `oci-layout` — the layout version marker.
//! - `index.json` — one manifest descriptor per tag; the tag is the descriptor's
//!   `org.opencontainers.image.ref.name` annotation.
//! - `blobs/sha256/<hex>` — manifests, image configurations and layers (compressed tars),
//!   named by the sha256 of their bytes.
//! - `tmp/` — blobs being written. A blob is streamed into a temporary file here, hashed as it
//!   goes, synced, then renamed to its digest name; readers never see a partial blob, and two
//!   writers of the same blob simply replace one identical file with another.
//! - `unpacked/<diff_id hex>/` — a layer unpacked for use as an overlay lower directory,
//!   cached by its diff_id (the sha256 of the uncompressed tar). OCI whiteouts are turned back
//!   into overlay whiteouts there (`.wh.name` → character device 0/0 `name`,
//!   `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory). A layer is unpacked into a
//!   temporary directory and renamed into place.
//! - `index.lock` — `flock`ed around every read-modify-write of `index.json`, around the end of
//!   a commit (its configuration and manifest blobs and its tag), around pinning and around
//!   garbage collection, so several processes (and threads) can commit at once.
//! - `pins/<name>` — what running work uses that no tag names (a build's parent, a layer
//!   between snapshot and commit, an import or export under way), each file `flock`ed by its
//!   owner; see `pin.rs`. Garbage collection (`gc.rs`) keeps exactly what tags and live pins
//!   reach and frees the rest at once.
//!
//! # Layers
//!
//! [`ImageStore::snapshot_layer`] walks the upper directory in sorted order and writes one tar
//! stream straight into the compressor and into the temporary blob file; both the compressed
//! stream (the blob digest) and the uncompressed one (the diff_id) are hashed on the way, so the
//! data is read once. Owners, modes, mtimes (whole seconds), symlinks, hard links (an inode met
//! twice becomes a link entry), device nodes, FIFOs and extended attributes (PAX
//! `SCHILY.xattr.*`, except `trusted.overlay.*`) are kept; long names use PAX records. Overlay
//! whiteouts (character device 0/0) become `.wh.<name>` entries and opaque directories get a
//! `.wh..wh..opq` entry. Sockets cannot be represented in tar and are skipped.
//!
//! Unpacking ([`ImageStore::lower_dirs`], [`ImageStore::merged_rootfs`]) refuses entries that
//! would land outside the target: absolute names, `..` components, and any path (or hard-link
//! target) that goes through a symbolic link. `trusted.overlay.*` attributes in a layer are
//! ignored, so a layer cannot forge overlay metadata.
//!
//! # Parent images
//!
//! Besides commits of builds, images come from rootfs archives and the busybox base
//! (`base.rs`), and from outside (`fetch.rs`): [`ImageStore::debian_base`] builds the managed
//! Debian minimal base with `mmdebstrap` (one zstd layer, fixed `SOURCE_DATE_EPOCH`), and
//! [`ImageStore::pull_registry`] / [`ImageStore::push_registry`] copy images between the store
//! and an OCI registry with `skopeo` through a temporary OCI layout. The same two bases are
//! also made with no host package from the Debian mirror (`debian/`): the signed release, the
//! index and every `.deb` verified, the debs read in process, the Debian tree installed by its
//! own dpkg in a chroot ([`ImageStore::busybox_base_mirror`], [`ImageStore::debian_base_mirror`];
//! [`BaseSource`] picks the path).
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

mod base;
pub mod confined;
mod debian;
pub mod disk;
mod export;
mod fetch;
mod gc;
mod hash;
mod layer;
mod pin;
pub mod registry;
mod store;
mod unpack;
mod writeback;

pub use base::{is_static_elf, BUSYBOX};
pub use debian::{BaseSource, DebianMirror, DEBIAN_ARCHIVE_KEYRING};
pub use disk::{DiskImport, DiskInput};
pub use export::DiskFormat;
pub use fetch::{DEBIAN_EPOCH, DEFAULT_DEBIAN_MIRROR};
pub use gc::{GcReport, ImageUsage, StoreUsage};
/// The OCI types this crate's API uses (`Descriptor`, `ImageManifest`, ...).
pub use oci_spec;
pub use pin::Pin;
pub use registry::{RegistryAccess, RegistryFlags, RegistryTls, SharedRegistry};
pub use store::{CommitMeta, ImageStore};

use oci_spec::image::Descriptor;
use std::path::PathBuf;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An IO error, with what was being done and on which path.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A layer tar entry that would be written outside its directory, or is otherwise unusable.
    #[error("layer entry `{entry}` refused: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// No image has this tag.
    #[error("no image tagged `{0}`")]
    UnknownTag(String),
    /// A blob the image needs is not in the store.
    #[error("blob {0} is missing from the image store")]
    MissingBlob(String),
    /// Content whose digest is not what its descriptor says.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A JSON document (index, manifest, config) that could not be read or written.
    #[error("{what}: {message}")]
    Json { what: String, message: String },
    /// Anything else that is wrong with the input (bad tag, unsupported media type...).
    #[error("{0}")]
    Invalid(String),
    /// The caller's cancel check answered true (a disk import of a cancelled build).
    #[error("cancelled")]
    Cancelled,
    /// An external program (mmdebstrap, skopeo) that failed: its command line, exit status
    /// and the end of its standard error.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// Compression of a new layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// zstd level 3 (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
    /// gzip, default level (`application/vnd.oci.image.layer.v1.tar+gzip`).
    Gzip,
}

/// A layer blob stored in the image store, not yet part of an image. It holds a pin on its
/// blob (see [`Pin`]), so a garbage collection before the commit keeps it; the pin goes when
/// the last copy of this value is dropped (after [`ImageStore::commit`] tagged it, or when the
/// build gives up).
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// Digest (of the compressed blob), size and media type.
    pub descriptor: Descriptor,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    // Held for its `Drop`: the blob stays pinned while the layer is uncommitted.
    #[allow(dead_code)]
    pub(crate) pin: Option<std::sync::Arc<Pin>>,
}

impl LayerInfo {
    /// A layer whose blob the caller put in the store itself: nothing pins it, so the caller
    /// keeps it from the collection until the commit (as tests that forge blobs do).
    pub fn unpinned(descriptor: Descriptor, diff_id: String) -> LayerInfo {
        LayerInfo {
            descriptor,
            diff_id,
            pin: None,
        }
    }
}

impl PartialEq for LayerInfo {
    fn eq(&self, other: &Self) -> bool {
        self.descriptor == other.descriptor && self.diff_id == other.diff_id
    }
}

impl Eq for LayerInfo {}

/// An image in the store: its manifest digest and the tag it was looked up or stored by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    /// The tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
}
