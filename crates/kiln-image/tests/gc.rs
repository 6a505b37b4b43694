//! Deleting tags, garbage collection, and concurrent commits.

mod common;

use common::*;
use kiln_image::{CommitMeta, Compression, GcReport, ImageRef, ImageStore};
use std::collections::HashSet;
use std::fs;
use std::path::Path;
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
    // The test's copy of the top layer holds its pin: only the digests are kept.
    let top_digest = t.top_layer.descriptor.digest().to_string();
    let top_diff_id = t.top_layer.diff_id.clone();
    let (base, top) = (t.base.clone(), t.top.clone());
    drop(t);
    store.lower_dirs(&top).unwrap();
    let before = blobs(&store);

    // Nothing to collect while both tags exist.
    let report = store.gc(Duration::ZERO).unwrap();
    assert!(
        report.blobs.is_empty() && report.unpacked.is_empty(),
        "{report:?}"
    );

    // A layer snapshotted but not committed survives a gc, whatever its age: it is pinned.
    let extra = tmp.path().join("extra");
    fs::create_dir(&extra).unwrap();
    fs::write(extra.join("f"), "pending").unwrap();
    let pending = store.snapshot_layer(&extra, Compression::Gzip).unwrap();
    let report = store.gc(Duration::ZERO).unwrap();
    assert!(report.blobs.is_empty(), "{report:?}");
    store
        .commit(Some(&base), pending, &CommitMeta::default(), "pending")
        .unwrap();

    store.delete("test").unwrap();
    assert!(
        store.delete("test").is_err(),
        "deleting twice names the missing tag"
    );
    let report = store.gc(Duration::ZERO).unwrap();
    let removed: HashSet<String> = report.blobs.iter().cloned().collect();
    // The top image's manifest, config and layer go; the base and the pending image stay.
    assert_eq!(removed.len(), 3, "{report:?}");
    assert!(removed.contains(&top.digest));
    assert!(removed.contains(&top_digest));
    assert_eq!(report.unpacked, vec![top_diff_id]);
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
    assert_eq!(store.lower_dirs(&base).unwrap().len(), 1);
    assert!(store.resolve("test").is_err());
    // Idempotent: a second collection finds nothing.
    assert_eq!(store.gc(Duration::ZERO).unwrap(), GcReport::default());
}

