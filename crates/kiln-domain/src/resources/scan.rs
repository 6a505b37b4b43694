//! Vulnerability scans of images (contract §2): what a scan found, in the shape Inspector
//! reports it (`ImageScanFinding`), the state of an image's scan, and the package inventory a
//! scan reads from an image (kept so that an image can be evaluated again when new
//! vulnerability data arrives, without reading its files again).
//!
//! Matching packages against vulnerability data is `kiln-vuln`'s; storing findings is
//! `kiln-store`'s; the API maps these records to the wire shapes.

use super::{Millis, Resource};
use crate::arn::{Arn, ResourceKind};
use serde::{Deserialize, Serialize};

/// What the scan of one image read, kept so that the image is evaluated again when new
/// vulnerability data arrives (its files are not read again). A row of kind `image-scan`
/// keyed `arn:aws:imagebuilder:<region>:<owner>:image-scan/<build id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageScan {
    pub arn: Arn,
    pub image_arn: String,
    pub pipeline_arn: Option<String>,
    pub inventory: Inventory,
    /// The OSV ecosystems the image's OS maps to (`Debian:12`, `Debian`), empty when Kiln
    /// cannot scan that OS.
    pub ecosystems: Vec<String>,
    /// The generation of the vulnerability data the findings were last evaluated against.
    pub generation: u64,
    pub evaluated_at: Millis,
}

impl ImageScan {
    pub fn key(region: &str, owner: &str, build_id: &str) -> Arn {
        Arn::new(region, owner, ResourceKind::ImageScan, build_id)
    }
}

impl Resource for ImageScan {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// `ImageScanState.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanStatus {
    Pending,
    Scanning,
    Collecting,
    Completed,
    Abandoned,
    Failed,
    TimedOut,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Pending => "PENDING",
            ScanStatus::Scanning => "SCANNING",
            ScanStatus::Collecting => "COLLECTING",
            ScanStatus::Completed => "COMPLETED",
            ScanStatus::Abandoned => "ABANDONED",
            ScanStatus::Failed => "FAILED",
            ScanStatus::TimedOut => "TIMED_OUT",
        }
    }

    /// Whether the scan has ended (nothing moves it any more).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ScanStatus::Completed
                | ScanStatus::Abandoned
                | ScanStatus::Failed
                | ScanStatus::TimedOut
        )
    }
}

/// `Image.scanState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanState {
    pub status: ScanStatus,
    pub reason: Option<String>,
}

/// Inspector's severities, lowest first (`Ord` follows it; UNTRIAGED sorts below all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Untriaged,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Untriaged,
        Severity::Informational,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Untriaged => "UNTRIAGED",
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Inspector's rating of a CVSS v3 base score (contract §2.3).
    pub fn from_cvss_score(score: f64) -> Severity {
        if score <= 0.0 {
            Severity::Informational
        } else if score < 4.0 {
            Severity::Low
        } else if score < 7.0 {
            Severity::Medium
        } else if score < 9.0 {
            Severity::High
        } else {
            Severity::Critical
        }
    }
}

/// `fixAvailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FixAvailable {
    Yes,
    Partial,
    No,
}

impl FixAvailable {
    pub fn as_str(self) -> &'static str {
        match self {
            FixAvailable::Yes => "YES",
            FixAvailable::Partial => "PARTIAL",
            FixAvailable::No => "NO",
        }
    }
}

/// One CVSS score of a vulnerability (`CvssScore`; also `adjustedCvss` without adjustments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    pub base_score: f64,
    pub scoring_vector: String,
    /// "3.1", "3.0".
    pub version: String,
    /// Who scored it ("NVD", "DEBIAN_CVE", the OSV database prefix ...).
    pub source: String,
}

/// Which package database a package came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PackageManager {
    Dpkg,
    Apk,
    Rpm,
}

