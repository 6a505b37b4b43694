//! Which OSV ecosystems an image's os-release names, and the version order they use.
//!
//! - `debian` N → `Debian:N` and plain `Debian` (no `VERSION_ID`, as on sid: `Debian` only);
//! - `alpine` 3.20.3 → `Alpine:v3.20`;
//! - `ubuntu` 22.04 → `Ubuntu:22.04` and, for the even-year April releases, `Ubuntu:22.04:LTS`;
//! - `rhel`, `almalinux`, `rocky` N (or an `ID_LIKE` naming `rhel`, but not Amazon Linux) →
//!   `Red Hat` (and its `Red Hat:enterprise_linux:N::baseos`, `::appstream`, `::crb`
//!   repositories, as OSV names them), `AlmaLinux:N`, `Rocky Linux:N` (they are rebuilds of one
//!   another).
//!
//! Anything else: `None`, and the caller reports that it cannot scan the image. `ID_LIKE` is
//! used for the RHEL family only: the version numbers of Debian and Ubuntu derivatives
//! (Mint, Raspbian ...) are their own, so their packages cannot be matched to Debian's releases.

use crate::version::VersionOrder;
use kiln_domain::resources::scan::Inventory;

/// The ecosystems to look an image's packages up in, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsEcosystems {
    pub ecosystems: Vec<String>,
    pub order: VersionOrder,
    /// The family's generic ecosystem (`Debian`), used only when an advisory says nothing
    /// about the image's own release (see `matching`).
    pub generic: Option<String>,
}

impl OsEcosystems {
    pub fn contains(&self, ecosystem: &str) -> bool {
        self.ecosystems.iter().any(|e| e == ecosystem)
    }
}

/// Debian's release numbers by codename (`sid`, unstable, has none).
const DEBIAN_CODENAMES: [(&str, u32); 6] = [
    ("buster", 10),
    ("bullseye", 11),
    ("bookworm", 12),
    ("trixie", 13),
    ("forky", 14),
    ("duke", 15),
];

/// `bookworm` → 12.
pub fn debian_number(codename: &str) -> Option<u32> {
    DEBIAN_CODENAMES
        .iter()
        .find(|(c, _)| *c == codename)
        .map(|(_, n)| *n)
}

/// 12 → `bookworm`.
pub fn debian_codename(number: u32) -> Option<&'static str> {
    DEBIAN_CODENAMES
        .iter()
        .find(|(_, n)| *n == number)
        .map(|(c, _)| *c)
}

/// The OSV ecosystem of a Debian release by codename: `bookworm` → `Debian:12`, `sid` and
/// `unstable` → `Debian`; unknown codenames → `None`.
pub fn debian_ecosystem(codename: &str) -> Option<String> {
    match codename {
        "sid" | "unstable" => Some("Debian".to_string()),
        _ => debian_number(codename).map(|n| format!("Debian:{n}")),
    }
}

/// The ecosystems of an inventory's OS.
pub fn for_inventory(inventory: &Inventory) -> Option<OsEcosystems> {
    for_os(
        &inventory.os_id,
        &inventory.os_version_id,
        &inventory.os_id_like,
    )
}

