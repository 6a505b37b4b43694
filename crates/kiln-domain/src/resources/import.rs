//! Images imported from a disk image (ImportDiskImage, ImportVmImage): where the disk is, what
//! the request said, and the rules on what Kiln imports. The build worker reads the disk.
//!
//! AWS imports Windows ISO installation media (ImportDiskImage) and the AMIs of EC2 VM Import
//! tasks (ImportVmImage). Kiln has neither Windows builds nor a VM Import service; it imports
//! disk images of installed Linux systems (raw, qcow2, VMDK or VHD, with an ext2, ext3 or ext4
//! root file system), named by a URI in both calls: `s3://bucket/key` (read from the server's
//! S3 endpoint with the account's key) or `file:///path` (under an operator's import
//! directory). Everything else is refused with a message that says this.

use super::InfrastructureConfiguration;
use serde::{Deserialize, Serialize};

/// What Kiln imports, for refusals.
pub const WHAT_KILN_IMPORTS: &str = "Kiln imports disk images of installed Linux systems (raw, qcow2, VMDK or VHD, whose root file system is ext2, ext3 or ext4)";

/// Log groups of ImportVmImage must be in this namespace (and those of ImportDiskImage, unless
/// an execution role is given).
pub const LOG_GROUP_NAMESPACE: &str = "/aws/imagebuilder/";

/// Where a disk image is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskSource {
    /// An object of the server's S3-compatible endpoint.
    S3 { bucket: String, key: String },
    /// An absolute path on the server (allowed only under an `--import-dir`).
    File { path: String },
}

impl DiskSource {
    /// `s3://bucket/key` or `file:///path`; an ISO file or any other form is refused with a
    /// message naming what Kiln imports.
    pub fn parse(uri: &str) -> Result<DiskSource, String> {
        if uri.to_ascii_lowercase().ends_with(".iso") {
            return Err(format!(
                "'{uri}' is an ISO file (installation media); {WHAT_KILN_IMPORTS}"
            ));
        }
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
                return Err(format!("'{uri}' names no object; give s3://bucket/key"));
            }
            return Ok(DiskSource::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
        }
        if let Some(path) = uri.strip_prefix("file://") {
            if !path.starts_with('/') || path.len() < 2 || path.contains('\0') {
                return Err(format!(
                    "'{uri}': give an absolute path, file:///path/disk.qcow2"
                ));
            }
            return Ok(DiskSource::File {
                path: path.to_string(),
            });
        }
        Err(format!(
            "'{uri}' is neither s3://bucket/key nor file:///path; {WHAT_KILN_IMPORTS}"
        ))
    }

    /// The URI it was parsed from.
    pub fn uri(&self) -> String {
        match self {
            DiskSource::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            DiskSource::File { path } => format!("file://{path}"),
        }
    }
}

/// Which call made the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportKind {
    DiskImage,
    VmImage,
}

impl ImportKind {
    pub fn operation(self) -> &'static str {
        match self {
            ImportKind::DiskImage => "ImportDiskImage",
            ImportKind::VmImage => "ImportVmImage",
        }
    }

    /// The request member that names the disk.
    pub fn member(self) -> &'static str {
        match self {
            ImportKind::DiskImage => "uri",
            ImportKind::VmImage => "vmImportTaskId",
        }
    }
}

/// What an imported image was made from, kept in its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageImport {
    pub kind: ImportKind,
    pub source: DiskSource,
    pub description: Option<String>,
    /// The request's `osVersion`, if it gave one.
    pub os_version: Option<String>,
    /// ImportDiskImage's infrastructure configuration, as it was at the call.
    pub infrastructure: Option<InfrastructureConfiguration>,
    pub execution_role: Option<String>,
    pub log_group: Option<String>,
    /// What the worker found: the disk's format and where its root file system was.
    #[serde(default)]
    pub found: Option<String>,
}

/// Kiln imports Linux disks only; `platform` is the request's.
pub fn check_platform(platform: &str) -> Result<(), String> {
    if platform == "Linux" {
        return Ok(());
    }
    Err(format!(
        "'{platform}' is not a platform Kiln imports: {WHAT_KILN_IMPORTS}; give Linux"
    ))
}

