//! What kind of disk image a file is, by its content (`qemu-img info`, never the name), and
//! whether Kiln may read it: raw, qcow2, VMDK or VHD, self-contained.
//!
//! A disk image can name other files that reading it would open: a qcow2, VMDK or VHD with a
//! backing file, a qcow2 with an external data file, a VMDK descriptor whose extents are other
//! files. A caller could point those at the host's files, so they are refused, and the
//! conversion opens the image with `backing: null` besides. Encrypted images are refused
//! (there is no key to give). A fixed VHD is raw data with a 512-byte footer, which qemu's
//! probe calls raw: the `conectix` cookie of the footer tells it. An ISO 9660 image (also
//! "raw" to qemu) is installation media, not an installed system.

use crate::DiskFormat;
use serde_json::Value;

/// The largest virtual size Kiln converts (the disk is written out sparse, but a bigger claim
/// is more likely a crafted header than a root file system).
pub(crate) const MAX_VIRTUAL_SIZE: u64 = 4 << 40;

/// VMDK kinds whose data is in the file itself.
const SINGLE_FILE_VMDKS: [&str; 2] = ["monolithicSparse", "streamOptimized"];

const WHAT_KILN_IMPORTS: &str =
    "Kiln imports raw, qcow2, VMDK and VHD disk images of installed Linux systems";

/// A disk image Kiln may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    pub format: DiskFormat,
    /// The disk's size in bytes.
    pub virtual_size: u64,
    /// A fixed VHD: raw data followed by its footer, read as it is.
    pub fixed_vhd: bool,
}

