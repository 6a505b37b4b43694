//! A distribution's `s3ExportConfiguration`: an AMI's disk image written to S3, as EC2's
//! export-image task writes it.
//!
//! - The disk is the AMI's contents (the store image `kiln-<build id>`, pulled from the shared
//!   registry when this machine lacks it) as `ImageStore::export_disk` makes it: an ext4 file
//!   system, no partition table, RAW as it is, VMDK stream-optimized (what VM Import/Export and
//!   vSphere take), VHD fixed.
//! - The key is EC2's: `<s3Prefix><export task id>.<raw|vmdk|vhd>`, the prefix as given
//!   (EC2 adds no `/`), the task id `export-ami-0` and 16 hex digits derived from the AMI and
//!   the format, so a retried distribution writes the same object again.
//! - It goes to `--s3-endpoint` signed with a key of the AMI's owner (see [`crate::s3`]),
//!   in one PUT up to 64 MiB and as a multipart upload above, streamed from a temporary file in
//!   `<data>/tmp/` that is removed afterwards. The disk is never read into memory.
//! - `roleName` is recorded: Kiln has no IAM role to assume; the account's key is the
//!   permission that counts.

use crate::logs::BuildLog;
use crate::Shared;
use kiln_domain::arn::Arn;
use kiln_domain::resources::ami::{Ami, S3ExportRecord};
use kiln_domain::resources::distribution::{DiskImageFormat, S3Export};
use kiln_image::DiskFormat;
use kiln_toe::actions::net::s3_file::Transfer;
use std::sync::atomic::{AtomicU64, Ordering};

/// EC2's name of a format (`diskImageFormat`).
fn format_name(format: DiskImageFormat) -> &'static str {
    match format {
        DiskImageFormat::Raw => "RAW",
        DiskImageFormat::Vmdk => "VMDK",
        DiskImageFormat::Vhd => "VHD",
    }
}

fn disk_format(format: DiskImageFormat) -> DiskFormat {
    match format {
        DiskImageFormat::Raw => DiskFormat::Raw,
        DiskImageFormat::Vmdk => DiskFormat::Vmdk,
        DiskImageFormat::Vhd => DiskFormat::Vhd,
    }
}

/// The export task id and the object key of exporting `ami_id` as `config` says.
pub fn export_key(ami_id: &str, config: &S3Export) -> (String, String) {
    let extension = disk_format(config.disk_image_format).name();
    let task_id = kiln_core::amis::derived_id("export-ami-", &[ami_id, extension]);
    let key = format!(
        "{}{task_id}.{extension}",
        config.s3_prefix.as_deref().unwrap_or("")
    );
    (task_id, key)
}

/// Writes the disk image of `ami` to S3 as `config` says; answers what was written. An error
/// names the bucket, the key and the cause.
pub fn export_to_s3(
    shared: &Shared,
    ami: &Ami,
    config: &S3Export,
    log: &BuildLog,
) -> Result<S3ExportRecord, String> {
    let format = disk_format(config.disk_image_format);
    let (task_id, key) = export_key(&ami.image_id, config);
    let object = format!("s3://{}/{key}", config.s3_bucket);
    let fail = |cause: String| format!("exporting {} to {object}: {cause}", ami.image_id);
    let s3 = crate::s3::config_for(shared, ami.owner()).map_err(fail)?;
    let source = Arn::parse(&ami.source_image).map_err(|e| fail(e.to_string()))?;
    let image =
        crate::registry::local_or_pulled_build(shared, &source, &ami.build_id).map_err(fail)?;
    log.event(&format!(
        "exporting {} as a {} disk image to {object} ({task_id})",
        ami.image_id,
        format_name(config.disk_image_format)
    ));
    // Unique in the process: two threads may export the same AMI (two distributions).
    static EXPORTS: AtomicU64 = AtomicU64::new(0);
    let file = shared.config.tmp_dir().join(format!(
        "{task_id}-{}-{}.{}",
        std::process::id(),
        EXPORTS.fetch_add(1, Ordering::Relaxed),
        format.name()
    ));
    let stopping = || shared.stopping();
    let written = shared
        .store
        .export_disk(&image, format, &file)
        .map_err(|e| format!("making the disk image: {e}"))
        .and_then(|()| {
            Transfer::new(&s3)
                .cancel_when(&stopping)
                .upload(&config.s3_bucket, &key, &file)
                .map_err(|e| e.to_string())
        });
    let _ = std::fs::remove_file(&file);
    let uploaded = written.map_err(fail)?;
    log.event(&format!(
        "exported {} to {object}: {} bytes in {} part(s)",
        ami.image_id, uploaded.size, uploaded.parts
    ));
    Ok(S3ExportRecord {
        task_id,
        disk_image_format: format_name(config.disk_image_format).to_string(),
        s3_bucket: config.s3_bucket.clone(),
        s3_key: key,
        role_name: config.role_name.clone(),
        size: uploaded.size,
        completed: shared.core.clock.now_millis(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_ec2s() {
        let config = S3Export {
            role_name: "vmimport".into(),
            disk_image_format: DiskImageFormat::Vmdk,
            s3_bucket: "b".into(),
            s3_prefix: Some("exports/".into()),
        };
        let (task, key) = export_key("ami-0123456789abcdef0", &config);
        assert!(task.starts_with("export-ami-0") && task.len() == "export-ami-0".len() + 16);
        assert_eq!(key, format!("exports/{task}.vmdk"));
        // Another format is another task; the same one is the same task again.
        let raw = S3Export {
            disk_image_format: DiskImageFormat::Raw,
            s3_prefix: None,
            ..config.clone()
        };
        let (raw_task, raw_key) = export_key("ami-0123456789abcdef0", &raw);
        assert_ne!(raw_task, task);
        assert_eq!(raw_key, format!("{raw_task}.raw"));
        assert_eq!(export_key("ami-0123456789abcdef0", &config).0, task);
    }
}
