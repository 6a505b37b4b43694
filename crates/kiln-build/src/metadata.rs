//! Enhanced image metadata: the OS and the installed packages of a root filesystem (what
//! Image Builder collects with SSM Inventory when `enhancedImageMetadataEnabled` is on, and
//! serves as the image's `osVersion` and through ListImagePackages).
//!
//! Everything is read from files of the image, never by running its programs: `os-release`
//! (`/etc/os-release`, else `/usr/lib/os-release`), the dpkg status database
//! (`/var/lib/dpkg/status`) and the apk database (`/lib/apk/db/installed`). RPM databases need
//! the `rpm` tool, so the caller's `rpm_query` runs the image's own inside the instance.
//! `inventory` reads what a vulnerability scan needs (os-release `ID`s, source packages,
//! architectures). Paths resolve inside the root the way the kernel would under chroot, so an
//! image's symlinks cannot point the reader at the host's files.

use kiln_domain::resources::scan::{InstalledPackage, Inventory, PackageManager};
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
    if has_rpm_database(root) {
        if let Some(text) = rpm_query() {
            metadata.packages.extend(parse_rpm_query(&text));
            metadata.packages.sort();
            metadata.packages.dedup();
        }
    }
    metadata
}

/// Whether the root filesystem has an rpm database (where rpm 4.16+ or an older one keeps it).
fn has_rpm_database(root: &Path) -> bool {
    RPM_DATABASES
        .iter()
        .any(|db| resolve_in_root(root, "/", db, true).is_ok_and(|p| p.is_dir()))
}

/// The text of the file at `path` inside the root (resolved as under chroot), if there is one.
fn read_in_root(root: &Path, path: &str) -> Option<String> {
    resolve_in_root(root, "/", path, true)
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
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
    let read = |path: &str| read_in_root(root, path);
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

/// The query [`inventory`] asks an image's `rpm` with: one
/// `name<TAB>epoch<TAB>version-release<TAB>arch<TAB>source rpm` line per package (`(none)`
/// where rpm has no value).
pub const RPM_INVENTORY_QUERY: [&str; 3] = [
    "-qa",
    "--qf",
    "%{NAME}\t%{EPOCH}\t%{VERSION}-%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\n",
];

/// What a vulnerability scan reads of the root filesystem at `root`: os-release's `ID`,
/// `VERSION_ID` and `ID_LIKE`, and every installed package with its source package and
/// architecture (dpkg `Source:` and `Architecture:`, apk `o:` and `A:`, rpm's `SOURCERPM`
/// and `ARCH`). `rpm_query` runs the image's `rpm` with [`RPM_INVENTORY_QUERY`]; it is asked
/// only when the root has an rpm database.
pub fn inventory(root: &Path, rpm_query: &dyn Fn() -> Option<String>) -> Inventory {
    let read = |path: &str| read_in_root(root, path);
    let mut inventory = Inventory::default();
    if let Some(text) = read("/etc/os-release").or_else(|| read("/usr/lib/os-release")) {
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(value.trim());
            match key {
                "ID" => inventory.os_id = value,
                "VERSION_ID" => inventory.os_version_id = value,
                "ID_LIKE" => {
                    inventory.os_id_like = value.split_whitespace().map(str::to_string).collect()
                }
                _ => {}
            }
        }
    }
    if let Some(text) = read("/var/lib/dpkg/status") {
        inventory.packages.extend(dpkg_inventory(&text));
    }
    if let Some(text) = read("/lib/apk/db/installed") {
        inventory.packages.extend(apk_inventory(&text));
    }
    if has_rpm_database(root) {
        if let Some(text) = rpm_query() {
            inventory.packages.extend(rpm_inventory(&text));
        }
    }
    inventory.packages.sort();
    inventory.packages.dedup();
    inventory
}

/// `Some(value)` when it is there and differs from `other`.
fn differing(value: Option<String>, other: &str) -> Option<String> {
    value.filter(|v| !v.is_empty() && v != other)
}

/// Installed packages of a dpkg status file, with `Source:` (`name` or `name (version)`).
pub fn dpkg_inventory(text: &str) -> Vec<InstalledPackage> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |key: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            };
            if !field("Status:")?.ends_with(" installed") {
                return None;
            }
            let name = field("Package:")?;
            let version = field("Version:").unwrap_or_default();
            let (source_name, source_version) = match field("Source:") {
                Some(source) => match source.split_once(' ') {
                    Some((source, rest)) => (
                        Some(source.to_string()),
                        rest.trim()
                            .strip_prefix('(')
                            .and_then(|v| v.strip_suffix(')'))
                            .map(|v| v.trim().to_string()),
                    ),
                    None => (Some(source), None),
                },
                None => (None, None),
            };
            Some(InstalledPackage {
                source_name: differing(source_name, &name),
                source_version: differing(source_version, &version),
                arch: field("Architecture:"),
                manager: PackageManager::Dpkg,
                name,
                version,
            })
        })
        .collect()
}

