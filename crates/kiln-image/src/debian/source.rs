//! Which path makes a managed base: the host's tools (the static `/bin/busybox` of
//! busybox-static, `mmdebstrap`) or the built-in mirror path of this module.

use super::DebianMirror;
use crate::{Error, ImageRef, ImageStore, Result, BUSYBOX};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// `--base-source`: where the managed bases come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BaseSource {
    /// Busybox: the host's static binary when there is one (no network), else the mirror.
    /// Debian: the built-in path, which measured as fast as mmdebstrap here (cold, release
    /// build, same run: mmdebstrap 65.4 s and 82.7 s, built-in 69.4 s and 72.4 s) and needs
    /// no host package.
    #[default]
    Auto,
    /// The host's tools only; refused, naming the package, when they are missing.
    Host,
    /// Always the built-in mirror path.
    Mirror,
}

impl FromStr for BaseSource {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(BaseSource::Auto),
            "host" => Ok(BaseSource::Host),
            "mirror" => Ok(BaseSource::Mirror),
            _ => Err(format!("`{s}`: give auto, host or mirror")),
        }
    }
}

impl fmt::Display for BaseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BaseSource::Auto => "auto",
            BaseSource::Host => "host",
            BaseSource::Mirror => "mirror",
        })
    }
}

/// True if `busybox` is a static x86-64 binary (what the host path needs).
fn host_busybox_usable(busybox: &Path) -> bool {
    std::fs::read(busybox).is_ok_and(|d| crate::base::is_static_elf(&d) == Some(true))
}

/// True if `program` is an executable file in `$PATH`.
fn in_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// `--base-source host` without the host's `program`: an error naming the Debian `package`.
fn require(program: &str, package: &str) -> Result<()> {
    if in_path(program) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "--base-source host: `{program}` is not installed: install the Debian package \
         {package} (apt-get install {package}), or use --base-source mirror"
    )))
}

impl ImageStore {
    /// The managed busybox base by `source`: `auto` takes the host's static [`BUSYBOX`] when
    /// there is one (no network), else `busybox-static` from `mirror`.
    pub fn managed_busybox(
        &self,
        source: BaseSource,
        mirror: &DebianMirror,
        suite: &str,
        tag: &str,
    ) -> Result<ImageRef> {
        let host = match source {
            BaseSource::Host => true,
            BaseSource::Mirror => false,
            BaseSource::Auto => host_busybox_usable(Path::new(BUSYBOX)),
        };
        if host {
            self.busybox_base(tag)
        } else {
            self.busybox_base_mirror(mirror, suite, tag)
        }
    }

    /// The managed Debian minimal base by `source`: `host` runs mmdebstrap (refused, naming
    /// the package, when it is not installed), `mirror` and `auto` the built-in path (no
    /// faster path to prefer: see [`BaseSource::Auto`]).
    pub fn managed_debian(
        &self,
        source: BaseSource,
        mirror: &DebianMirror,
        suite: &str,
        tag: &str,
    ) -> Result<ImageRef> {
        match source {
            BaseSource::Host => {
                require("mmdebstrap", "mmdebstrap")?;
                self.debian_base(&mirror.url, suite, tag)
            }
            BaseSource::Auto | BaseSource::Mirror => self.debian_base_mirror(mirror, suite, tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print() {
        for s in ["auto", "host", "mirror"] {
            assert_eq!(s.parse::<BaseSource>().unwrap().to_string(), s);
        }
        assert!("Host".parse::<BaseSource>().is_err());
        assert_eq!(BaseSource::default(), BaseSource::Auto);
    }

    #[test]
    fn host_refuses_naming_the_missing_package() {
        let err = require("kiln-no-such-mmdebstrap", "mmdebstrap")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("install the Debian package mmdebstrap"),
            "{err}"
        );
        assert!(require("sh", "dash").is_ok());
    }

    #[test]
    fn host_busybox_must_be_static() {
        assert!(host_busybox_usable(Path::new(BUSYBOX)));
        assert!(!host_busybox_usable(Path::new("/bin/sh")));
        assert!(!host_busybox_usable(Path::new("/nonexistent/busybox")));
    }

    #[test]
    fn programs_are_found_in_path() {
        assert!(in_path("sh"));
        assert!(!in_path("kiln-no-such-program"));
    }
}
