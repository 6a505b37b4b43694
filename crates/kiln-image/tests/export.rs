//! Disk-image export of the busybox base (plus a layer with odd owners and modes), checked
//! with qemu-img, e2fsck and debugfs. Needs root, busybox-static, e2fsprogs and qemu-utils.

mod common;

use common::*;
use kiln_image::{CommitMeta, Compression, DiskFormat, ImageRef, ImageStore};
use std::fs;
use std::path::Path;
use std::time::Instant;

/// The busybox base with a layer on top holding a setuid file owned 1000:1001.
fn test_image(store: &ImageStore, work: &Path) -> ImageRef {
    let base = store.busybox_base("base:1").unwrap();
    let upper = work.join("upper");
    sh(&format!(
        "set -e; mkdir -p {u}/opt/app && cd {u}/opt/app
         printf 'kiln export test\\n' > tool && chown 1000:1001 tool && chmod 4750 tool
         ln tool tool-link && ln -s tool tool-sym",
        u = q(&upper)
    ));
    let layer = store.snapshot_layer(&upper, Compression::Zstd).unwrap();
    store
        .commit(Some(&base), layer, &CommitMeta::default(), "export-test")
        .unwrap()
}

fn qemu_info(path: &Path, format: Option<&str>) -> serde_json::Value {
    let f = format.map(|f| format!("-f {f}")).unwrap_or_default();
    let out = sh(&format!("qemu-img info {f} --output=json {}", q(path)));
    serde_json::from_str(&out).unwrap()
}

fn tree_bytes(dir: &Path) -> u64 {
    sh(&format!("du -s --apparent-size -B1 {}", q(dir)))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn export_disk_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let image = test_image(&store, tmp.path());
    let rootfs = tmp.path().join("rootfs");
    store.merged_rootfs(&image, &rootfs).unwrap();
    let tree = tree_bytes(&rootfs);
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();

    let mut sizes = None;
    for format in DiskFormat::ALL {
        let out = out_dir.join(format!("disk.{format}"));
        let t = Instant::now();
        store.export_disk(&image, format, &out).unwrap();
        eprintln!("export {format}: {:?}", t.elapsed());

        // qemu-img reads it as the right format. A fixed VHD has only a footer, so qemu
        // probes it as raw: name the format and check the footer.
        let info = if format == DiskFormat::Vhd {
            let info = qemu_info(&out, Some("vpc"));
            let data = fs::read(&out).unwrap();
            let footer = &data[data.len() - 512..];
            assert_eq!(&footer[..8], b"conectix");
            assert_eq!(
                u32::from_be_bytes(footer[60..64].try_into().unwrap()),
                2,
                "disk type fixed"
            );
            info
        } else {
            qemu_info(&out, None)
        };
        assert_eq!(info["format"], format.qemu_format(), "{info}");
        let vsize = info["virtual-size"].as_u64().unwrap();
        assert!(
            vsize >= tree,
            "{format}: virtual size {vsize} < tree {tree}"
        );
        assert_eq!(vsize % (1 << 20), 0, "{format}: {vsize} not whole MiB");
        // Every format has the file system's size (VHD: no CHS rounding).
        assert_eq!(*sizes.get_or_insert(vsize), vsize, "{format}");
        if format == DiskFormat::Vmdk {
            assert_eq!(
                info["format-specific"]["data"]["create-type"],
                "streamOptimized"
            );
        }
        // The converted image holds the same file system: back to raw, e2fsck clean.
        if format != DiskFormat::Raw {
            let back = out_dir.join("back.raw");
            sh(&format!(
                "qemu-img convert -f {} -O raw {} {} && e2fsck -fn {}",
                format.qemu_format(),
                q(&out),
                q(&back),
                q(&back)
            ));
            fs::remove_file(&back).unwrap();
        }
    }

    // No temporary files left, beside the outputs or in the store.
    let mut names: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["disk.qcow2", "disk.raw", "disk.vhd", "disk.vmdk"]);
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0,
        "store tmp/ not empty"
    );

    // The raw image: a clean ext4 file system with content, owners, modes and links kept.
    let raw = out_dir.join("disk.raw");
    sh(&format!("e2fsck -fn {}", q(&raw)));
    let label = sh(&format!("e2label {}", q(&raw)));
    assert_eq!(label.trim(), "kiln-root");
    let stat = |p: &str| sh(&format!("debugfs -R 'stat {p}' {} 2>/dev/null", q(&raw)));
    let root = stat("/");
    assert!(root.contains("Mode:  0755"), "{root}");
    assert!(root.contains("User:     0   Group:     0"), "{root}");
    let bb = stat("/bin/busybox");
    assert!(bb.contains("Mode:  0755"), "{bb}");
    assert!(bb.contains("User:     0   Group:     0"), "{bb}");
    let tool = stat("/opt/app/tool");
    assert!(tool.contains("Mode:  04750"), "{tool}");
    assert!(tool.contains("User:  1000   Group:  1001"), "{tool}");
    assert!(tool.contains("Links: 2"), "hard link kept: {tool}");
    let sym = stat("/opt/app/tool-sym");
    assert!(sym.contains("Type: symlink"), "{sym}");
    let dumped = tmp.path().join("busybox.dumped");
    sh(&format!(
        "debugfs -R 'dump /bin/busybox {}' {} 2>/dev/null",
        dumped.display(),
        q(&raw)
    ));
    assert_eq!(
        fs::read(&dumped).unwrap(),
        fs::read(rootfs.join("bin/busybox")).unwrap()
    );
    let cat = sh(&format!(
        "debugfs -R 'cat /opt/app/tool-link' {} 2>/dev/null",
        q(&raw)
    ));
    assert_eq!(cat, "kiln export test\n");

    // Exporting again replaces the output.
    store
        .export_disk(&image, DiskFormat::Qcow2, &out_dir.join("disk.qcow2"))
        .unwrap();
    assert_eq!(
        qemu_info(&out_dir.join("disk.qcow2"), None)["format"],
        "qcow2"
    );
}

#[test]
fn export_disk_errors() {
    let e = DiskFormat::parse("vdi").unwrap_err().to_string();
    assert!(
        e.contains("vdi") && e.contains("raw, qcow2, vmdk, vhd"),
        "{e}"
    );
    assert_eq!("vhd".parse::<DiskFormat>().unwrap(), DiskFormat::Vhd);

    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let e = store.resolve("nope").unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");

    // An image reference that is not in the store: an error, and no output.
    let base = store.busybox_base("base:1").unwrap();
    let missing = ImageRef {
        digest: format!("sha256:{}", "0".repeat(64)),
        tag: "gone".into(),
    };
    let out = tmp.path().join("disk.raw");
    let e = store
        .export_disk(&missing, DiskFormat::Raw, &out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("image `gone`")
            && e.contains(&"0".repeat(64))
            && e.contains("not in the image store"),
        "{e}"
    );
    assert!(!out.exists());

    // A deleted image (its blobs collected) errors too.
    store.delete("base:1").unwrap();
    store.gc(std::time::Duration::ZERO).unwrap();
    let e = store
        .export_disk(&base, DiskFormat::Qcow2, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("image `base:1`") && e.contains("missing"), "{e}");
    assert!(!out.exists());

    // An output directory that does not exist.
    let base = store.busybox_base("base:1").unwrap();
    let e = store
        .export_disk(
            &base,
            DiskFormat::Raw,
            &tmp.path().join("no/such/dir/disk.raw"),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}
