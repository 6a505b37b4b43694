//! The busybox base from the mirror: `busybox-static`'s `bin/busybox`, handed to the layer code
//! the host's binary goes through (`base.rs`).

use super::{deb, packages, DebianMirror};
use crate::fetch::Cleanup;
use crate::{io_err, Error, ImageRef, ImageStore, Result};

/// The most `bin/busybox` may weigh (Debian 12's is about 2 MB).
const MAX_BUSYBOX: u64 = 64 << 20;

impl ImageStore {
    /// Builds the managed busybox base from `busybox-static` of `suite` on `mirror`: the
    /// release's signature, the index's and the package's hashes are verified first. Same
    /// package, same image digest.
    pub fn busybox_base_mirror(
        &self,
        mirror: &DebianMirror,
        suite: &str,
        tag: &str,
    ) -> Result<ImageRef> {
        let (release, packages) = super::signed_index(mirror, suite, tag)?;
        let index = packages::Index::new(&packages);
        let pkg = index.get("busybox-static").ok_or_else(|| {
            Error::Invalid(format!(
                "the package index of {} has no busybox-static",
                release.url
            ))
        })?;
        let dir = Cleanup(self.temp_path("busybox-deb"));
        std::fs::create_dir(&dir.0).map_err(io_err("creating", &dir.0))?;
        let file = deb::fetch(mirror, pkg, &dir.0)?;
        let data = deb::data_file(&file, "bin/busybox", MAX_BUSYBOX)?;
        let source = format!(
            "busybox from busybox-static {} of {} {suite}",
            pkg.version, mirror.url
        );
        self.busybox_base_bytes(&data, &source, tag)
    }
}
