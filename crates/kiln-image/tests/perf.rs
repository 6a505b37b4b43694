//! Snapshot speed against `tar -c | zstd -3 | sha256sum` on the same tree. Ignored by default;
//! run with `cargo test --release -p kiln-image --test perf -- --ignored --nocapture`.
//! `KILN_PERF_TREE` picks the tree copied (default /usr/lib/x86_64-linux-gnu).

mod common;

use common::*;
use kiln_image::{Compression, ImageStore};
use std::time::Instant;

#[test]
#[ignore]
fn snapshot_speed() {
    let src =
        std::env::var("KILN_PERF_TREE").unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu".into());
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    sh(&format!("cp -a {src} {}", q(&tree)));
    sh("sync");
    let size = sh(&format!("du -sb {} | cut -f1", q(&tree)));
    let files = sh(&format!("find {} | wc -l", q(&tree)));
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    // Warm the page cache the same way for both.
    sh(&format!("tar -C {} -cf - . > /dev/null", q(&tree)));

    for compression in [Compression::Zstd, Compression::Gzip] {
        let t0 = Instant::now();
        let layer = store.snapshot_layer(&tree, compression).unwrap();
        let ours = t0.elapsed();
        println!(
            "kiln snapshot {compression:?}: {:.2} s, blob {} MB",
            ours.as_secs_f64(),
            layer.descriptor.size() / 1_000_000
        );
    }
    let t0 = Instant::now();
    let out = sh(&format!(
        "tar -C {} -cf - . | zstd -3 -T1 -q | tee {} | sha256sum",
        q(&tree),
        q(&tmp.path().join("cli.tar.zst"))
    ));
    let cli = t0.elapsed();
    let cli_size = std::fs::metadata(tmp.path().join("cli.tar.zst"))
        .unwrap()
        .len();
    println!(
        "tar -c | zstd -3 | sha256sum: {:.2} s, {} MB ({})",
        cli.as_secs_f64(),
        cli_size / 1_000_000,
        out.split_whitespace().next().unwrap_or("")
    );
    println!("tree: {} bytes, {} entries", size.trim(), files.trim());
}
