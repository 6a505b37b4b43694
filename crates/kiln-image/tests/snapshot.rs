//! Snapshots of a real overlay upper directory, checked with skopeo, umoci and sha256sum.

mod common;

use common::*;
use kiln_image::{Compression, ImageStore};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

fn check_snapshot(compression: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let t = build_two_layers(&store, tmp.path(), compression);

    // skopeo reads the store as an OCI layout.
    let inspect = sh(&format!("skopeo inspect oci:{}:test", q(&store_dir)));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2, "{inspect}");
    assert_eq!(v["Labels"]["kiln.test"], "yes", "{inspect}");
    assert_eq!(v["Digest"], t.top.digest.as_str());

    // The blob digest is sha256sum of the blob; the diff_id that of the decompressed blob.
    let blob = store
        .blob_path(t.top_layer.descriptor.digest().as_ref())
        .unwrap();
    let sum = sh(&format!("sha256sum {}", q(&blob)));
    assert_eq!(
        format!("sha256:{}", sum.split_whitespace().next().unwrap()),
        t.top_layer.descriptor.digest().to_string()
    );
    assert_eq!(
        t.top_layer.descriptor.size(),
        fs::metadata(&blob).unwrap().len()
    );
    let decompress = match compression {
        Compression::Zstd => "zstd -dc",
        Compression::Gzip => "gzip -dc",
    };
    let raw = sh(&format!("{decompress} {} | sha256sum", q(&blob)));
    assert_eq!(
        format!("sha256:{}", raw.split_whitespace().next().unwrap()),
        t.top_layer.diff_id
    );
    // The tar itself: OCI whiteouts and the opaque marker, no overlay xattrs.
    let names = sh(&format!("{decompress} {} | tar -t", q(&blob)));
    assert!(names.lines().any(|l| l == ".wh.gone.txt"), "{names}");
    assert!(names.lines().any(|l| l == "d/.wh..wh..opq"), "{names}");
    let verbose = sh(&format!("{decompress} {} | tar -tv --xattrs", q(&blob)));
    assert!(!verbose.contains("trusted.overlay"), "{verbose}");

    // umoci gives the expected root file system. Debian 12's umoci (0.4.7) does not read zstd
    // layers, so a zstd image is first recompressed by skopeo (whose Go zstd and tar readers
    // then check our stream independently).
    let layout = match compression {
        Compression::Gzip => store_dir.clone(),
        Compression::Zstd => {
            let conv = tmp.path().join("gzip-copy");
            sh(&format!(
                "skopeo copy --dest-compress --dest-compress-format gzip oci:{}:test oci:{}:test",
                q(&store_dir),
                q(&conv)
            ));
            conv
        }
    };
    let rootfs = umoci_unpack(&layout, "test", &tmp.path().join("bundle"));
    assert!(!rootfs.join("gone.txt").exists());
    assert!(!rootfs.join("d/old.txt").exists());
    assert!(!rootfs.join("d/sub").exists());
    assert_eq!(
        fs::read_to_string(rootfs.join("d/new.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("keep/kept.txt")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("replaced.txt")).unwrap(),
        "changed\n"
    );
    let f = fs::metadata(rootfs.join("file.txt")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1000, 1000, 0o640));
    assert_eq!(f.mtime(), 1_600_000_000);
    assert_eq!(
        xattr::get(rootfs.join("file.txt"), "user.kiln")
            .unwrap()
            .as_deref(),
        Some(&b"1"[..])
    );
    let owned = fs::metadata(rootfs.join("owned")).unwrap();
    assert_eq!((owned.uid(), owned.mode() & 0o7777), (1000, 0o750));
    assert_eq!(
        fs::metadata(rootfs.join("owned/suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(rootfs.join("link")).unwrap().to_str(),
        Some("file.txt")
    );
    assert_eq!(
        fs::read_link(rootfs.join("abslink")).unwrap().to_str(),
        Some("/nonexistent/abs")
    );
    let (h1, h2) = (
        fs::metadata(rootfs.join("hl1")).unwrap(),
        fs::metadata(rootfs.join("hl2")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino(), "hard links stay one inode");
    assert!(fs::symlink_metadata(rootfs.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::read_to_string(rootfs.join(LONG_DIR).join(LONG_FILE)).unwrap(),
        "long\n"
    );

    // The layout also survives a skopeo copy (it validates every blob).
    sh(&format!(
        "skopeo copy oci:{}:test oci:{}:copied",
        q(&store_dir),
        q(&tmp.path().join("copy"))
    ));
}

#[test]
fn zstd_snapshot_is_read_by_skopeo_and_umoci() {
    check_snapshot(Compression::Zstd);
}

#[test]
fn gzip_snapshot_is_read_by_skopeo_and_umoci() {
    check_snapshot(Compression::Gzip);
}

#[test]
fn upper_dirs_made_with_redirect_dir_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("moved")).unwrap();
    xattr::set(upper.join("moved"), "trusted.overlay.redirect", b"/orig").unwrap();
    let msg = store
        .snapshot_layer(&upper, Compression::Zstd)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("redirect_dir=off"), "{msg}");
    // Nothing half-written is left behind.
    assert_eq!(
        fs::read_dir(tmp.path().join("store/tmp")).unwrap().count(),
        0
    );
}
