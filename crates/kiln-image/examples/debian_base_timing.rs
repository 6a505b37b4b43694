//! Times the two ways of making the managed Debian base, cold (a fresh store each, nothing
//! cached), alternating: `mmdebstrap` (the host path) and Kiln's own mirror path. Needs root
//! and the network to the mirror.
//!
//! `cargo run --release -p kiln-image --example debian_base_timing -- [ROUNDS] [MIRROR]`

use kiln_image::{DebianMirror, ImageStore, DEFAULT_DEBIAN_MIRROR};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let mirror = args
        .next()
        .unwrap_or_else(|| DEFAULT_DEBIAN_MIRROR.to_string());
    for round in 1..=rounds {
        for path in ["mmdebstrap", "mirror"] {
            let tmp = tempfile::tempdir()?;
            let store = ImageStore::open(tmp.path())?;
            let started = Instant::now();
            let image = match path {
                "mmdebstrap" => store.debian_base(&mirror, "bookworm", "debian-12")?,
                _ => store.debian_base_mirror(
                    &DebianMirror::new(&mirror),
                    "bookworm",
                    "debian-12",
                )?,
            };
            let layer = store.manifest(&image)?.layers()[0].size();
            println!(
                "round {round} {path:>10}: {:.1} s, layer {:.1} MB, {}",
                started.elapsed().as_secs_f64(),
                layer as f64 / 1e6,
                image.digest
            );
        }
    }
    Ok(())
}
