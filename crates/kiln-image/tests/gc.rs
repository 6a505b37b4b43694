//! Deleting tags, garbage collection, and concurrent commits.

mod common;

use common::*;
use kiln_image::{CommitMeta, Compression, ImageStore};
use std::collections::HashSet;
use std::fs;
use std::time::Duration;

fn blobs(store: &ImageStore) -> HashSet<String> {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

#[test]
fn gc_removes_only_unreferenced_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = ImageStore::open(&store_dir).unwrap();
    let t = build_two_layers(&store, tmp.path(), Compression::Zstd);
    store.lower_dirs(&t.top).unwrap();
    let before = blobs(&store);

    // Nothing to collect while both tags exist.
    let report = store.gc(Duration::ZERO).unwrap();
    assert!(
        report.blobs.is_empty() && report.unpacked.is_empty(),
        "{report:?}"
    );

    // A layer snapshotted but not committed survives a gc with a grace period.
    let extra = tmp.path().join("extra");
    fs::create_dir(&extra).unwrap();
    fs::write(extra.join("f"), "pending").unwrap();
    let pending = store.snapshot_layer(&extra, Compression::Gzip).unwrap();
    let report = store.gc(Duration::from_secs(3600)).unwrap();
    assert!(report.blobs.is_empty(), "{report:?}");
    store
        .commit(Some(&t.base), pending, &CommitMeta::default(), "pending")
        .unwrap();

    store.delete("test").unwrap();
    assert!(
        store.delete("test").is_err(),
        "deleting twice names the missing tag"
    );
    let report = store.gc(Duration::ZERO).unwrap();
    let manifest_of_top = t.top.digest.clone();
    let removed: HashSet<String> = report.blobs.iter().cloned().collect();
    // The top image's manifest, config and layer go; the base and the pending image stay.
    assert_eq!(removed.len(), 3, "{report:?}");
    assert!(removed.contains(&manifest_of_top));
    assert!(removed.contains(&t.top_layer.descriptor.digest().to_string()));
    assert_eq!(report.unpacked, vec![t.top_layer.diff_id.clone()]);
    let after = blobs(&store);
    for kept in before.difference(&removed) {
        assert!(after.contains(kept), "{kept} was removed");
    }
    for gone in &removed {
        assert!(!after.contains(gone));
    }
    // What is left is whole.
    sh(&format!("skopeo inspect oci:{}:base", q(&store_dir)));
    sh(&format!(
        "skopeo copy oci:{}:pending oci:{}:p",
        q(&store_dir),
        q(&tmp.path().join("copy"))
    ));
    assert_eq!(store.lower_dirs(&t.base).unwrap().len(), 1);
    assert!(store.resolve("test").is_err());
}

#[test]
fn concurrent_commits_keep_every_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = std::sync::Arc::new(ImageStore::open(&store_dir).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let dir = tmp.path().join(format!("up{i}"));
            std::thread::spawn(move || {
                fs::create_dir(&dir).unwrap();
                fs::write(dir.join("n"), format!("{i}")).unwrap();
                // A second handle on the same root, as another process would have.
                let other = ImageStore::open(store.root()).unwrap();
                let layer = other.snapshot_layer(&dir, Compression::Zstd).unwrap();
                other
                    .commit(None, layer, &CommitMeta::default(), &format!("t{i}"))
                    .unwrap()
            })
        })
        .collect();
    let images: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let tags: HashSet<String> = store.images().unwrap().into_iter().map(|i| i.tag).collect();
    assert_eq!(tags.len(), 8);
    for i in images {
        assert_eq!(store.resolve(&i.tag).unwrap(), i);
    }
}