/// Judges `qemu-img info --output=json` of the file `path` (as qemu-img named it), with the
/// file's first bytes (`head`, at least 36 KiB when the file has them) and last 512 (`tail`).
pub(crate) fn judge(info: &Value, path: &str, head: &[u8], tail: &[u8]) -> Result<Probe, String> {
    let format = info["format"].as_str().unwrap_or_default();
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(backing) = info.get(key).and_then(Value::as_str) {
            return Err(format!(
                "it is a {format} image that names a backing file ({backing}); Kiln imports self-contained disk images only"
            ));
        }
    }
    if info["encrypted"].as_bool() == Some(true) {
        return Err(format!(
            "it is an encrypted {format} image; Kiln imports unencrypted disk images only"
        ));
    }
    let data = &info["format-specific"]["data"];
    let (format, fixed_vhd) = match format {
        "raw" if head.get(0x8001..0x8006) == Some(b"CD001") => {
            return Err(format!(
                "it is an ISO 9660 image (installation media); {WHAT_KILN_IMPORTS}"
            ))
        }
        "raw" if tail.starts_with(b"conectix") => (DiskFormat::Vhd, true),
        "raw" => (DiskFormat::Raw, false),
        "qcow2" => {
            if let Some(file) = data.get("data-file").and_then(Value::as_str) {
                return Err(format!(
                    "it is a qcow2 image whose data is in another file ({file}); Kiln imports self-contained disk images only"
                ));
            }
            if data.get("encrypt").is_some() {
                return Err(
                    "it is an encrypted qcow2 image; Kiln imports unencrypted disk images only"
                        .into(),
                );
            }
            (DiskFormat::Qcow2, false)
        }
        "vmdk" => {
            let kind = data["create-type"].as_str().unwrap_or("unknown");
            if !SINGLE_FILE_VMDKS.contains(&kind) {
                return Err(format!(
                    "it is a VMDK of type {kind}, whose data is in other files; Kiln imports single-file VMDKs ({})",
                    SINGLE_FILE_VMDKS.join(", ")
                ));
            }
            let outside = data["extents"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["filename"].as_str())
                .find(|f| *f != path);
            if let Some(file) = outside {
                return Err(format!(
                    "it is a VMDK with an extent in another file ({file}); Kiln imports single-file VMDKs"
                ));
            }
            (DiskFormat::Vmdk, false)
        }
        "vpc" => (DiskFormat::Vhd, false),
        "" => {
            return Err(format!(
                "qemu-img could not tell its format; {WHAT_KILN_IMPORTS}"
            ))
        }
        other => return Err(format!("it is a {other} image; {WHAT_KILN_IMPORTS}")),
    };
    let virtual_size = info["virtual-size"].as_u64().unwrap_or(0);
    if virtual_size == 0 || virtual_size > MAX_VIRTUAL_SIZE {
        return Err(format!(
            "its virtual size is {virtual_size} bytes; Kiln imports disks of 1 byte to {} TiB",
            MAX_VIRTUAL_SIZE >> 40
        ));
    }
    Ok(Probe {
        format,
        virtual_size,
        fixed_vhd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FD: &str = "/dev/fd/3";

    fn ok(info: Value) -> Probe {
        judge(&info, FD, &[0u8; 40000], &[0u8; 512]).unwrap()
    }

    fn refused(info: Value, head: &[u8], tail: &[u8]) -> String {
        judge(&info, FD, head, tail).unwrap_err()
    }

    #[test]
    fn formats_by_content() {
        let raw = json!({"format": "raw", "virtual-size": 1 << 20});
        assert_eq!(ok(raw.clone()).format, DiskFormat::Raw);
        let mut tail = [0u8; 512];
        tail[..8].copy_from_slice(b"conectix");
        let vhd = judge(&raw, FD, &[0u8; 40000], &tail).unwrap();
        assert_eq!((vhd.format, vhd.fixed_vhd), (DiskFormat::Vhd, true));
        assert_eq!(
            ok(json!({"format": "vpc", "virtual-size": 1})).format,
            DiskFormat::Vhd
        );
        assert_eq!(
            ok(json!({"format": "qcow2", "virtual-size": 1})).format,
            DiskFormat::Qcow2
        );
        let vmdk = json!({"format": "vmdk", "virtual-size": 1, "format-specific": {"type": "vmdk",
            "data": {"create-type": "streamOptimized", "extents": [{"filename": FD}]}}});
        assert_eq!(ok(vmdk).format, DiskFormat::Vmdk);
    }

    #[test]
    fn images_that_reach_other_files_are_refused() {
        let zero = [0u8; 512];
        let backing =
            json!({"format": "qcow2", "virtual-size": 1, "backing-filename": "/etc/shadow"});
        assert!(refused(backing, &zero, &zero).contains("backing file (/etc/shadow)"));
        let data_file = json!({"format": "qcow2", "virtual-size": 1,
            "format-specific": {"type": "qcow2", "data": {"data-file": "/dev/vda"}}});
        assert!(refused(data_file, &zero, &zero).contains("another file (/dev/vda)"));
        let flat = json!({"format": "vmdk", "virtual-size": 1,
            "format-specific": {"type": "vmdk", "data": {"create-type": "monolithicFlat"}}});
        assert!(refused(flat, &zero, &zero).contains("type monolithicFlat"));
        let extent = json!({"format": "vmdk", "virtual-size": 1, "format-specific": {"type": "vmdk",
            "data": {"create-type": "monolithicSparse", "extents": [{"filename": FD}, {"filename": "/root/x"}]}}});
        assert!(refused(extent, &zero, &zero).contains("(/root/x)"));
        let encrypted = json!({"format": "qcow2", "virtual-size": 1, "encrypted": true});
        assert!(refused(encrypted, &zero, &zero).contains("encrypted"));
    }

    #[test]
    fn other_formats_iso_and_sizes_are_refused() {
        let zero = [0u8; 512];
        let vdi = refused(json!({"format": "vdi", "virtual-size": 1}), &zero, &zero);
        assert!(
            vdi.contains("a vdi image") && vdi.contains("raw, qcow2, VMDK and VHD"),
            "{vdi}"
        );
        let mut iso = vec![0u8; 0x9000];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        let e = refused(json!({"format": "raw", "virtual-size": 1}), &iso, &zero);
        assert!(e.contains("ISO 9660"), "{e}");
        let huge = refused(
            json!({"format": "raw", "virtual-size": 5u64 << 40}),
            &zero,
            &zero,
        );
        assert!(huge.contains("4 TiB"), "{huge}");
    }
}
