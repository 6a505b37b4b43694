//! Enhanced image metadata: the OS and the installed packages of a root filesystem (what
//! Image Builder collects with SSM Inventory when `enhancedImageMetadataEnabled` is on, and
//! serves as the image's `osVersion` and through ListImagePackages).
//!
//! Everything is read from files of the image, never by running its programs: `os-release`
//! (`/etc/os-release`, else `/usr/lib/os-release`), the dpkg status database
//! (`/var/lib/dpkg/status`) and the apk database (`/lib/apk/db/installed`). RPM databases need
//! the `rpm` tool and are not read yet. Paths resolve inside the root the way the kernel would
//! under chroot, so an image's symlinks cannot point the reader at the host's files.

use kiln_toe::target::resolve_in_root;
use std::path::Path;

/// What os-release says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// `NAME`, e.g. "Debian GNU/Linux".
    pub name: String,
    /// `VERSION_ID`, e.g. "12" (empty when absent, as on rolling releases).
    pub version_id: String,
    /// `PRETTY_NAME`, or name and version.
    pub pretty_name: String,
}

impl OsInfo {
    /// The image's `osVersion`: name and version ("Debian GNU/Linux 12").
    pub fn os_version(&self) -> String {
        if self.version_id.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.name, self.version_id)
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// The OS and packages of a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    pub os: Option<OsInfo>,
    /// Sorted by name.
    pub packages: Vec<Package>,
}

/// Where an rpm database may be (rpm 4.16+ and older).
const RPM_DATABASES: [&str; 2] = ["/usr/lib/sysimage/rpm", "/var/lib/rpm"];

/// The query an image's own `rpm` answers with one `name<TAB>version-release` line per package:
/// the database format (SQLite, Berkeley DB, ndb) is rpm's business, so rpm reads it.
pub const RPM_QUERY: [&str; 3] = ["-qa", "--qf", "%{NAME}\t%{VERSION}-%{RELEASE}\n"];

/// Reads the metadata of the root filesystem at `root`. `rpm_query` runs the image's `rpm`
/// with [`RPM_QUERY`] (inside the instance) and answers its output; it is asked only when the
/// root has an rpm database.
pub fn collect_with(root: &Path, rpm_query: &dyn Fn() -> Option<String>) -> Metadata {
    let mut metadata = collect(root);
    let has_rpm_db = RPM_DATABASES
        .iter()
        .any(|db| resolve_in_root(root, "/", db, true).is_ok_and(|p| p.is_dir()));
    if has_rpm_db {
        if let Some(text) = rpm_query() {
            metadata.packages.extend(parse_rpm_query(&text));
            metadata.packages.sort();
            metadata.packages.dedup();
        }
    }
    metadata
}

/// `name<TAB>version` lines of [`RPM_QUERY`].
pub fn parse_rpm_query(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let (name, version) = line.split_once('\t')?;
            (!name.is_empty()).then(|| Package {
                name: name.to_string(),
                version: version.to_string(),
            })
        })
        .collect()
}

/// Reads the metadata of the root filesystem at `root` (os-release, dpkg and apk databases).
pub fn collect(root: &Path) -> Metadata {
    let read = |path: &str| {
        resolve_in_root(root, "/", path, true)
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
    };
    let os = read("/etc/os-release")
        .or_else(|| read("/usr/lib/os-release"))
        .and_then(|text| parse_os_release(&text));
    let mut packages = Vec::new();
    if let Some(text) = read("/var/lib/dpkg/status") {
        packages.extend(parse_dpkg_status(&text));
    }
    if let Some(text) = read("/lib/apk/db/installed") {
        packages.extend(parse_apk_installed(&text));
    }
    packages.sort();
    packages.dedup();
    Metadata { os, packages }
}

/// `KEY=value` lines, values optionally quoted (os-release(5)).
pub fn parse_os_release(text: &str) -> Option<OsInfo> {
    let mut name = None;
    let mut version_id = String::new();
    let mut pretty = None;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key {
            "NAME" => name = Some(value),
            "VERSION_ID" => version_id = value,
            "PRETTY_NAME" => pretty = Some(value),
            _ => {}
        }
    }
    let name = name.or_else(|| pretty.clone())?;
    let pretty_name = pretty.unwrap_or_else(|| format!("{name} {version_id}").trim().to_string());
    Some(OsInfo {
        name,
        version_id,
        pretty_name,
    })
}

fn unquote(value: &str) -> String {
    let stripped = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    stripped.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Installed packages of a dpkg status file: stanzas whose Status ends in "installed".
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |key: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            };
            let status = field("Status:")?;
            if !status.ends_with(" installed") {
                return None;
            }
            Some(Package {
                name: field("Package:")?,
                version: field("Version:").unwrap_or_default(),
            })
        })
        .collect()
}

/// Packages of an apk `installed` database: `P:` name and `V:` version per record.
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    text.split("\n\n")
        .filter_map(|record| {
            let field = |key: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(str::to_string))
            };
            Some(Package {
                name: field("P:")?,
                version: field("V:").unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_forms() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        let info = parse_os_release(debian).unwrap();
        assert_eq!(info.os_version(), "Debian GNU/Linux 12");
        assert_eq!(info.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        let arch = "NAME='Arch Linux'\nID=arch\n";
        assert_eq!(parse_os_release(arch).unwrap().os_version(), "Arch Linux");
        assert_eq!(parse_os_release("ID=x\n"), None);
    }

    #[test]
    fn package_databases() {
        let dpkg = "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13\n";
        assert_eq!(
            parse_dpkg_status(dpkg),
            vec![
                Package {
                    name: "bash".into(),
                    version: "5.2.15-2+b2".into()
                },
                Package {
                    name: "zlib1g".into(),
                    version: "1:1.2.13".into()
                },
            ]
        );
        let apk = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\n";
        assert_eq!(parse_apk_installed(apk).len(), 2);
        assert_eq!(parse_apk_installed(apk)[1].name, "busybox");
    }

    #[test]
    fn collect_reads_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        std::fs::write(
            root.join("usr/lib/os-release"),
            "NAME=\"Kiln Test\"\nVERSION_ID=1\n",
        )
        .unwrap();
        // Absolute, as Debian's is relative: still read inside the root.
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
        std::fs::write(
            root.join("var/lib/dpkg/status"),
            "Package: kiln\nStatus: install ok installed\nVersion: 0.1\n",
        )
        .unwrap();
        let m = collect(root);
        assert_eq!(m.os.unwrap().os_version(), "Kiln Test 1");
        assert_eq!(m.packages.len(), 1);
        assert_eq!(collect(&root.join("missing")), Metadata::default());
    }

    #[test]
    fn rpm_query_lines() {
        let p = super::parse_rpm_query("bash\t5.2.26-3.fc40\nglibc\t2.39-1\n\nbroken line\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "bash");
        assert_eq!(p[0].version, "5.2.26-3.fc40");
    }
}
