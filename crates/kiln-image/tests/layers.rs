//! Lower directories (overlay mounts of unpacked layers), merged root file systems, exports.

mod common;

use common::*;
use kiln_image::{Compression, ImageStore};
use std::fs;
use std::os::unix::fs::MetadataExt;

#[test]
fn lower_dirs_mount_matches_umoci_and_merged_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let t = build_two_layers(&store, tmp.path(), Compression::Gzip);

    let lowers = store.lower_dirs(&t.top).unwrap();
    assert_eq!(lowers.len(), 2);
    // Topmost first; the top layer holds overlay whiteouts again.
    let top = &lowers[0];
    let wh = fs::symlink_metadata(top.join("gone.txt")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(top.join("d"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    // Cached: a second call unpacks nothing new and answers the same directories.
    assert_eq!(store.lower_dirs(&t.top).unwrap(), lowers);
    // The base image shares its layer's directory.
    assert_eq!(store.lower_dirs(&t.base).unwrap(), vec![lowers[1].clone()]);

    let merged = tmp.path().join("mnt");
    let mounted = {
        let _m = Mount::overlay(&lowers, None, &merged);
        listing(&merged)
    };
    let rootfs = umoci_unpack(&store_dir, "test", &tmp.path().join("bundle"));
    let reference = listing(&rootfs);
    assert_eq!(mounted, reference);
    assert!(!mounted.contains_key("gone.txt") && !mounted.contains_key("d/old.txt"));

    let flat = tmp.path().join("flat");
    store.merged_rootfs(&t.top, &flat).unwrap();
    assert_eq!(listing(&flat), reference);
    let (h1, h2) = (
        fs::metadata(flat.join("hl1")).unwrap(),
        fs::metadata(flat.join("hl2")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino());
}

#[test]
fn export_and_reimport_oci_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let t = build_two_layers(&store, tmp.path(), Compression::Zstd);

    let out = tmp.path().join("export");
    let exported = store.export_oci_layout(&t.top, &out, "v1").unwrap();
    assert_eq!(exported.digest, t.top.digest);
    // A standalone layout: no caches, no lock, no temporary files.
    let mut top: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["blobs", "index.json", "oci-layout"]);
    assert_eq!(fs::read_dir(out.join("blobs")).unwrap().count(), 1);
    // manifest + config + 2 layers
    assert_eq!(fs::read_dir(out.join("blobs/sha256")).unwrap().count(), 4);
    let inspect = sh(&format!("skopeo inspect oci:{}:v1", q(&out)));
    assert!(inspect.contains(&t.top.digest), "{inspect}");

    // Back in through import (another store), and also a layout skopeo wrote.
    let other = ImageStore::open(&tmp.path().join("other")).unwrap();
    let imported = other.import_oci_layout(&out, "v1", "again").unwrap();
    assert_eq!(imported.digest, t.top.digest);
    sh(&format!(
        "skopeo copy oci:{}:v1 oci:{}:sk",
        q(&out),
        q(&tmp.path().join("sk"))
    ));
    let via_skopeo = other
        .import_oci_layout(&tmp.path().join("sk"), "sk", "sk")
        .unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    other.merged_rootfs(&imported, &a).unwrap();
    other.merged_rootfs(&via_skopeo, &b).unwrap();
    assert_eq!(listing(&a), listing(&b));
    assert!(other.import_oci_layout(&out, "nope", "x").is_err());
}