impl PackageManager {
    /// The command a remediation names.
    pub fn upgrade_command(self, package: &str) -> String {
        match self {
            PackageManager::Dpkg => format!("apt-get install --only-upgrade {package}"),
            PackageManager::Apk => format!("apk upgrade {package}"),
            PackageManager::Rpm => format!("dnf update {package}"),
        }
    }
}

/// One installed package as a scan sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// The binary package's name (`libssl3`).
    pub name: String,
    /// Its full version as the package manager writes it (`1:3.0.14-1~deb12u2`, `3.3.2-r0`,
    /// `3.0.7-27.el9` for rpm: version-release, epoch as `N:` when not zero).
    pub version: String,
    /// The source package it was built from (dpkg `Source:`, apk `o:` origin, rpm source
    /// name), when the database says and it differs from the name.
    #[serde(default)]
    pub source_name: Option<String>,
    /// The source package's version when the database gives one that differs (dpkg
    /// `Source: name (version)`).
    #[serde(default)]
    pub source_version: Option<String>,
    #[serde(default)]
    pub arch: Option<String>,
    pub manager: PackageManager,
}

impl InstalledPackage {
    /// The name vulnerability data uses for this package (the source package's).
    pub fn source(&self) -> &str {
        self.source_name.as_deref().unwrap_or(&self.name)
    }
}

/// What a scan read from an image: its OS and installed packages.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// os-release `ID` (`debian`, `alpine`, `rhel` ...), empty when there is none.
    pub os_id: String,
    /// os-release `VERSION_ID` (`12`, `3.20.3`).
    pub os_version_id: String,
    /// os-release `ID_LIKE`, split.
    #[serde(default)]
    pub os_id_like: Vec<String>,
    pub packages: Vec<InstalledPackage>,
}

/// A package of a finding (`VulnerablePackage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnerablePackage {
    pub name: String,
    pub version: String,
    pub release: Option<String>,
    pub epoch: Option<i32>,
    pub arch: Option<String>,
    /// Inspector's `packageManager` ("OS" for distribution packages).
    pub package_manager: String,
    pub fixed_in_version: Option<String>,
    pub remediation: Option<String>,
}

/// One vulnerability of one image (`ImageScanFinding`, minus the account, image and pipeline,
/// which the stored row carries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanFinding {
    /// The CVE id when the data has one, else the advisory's id.
    pub vulnerability_id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    /// The CVSS v3 base score, when the data has a vector.
    pub inspector_score: Option<f64>,
    /// The score `inspectorScore` was taken from.
    pub adjusted_cvss: Option<Cvss>,
    pub fix_available: FixAvailable,
    pub remediation_text: Option<String>,
    pub remediation_url: Option<String>,
    /// `DEBIAN_CVE`, `ALPINE_SECDB`, or the OSV database prefix (`GHSA`, `DSA` ...).
    pub source: String,
    pub source_url: Option<String>,
    /// The vendor's own rating (Debian urgency, Ubuntu priority), as the data writes it.
    pub vendor_severity: Option<String>,
    pub vendor_created_at: Option<Millis>,
    pub vendor_updated_at: Option<Millis>,
    pub reference_urls: Vec<String>,
    pub related_vulnerabilities: Vec<String>,
    pub cvss: Vec<Cvss>,
    pub vulnerable_packages: Vec<VulnerablePackage>,
    /// When a scan of this image first reported it.
    pub first_observed_at: Millis,
    /// When a scan last changed or confirmed it.
    pub updated_at: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspector_ratings_of_cvss_scores() {
        for (score, severity) in [
            (0.0, Severity::Informational),
            (0.1, Severity::Low),
            (3.9, Severity::Low),
            (4.0, Severity::Medium),
            (6.9, Severity::Medium),
            (7.0, Severity::High),
            (8.9, Severity::High),
            (9.0, Severity::Critical),
            (10.0, Severity::Critical),
        ] {
            assert_eq!(Severity::from_cvss_score(score), severity, "{score}");
        }
        assert!(
            Severity::Critical > Severity::High && Severity::Informational > Severity::Untriaged
        );
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
        assert_eq!(Severity::parse("high"), None);
    }
}