/// Packages of an apk `installed` database: `P:`, `V:`, `o:` (origin) and `A:`.
pub fn apk_inventory(text: &str) -> Vec<InstalledPackage> {
    text.split("\n\n")
        .filter_map(|record| {
            let field = |key: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(str::to_string))
            };
            let name = field("P:")?;
            Some(InstalledPackage {
                version: field("V:").unwrap_or_default(),
                source_name: differing(field("o:"), &name),
                source_version: None,
                arch: field("A:"),
                manager: PackageManager::Apk,
                name,
            })
        })
        .collect()
}

/// Lines of [`RPM_INVENTORY_QUERY`]; the version carries the epoch as `N:` when not zero, the
/// source name is `SOURCERPM` without `-version-release.src.rpm`.
pub fn rpm_inventory(text: &str) -> Vec<InstalledPackage> {
    let none = |v: &str| v.is_empty() || v == "(none)";
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, epoch, version, arch, source_rpm] = fields[..] else {
                return None;
            };
            if name.is_empty() {
                return None;
            }
            let version = if none(epoch) || epoch == "0" {
                version.to_string()
            } else {
                format!("{epoch}:{version}")
            };
            let source = (!none(source_rpm))
                .then(|| {
                    source_rpm
                        .strip_suffix(".src.rpm")
                        .or(source_rpm.strip_suffix(".nosrc.rpm"))
                })
                .flatten()
                .and_then(|s| s.rsplitn(3, '-').nth(2))
                .map(str::to_string);
            Some(InstalledPackage {
                source_name: differing(source, name),
                source_version: None,
                arch: (!none(arch)).then(|| arch.to_string()),
                manager: PackageManager::Rpm,
                name: name.to_string(),
                version,
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

    #[test]
    fn inventories_of_the_three_databases() {
        let dpkg = "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.14-1~deb12u2\nArchitecture: amd64\n\nPackage: libc6\nStatus: install ok installed\nSource: glibc (2.36-9+deb12u4)\nVersion: 2.36-9+deb12u4+b1\nArchitecture: amd64\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let p = dpkg_inventory(dpkg);
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[0].source(), p[0].arch.as_deref()),
            ("openssl", Some("amd64"))
        );
        assert_eq!(p[1].source(), "glibc");
        assert_eq!(p[1].source_version.as_deref(), Some("2.36-9+deb12u4"));
        assert_eq!((p[2].source(), p[2].source_name.as_deref()), ("bash", None));
        let apk = "P:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\nP:musl\nV:1.2.5-r0\no:musl\n";
        let p = apk_inventory(apk);
        assert_eq!(
            (p[0].source(), p[0].arch.as_deref()),
            ("openssl", Some("x86_64"))
        );
        assert_eq!(p[1].source_name, None);
        let rpm = "openssl-libs\t1\t3.0.7-27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm\nbash\t(none)\t5.1.8-9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\ngpg-pubkey\t(none)\tfd431d51-4ae0493b\t(none)\t(none)\n";
        let p = rpm_inventory(rpm);
        assert_eq!(p[0].version, "1:3.0.7-27.el9");
        assert_eq!(p[0].source(), "openssl");
        assert_eq!(p[1].source_name, None);
        assert_eq!((p[2].source(), p[2].arch.as_deref()), ("gpg-pubkey", None));
    }

    #[test]
    fn inventory_reads_os_release_and_asks_rpm_only_with_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
        std::fs::write(
            root.join("etc/os-release"),
            "ID=\"rocky\"\nVERSION_ID=\"9.4\"\nID_LIKE=\"rhel centos fedora\"\n",
        )
        .unwrap();
        let inv = inventory(root, &|| {
            Some("bash\t(none)\t5.1.8-9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\n".into())
        });
        assert_eq!(
            (inv.os_id.as_str(), inv.os_version_id.as_str()),
            ("rocky", "9.4")
        );
        assert_eq!(inv.os_id_like, ["rhel", "centos", "fedora"]);
        assert_eq!(inv.packages.len(), 1);
        std::fs::remove_dir(root.join("var/lib/rpm")).unwrap();
        let inv = inventory(root, &|| panic!("no rpm database: rpm is not asked"));
        assert!(inv.packages.is_empty());
    }
}
