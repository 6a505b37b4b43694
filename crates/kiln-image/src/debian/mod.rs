//! The managed base images made from a Debian mirror by Kiln itself, with no host package.
//!
//! The mirror's `dists/SUITE/InRelease` is fetched and its OpenPGP signature verified against
//! the Debian archive keyring (`release.rs`; the keyring is embedded in the binary, another one
//! may be given). The `Packages` index is checked against the SHA256 the signed release gives
//! it, parsed, and the packages to install are resolved from it (`packages.rs`). Each `.deb` is
//! checked against the size and SHA256 the index gives it, and its `ar` members and their tars
//! are read in process (`deb.rs`). From there `busybox.rs` takes `busybox-static`'s binary for
//! the busybox base, and `rootfs.rs` unpacks the minbase set into a tree, lets the tree's own
//! dpkg configure it in a chroot and stores the tree as one layer. `source.rs` decides which of
//! this and the host's tools (`/bin/busybox`, `mmdebstrap`) makes a base.
//!
//! A mirror is an `http://`, `https://` or `file:/` URL (`get.rs`); every error names the URL,
//! package or file that failed.

mod busybox;
mod deb;
mod get;
mod packages;
mod release;
mod rootfs;
mod source;

pub use source::BaseSource;

use std::path::Path;

/// The Debian archive keyring Kiln verifies mirrors with unless told otherwise (Debian 12's
/// `debian-archive-keyring`; see `keys/README.md`).
pub const DEBIAN_ARCHIVE_KEYRING: &[u8] = include_bytes!("../../keys/debian-archive-keyring.gpg");

/// The architecture of the managed bases.
pub(crate) const ARCH: &str = "amd64";

/// A Debian mirror and the keyring its releases must be signed with.
#[derive(Clone, Debug)]
pub struct DebianMirror {
    /// `http://`, `https://` or `file:/` URL of the archive's root (holds `dists/`, `pool/`).
    pub url: String,
    /// The keyring (binary or armored OpenPGP public keys); `None`: the embedded
    /// [`DEBIAN_ARCHIVE_KEYRING`].
    pub keyring: Option<Vec<u8>>,
}

impl DebianMirror {
    /// `url` verified with the embedded Debian archive keyring.
    pub fn new(url: &str) -> DebianMirror {
        DebianMirror {
            url: url.trim_end_matches('/').to_string(),
            keyring: None,
        }
    }

    /// `url` verified with the keyring in `file`.
    pub fn with_keyring_file(url: &str, file: &Path) -> crate::Result<DebianMirror> {
        let keyring =
            std::fs::read(file).map_err(crate::io_err("reading the Debian keyring", file))?;
        Ok(DebianMirror {
            keyring: Some(keyring),
            ..DebianMirror::new(url)
        })
    }

    pub(crate) fn keyring_bytes(&self) -> &[u8] {
        self.keyring.as_deref().unwrap_or(DEBIAN_ARCHIVE_KEYRING)
    }

    /// The URL of `path` (relative to the archive root).
    pub(crate) fn url_of(&self, path: &str) -> String {
        format!("{}/{}", self.url, path.trim_start_matches('/'))
    }
}

/// What both managed bases start from: `tag`, `suite` and the mirror checked, then the mirror's
/// release (its signature verified) and the package index whose hash it gives.
pub(crate) fn signed_index(
    mirror: &DebianMirror,
    suite: &str,
    tag: &str,
) -> crate::Result<(release::Release, Vec<packages::Package>)> {
    crate::store::check_tag(tag)?;
    crate::fetch::check_suite(suite)?;
    crate::fetch::check_mirror(&mirror.url)?;
    let release = release::fetch(mirror, suite)?;
    let packages = packages::fetch(mirror, suite, &release)?;
    Ok((release, packages))
}