/// An image's name: what the model's `ResourceName` allows (ImportVmImage's `name` is any
/// non-empty string in the model, but it becomes the image's ARN): 3 to 128 letters, digits,
/// hyphens, underscores and spaces, not starting or ending with a space.
pub fn check_image_name(name: &str) -> Result<(), String> {
    let inner = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let ok = (3..=128).contains(&name.len())
        && name.chars().all(|c| inner(c) || c == ' ')
        && name.starts_with(inner)
        && name.ends_with(inner);
    if ok {
        return Ok(());
    }
    Err(format!(
        "'{name}' cannot name an image: use 3 to 128 letters, digits, hyphens, underscores and spaces (no space first or last)"
    ))
}

/// An `osVersion` that names Windows contradicts a Linux import.
pub fn check_os_version(os_version: &str) -> Result<(), String> {
    if os_version.to_ascii_lowercase().contains("windows") {
        return Err(format!(
            "'{os_version}' is a Windows version; {WHAT_KILN_IMPORTS}"
        ));
    }
    Ok(())
}

/// ImportVmImage's `vmImportTaskId`: the disk itself, as [`DiskSource::parse`] reads it. An id
/// of an EC2 import task is refused: there is no VM Import service to ask.
pub fn vm_import_source(task_id: &str) -> Result<DiskSource, String> {
    if task_id.starts_with("import-") {
        return Err(format!(
            "'{task_id}' is an EC2 VM Import task id, and Kiln has no VM Import service: give the disk itself, s3://bucket/key (read from the server's S3 endpoint) or file:///path under an --import-dir of the server"
        ));
    }
    DiskSource::parse(task_id)
}

/// ImportVmImage's log group must be in `/aws/imagebuilder/`; ImportDiskImage's may be elsewhere
/// with an execution role.
pub fn check_log_group(kind: ImportKind, group: &str, has_role: bool) -> Result<(), String> {
    if group.starts_with(LOG_GROUP_NAMESPACE) {
        return Ok(());
    }
    match kind {
        ImportKind::VmImage => Err(format!(
            "'{group}' is outside {LOG_GROUP_NAMESPACE}, where ImportVmImage's log group must be"
        )),
        ImportKind::DiskImage if has_role => Ok(()),
        ImportKind::DiskImage => Err(format!(
            "'{group}' is outside {LOG_GROUP_NAMESPACE}; a log group elsewhere needs an executionRole"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for uri in ["s3://bucket/disks/a.qcow2", "file:///srv/import/disk.raw"] {
            assert_eq!(DiskSource::parse(uri).unwrap().uri(), uri);
        }
        let cases = [
            ("s3://bucket", "names no object"),
            ("s3://bucket/dir/", "names no object"),
            ("s3:///key", "names no object"),
            ("file://relative/x.raw", "absolute path"),
            ("https://example.com/disk.raw", "neither s3://"),
            ("s3://b/win11.ISO", "ISO file"),
            ("file:///srv/setup.iso", "ISO file"),
        ];
        for (uri, want) in cases {
            let e = DiskSource::parse(uri).unwrap_err();
            assert!(e.contains(want) && e.contains(uri), "{uri}: {e}");
        }
    }

    #[test]
    fn only_linux_disks_and_no_vm_import_tasks() {
        assert!(check_platform("Linux").is_ok());
        let e = check_platform("Windows").unwrap_err();
        assert!(
            e.contains("'Windows'") && e.contains("raw, qcow2, VMDK or VHD"),
            "{e}"
        );
        assert!(check_os_version("Microsoft Windows 11").is_err());
        assert!(check_os_version("Ubuntu 24.04").is_ok());
        let e = vm_import_source("import-ami-0123456789abcdef0").unwrap_err();
        assert!(e.contains("no VM Import service"), "{e}");
        assert_eq!(
            vm_import_source("s3://b/k.vmdk").unwrap(),
            DiskSource::S3 {
                bucket: "b".into(),
                key: "k.vmdk".into()
            }
        );
    }

    #[test]
    fn image_names_follow_resource_names() {
        assert!(check_image_name("my disk_1-a").is_ok());
        for bad in [
            "ab",
            " lead",
            "trail ",
            "a/b/c",
            "with.dot",
            &"x".repeat(129),
        ] {
            assert!(check_image_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_groups_follow_each_calls_rule() {
        let inside = "/aws/imagebuilder/imports";
        assert!(check_log_group(ImportKind::VmImage, inside, false).is_ok());
        assert!(check_log_group(ImportKind::VmImage, "/mine", true).is_err());
        assert!(check_log_group(ImportKind::DiskImage, "/mine", false).is_err());
        assert!(check_log_group(ImportKind::DiskImage, "/mine", true).is_ok());
    }
}