/// A one-file layer committed on `parent` as `tag`.
fn child(store: &ImageStore, work: &Path, parent: Option<&ImageRef>, tag: &str) -> ImageRef {
    let dir = work.join(format!("up-{tag}"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(tag), format!("content of {tag}").repeat(1000)).unwrap();
    let layer = store.snapshot_layer(&dir, Compression::Zstd).unwrap();
    store
        .commit(parent, layer, &CommitMeta::default(), tag)
        .unwrap()
}

fn unpacked(store: &ImageStore) -> HashSet<String> {
    fs::read_dir(store.root().join("unpacked"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Blob digests of an image: manifest, config, layers.
fn blobs_of(store: &ImageStore, image: &ImageRef) -> Vec<String> {
    let m = store.manifest(image).unwrap();
    let mut out = vec![image.digest.clone(), m.config().digest().to_string()];
    out.extend(m.layers().iter().map(|l| l.digest().to_string()));
    out
}

#[test]
fn a_pinned_untagged_image_keeps_its_layers_until_the_pin_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let parent = child(&store, tmp.path(), None, "parent");
    // A build on `parent`: it pins it and mounts its unpacked layers.
    let pin = store.pin_image(&parent).unwrap();
    let lowers = store.lower_dirs(&parent).unwrap();
    store.delete("parent").unwrap();
    let report = store.gc(Duration::ZERO).unwrap();
    assert!(
        report.blobs.is_empty() && report.unpacked.is_empty(),
        "{report:?}"
    );
    for d in blobs_of(&store, &parent) {
        assert!(store.blob_path(&d).unwrap().exists(), "{d} was removed");
    }
    assert!(lowers.iter().all(|l| l.is_dir()));
    // The child build commits on the (deleted) parent: the new image is whole.
    let built = child(&store, tmp.path(), Some(&parent), "built");
    assert_eq!(store.manifest(&built).unwrap().layers().len(), 2);
    let usage = store.usage().unwrap();
    assert_eq!(usage.reclaimable_bytes, 0, "{usage:?}");

    // Once the child's tag goes too, only the pin holds everything; then nothing does.
    store.delete("built").unwrap();
    store.gc(Duration::ZERO).unwrap();
    for d in blobs_of(&store, &parent) {
        assert!(store.blob_path(&d).unwrap().exists(), "{d} was removed");
    }
    let usage = store.usage().unwrap();
    assert!(
        usage.pinned_bytes > 0 && usage.images.is_empty(),
        "{usage:?}"
    );
    drop(pin);
    let usage = store.usage().unwrap();
    assert_eq!(usage.reclaimable_bytes, usage.total_bytes, "{usage:?}");
    let report = store.gc(Duration::ZERO).unwrap();
    assert_eq!(report.unpacked.len(), 1, "{report:?}");
    assert!(blobs(&store).is_empty(), "{:?}", blobs(&store));
    assert!(unpacked(&store).is_empty());
    assert_eq!(store.usage().unwrap().total_bytes, 0);
}

#[test]
fn a_shared_layer_survives_the_deletion_of_one_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let base = child(&store, tmp.path(), None, "base");
    let a = child(&store, tmp.path(), Some(&base), "a");
    let b = child(&store, tmp.path(), Some(&base), "b");
    store.lower_dirs(&a).unwrap();
    store.lower_dirs(&b).unwrap();
    store.delete("base").unwrap();
    let usage = store.usage().unwrap();
    let of = |tag: &str| usage.images.iter().find(|i| i.tag == tag).unwrap().clone();
    let (ua, ub) = (of("a"), of("b"));
    // The base layer (blob and unpacked) is shared; each top layer is unique.
    assert!(ua.shared_bytes > 0 && ua.shared_bytes == ub.shared_bytes);
    assert!(ua.unique_bytes > 0 && ua.bytes == ua.unique_bytes + ua.shared_bytes);
    // The base's manifest and config are reachable from no tag any more.
    let base_blobs = blobs_of(&store, &base);
    let base_only: u64 = base_blobs[..2]
        .iter()
        .map(|d| fs::metadata(store.blob_path(d).unwrap()).unwrap().len())
        .sum();
    assert_eq!(usage.reclaimable_bytes, base_only, "{usage:?}");
    assert_eq!(
        usage.total_bytes,
        ua.unique_bytes + ub.unique_bytes + ua.shared_bytes + base_only
    );

    store.delete("a").unwrap();
    let before = store.usage().unwrap().total_bytes;
    let report = store.gc(Duration::ZERO).unwrap();
    assert_eq!(
        report.bytes + report.unpacked_bytes,
        ua.unique_bytes + base_only
    );
    let after = store.usage().unwrap();
    assert_eq!(
        after.total_bytes,
        before - report.bytes - report.unpacked_bytes
    );
    // b is whole: its base layer is still there, blob and unpacked directory.
    for d in blobs_of(&store, &b) {
        assert!(store.blob_path(&d).unwrap().exists(), "{d} was removed");
    }
    assert_eq!(unpacked(&store).len(), 2);
    assert_eq!(after.images.len(), 1);
    assert_eq!(after.images[0].unique_bytes, after.total_bytes);
    assert_eq!(store.lower_dirs(&b).unwrap().len(), 2);
}

#[test]
fn concurrent_gc_and_commits_never_lose_a_committed_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = std::sync::Arc::new(ImageStore::open(&store_dir).unwrap());
    let base = child(&store, tmp.path(), None, "base");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            // Another handle, as another process would have.
            let other = ImageStore::open(store.root()).unwrap();
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                other.gc(Duration::ZERO).unwrap();
                runs += 1;
            }
            runs
        })
    };
    // The builds' parent: pinned for as long as they run, deleted while they do.
    let parent_pin = store.pin_image(&base).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (store, base, work) = (store.clone(), base.clone(), tmp.path().to_path_buf());
            std::thread::spawn(move || {
                let mut made = Vec::new();
                for n in 0..5 {
                    let tag = format!("t{i}-{n}");
                    // Each commit pins the base again, as the layers it unpacks do.
                    let _pin = store.pin_image(&base).unwrap();
                    made.push(child(&store, &work, Some(&base), &tag));
                    if n % 2 == 0 {
                        store.delete(&tag).unwrap();
                        made.pop();
                    }
                }
                made
            })
        })
        .collect();
    store.delete("base").unwrap();
    let images: Vec<ImageRef> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    drop(parent_pin);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let runs = collector.join().unwrap();
    assert!(runs > 0);
    store.gc(Duration::ZERO).unwrap();
    assert_eq!(images.len(), 12);
    for image in &images {
        assert_eq!(&store.resolve(&image.tag).unwrap(), image);
        for d in blobs_of(&store, image) {
            assert!(
                store.blob_path(&d).unwrap().exists(),
                "{d} of {} lost",
                image.tag
            );
        }
        assert_eq!(store.lower_dirs(image).unwrap().len(), 2);
    }
    let usage = store.usage().unwrap();
    assert_eq!(usage.reclaimable_bytes, 0, "{usage:?}");
    assert!(!store.root().join("pins").read_dir().unwrap().any(|_| true));
}

#[test]
fn what_a_crash_leaves_is_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let kept = child(&store, tmp.path(), None, "kept");
    // A process that died: its pid, its half-written blob, half-unpacked layer and pin.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let root = store.root().to_path_buf();
    fs::write(root.join(format!("tmp/.tmp-layer-{pid}-0-1")), "half").unwrap();
    fs::create_dir(root.join(format!("unpacked/.tmp-unpack-{pid}-1-2"))).unwrap();
    let orphan = child(&store, tmp.path(), None, "orphan");
    let orphan_layer = store.manifest(&orphan).unwrap().layers()[0]
        .digest()
        .to_string();
    store.delete("orphan").unwrap();
    fs::create_dir_all(root.join("pins")).unwrap();
    fs::write(
        root.join("pins/dead"),
        format!(
            "blob {orphan_layer}
"
        ),
    )
    .unwrap();
    // A live process's temporary file (ours) stays.
    let ours = root.join(format!("tmp/.tmp-layer-{}-9-9", std::process::id()));
    fs::write(&ours, "writing").unwrap();

    let report = store.gc(Duration::ZERO).unwrap();
    assert_eq!(report.stale_pins, 1, "{report:?}");
    assert_eq!(report.temporary, 2, "{report:?}");
    assert!(report.blobs.contains(&orphan_layer), "{report:?}");
    assert!(ours.exists());
    assert!(!root.join("pins/dead").exists());
    for d in blobs_of(&store, &kept) {
        assert!(store.blob_path(&d).unwrap().exists());
    }
    fs::remove_file(&ours).unwrap();
    let usage = store.usage().unwrap();
    assert_eq!(usage.reclaimable_bytes, 0);
    assert_eq!(usage.total_bytes, usage.images[0].bytes);
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