/// The ecosystems of os-release's `ID`, `VERSION_ID` and `ID_LIKE`.
pub fn for_os(id: &str, version_id: &str, id_like: &[String]) -> Option<OsEcosystems> {
    let major = version_id.split('.').next().unwrap_or_default();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match id {
        "debian" => {
            let mut ecosystems = Vec::new();
            if numeric(major) {
                ecosystems.push(format!("Debian:{major}"));
            }
            ecosystems.push("Debian".to_string());
            Some(OsEcosystems {
                ecosystems,
                order: VersionOrder::Dpkg,
                generic: Some("Debian".to_string()),
            })
        }
        "alpine" => {
            let mut parts = version_id.split(['.', '_']);
            let (maj, min) = (parts.next()?, parts.next()?);
            (numeric(maj) && numeric(min)).then(|| OsEcosystems {
                ecosystems: vec![format!("Alpine:v{maj}.{min}")],
                order: VersionOrder::Apk,
                generic: None,
            })
        }
        "ubuntu" => {
            let (year, month) = version_id.split_once('.')?;
            if !numeric(year) || !numeric(month) {
                return None;
            }
            let mut ecosystems = vec![format!("Ubuntu:{year}.{month}")];
            let lts = month == "04" && year.parse::<u32>().is_ok_and(|y| y % 2 == 0);
            if lts {
                ecosystems.push(format!("Ubuntu:{year}.{month}:LTS"));
            }
            Some(OsEcosystems {
                ecosystems,
                order: VersionOrder::Dpkg,
                generic: None,
            })
        }
        // Amazon Linux says it is like RHEL, but its packages and versions are its own (and
        // OSV defines no ecosystem for it).
        "amzn" => None,
        _ if ["rhel", "almalinux", "rocky"].contains(&id)
            || id_like.iter().any(|like| like == "rhel") =>
        {
            numeric(major).then(|| OsEcosystems {
                ecosystems: vec![
                    "Red Hat".to_string(),
                    format!("Red Hat:enterprise_linux:{major}::baseos"),
                    format!("Red Hat:enterprise_linux:{major}::appstream"),
                    format!("Red Hat:enterprise_linux:{major}::crb"),
                    format!("AlmaLinux:{major}"),
                    format!("Rocky Linux:{major}"),
                ],
                order: VersionOrder::Rpm,
                generic: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(id: &str, version: &str, like: &[&str]) -> Option<Vec<String>> {
        let like: Vec<String> = like.iter().map(|s| s.to_string()).collect();
        for_os(id, version, &like).map(|e| e.ecosystems)
    }

    #[test]
    fn os_release_to_ecosystems() {
        assert_eq!(names("debian", "12", &[]).unwrap(), ["Debian:12", "Debian"]);
        assert_eq!(names("debian", "", &[]).unwrap(), ["Debian"]);
        assert_eq!(names("alpine", "3.20.3", &[]).unwrap(), ["Alpine:v3.20"]);
        assert_eq!(
            names("ubuntu", "22.04", &["debian"]).unwrap(),
            ["Ubuntu:22.04", "Ubuntu:22.04:LTS"]
        );
        assert_eq!(names("ubuntu", "23.10", &[]).unwrap(), ["Ubuntu:23.10"]);
        let rocky = names("rocky", "9.4", &["rhel", "centos", "fedora"]).unwrap();
        assert_eq!(rocky[0], "Red Hat");
        assert_eq!(rocky[2], "Red Hat:enterprise_linux:9::appstream");
        assert_eq!(rocky[4..], ["AlmaLinux:9", "Rocky Linux:9"]);
        assert_eq!(
            names("centos", "8", &["rhel", "fedora"]).unwrap()[4],
            "AlmaLinux:8"
        );
        assert_eq!(names("amzn", "2023", &["fedora"]), None);
        assert_eq!(names("amzn", "2", &["centos", "rhel", "fedora"]), None);
        assert_eq!(names("arch", "", &[]), None);
        assert_eq!(names("linuxmint", "21.3", &["ubuntu", "debian"]), None);
        assert_eq!(names("alpine", "edge", &[]), None);
        assert_eq!(for_os("rhel", "9", &[]).unwrap().order, VersionOrder::Rpm);
    }

    #[test]
    fn debian_codenames() {
        assert_eq!(debian_ecosystem("bookworm").as_deref(), Some("Debian:12"));
        assert_eq!(debian_ecosystem("trixie").as_deref(), Some("Debian:13"));
        assert_eq!(debian_ecosystem("sid").as_deref(), Some("Debian"));
        assert_eq!(debian_ecosystem("hamm"), None);
        assert_eq!(debian_codename(11), Some("bullseye"));
        assert_eq!(debian_number("forky"), Some(14));
        assert_eq!(debian_number("buster"), Some(10));
    }
}
