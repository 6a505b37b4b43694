//! `cargo run --release -p kiln-bench -- snapshot [--tree DIR] [--rounds N]`: the snapshot of a
//! root filesystem change set into an image layer.
//!
//! The tree is `--tree DIR`, or a Debian minbase root filesystem made once with
//! `mmdebstrap --variant=minbase bookworm` (about 170 MB; needs mmdebstrap and the configured
//! Debian mirror) in a temporary directory. Taking the whole tree as the instance's upper
//! directory, each round measures, in alternating order:
//!
//! - Kiln: `ImageStore::snapshot_layer(tree, Zstd)`: tar, zstd -3 and both sha256 digests in one
//!   streaming pass, the blob synced to the store;
//! - the machine's limit: `tar -C tree -cf - . | zstd -3 -T1 -q | sha256sum`;
//! - buildah (when installed): `buildah commit` of a working container holding the tree (vfs
//!   storage, into an `oci:` directory), the tree copied in beforehand and not timed.
//!
//! It prints medians with min and max, and the ratios against the targets: Kiln <= 1.2x the
//! pipeline and <= 0.5x buildah.

use anyhow::{bail, Context, Result};
use kiln_image::{Compression, ImageStore};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Options {
    tree: Option<PathBuf>,
    rounds: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        tree: None,
        rounds: 3,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tree" => options.tree = Some(PathBuf::from(value)),
            "--rounds" => options.rounds = value.parse().context("--rounds")?,
            _ => bail!("unknown flag {flag} (snapshot takes --tree DIR and --rounds N)"),
        }
    }
    Ok(options)
}

fn sh(script: &str) -> Result<()> {
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .status()
        .with_context(|| format!("running {script}"))?;
    if !status.success() {
        bail!("`{script}` failed: {status}");
    }
    Ok(())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

fn median(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

fn tree_size(tree: &Path) -> String {
    Command::new("du")
        .args(["-sh", &tree.display().to_string()])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let work = tempfile::tempdir()?;
    let tree = match &options.tree {
        Some(t) => t.clone(),
        None => {
            if !have("mmdebstrap") {
                bail!("give --tree DIR, or install mmdebstrap (apt-get install mmdebstrap) to make a Debian minbase tree");
            }
            let tree = work.path().join("minbase");
            println!("making a Debian minbase tree with mmdebstrap (once)...");
            sh(&format!(
                "mmdebstrap --quiet --variant=minbase bookworm {} >/dev/null",
                tree.display()
            ))?;
            tree
        }
    };
    println!("tree: {} ({})", tree.display(), tree_size(&tree));
    let buildah = have("buildah");
    let buildah_root = work.path().join("buildah");
    let container = if buildah {
        let storage = format!(
            "--storage-driver vfs --root {0}/root --runroot {0}/run",
            buildah_root.display()
        );
        sh(&format!(
            "buildah {storage} from --name kiln-bench scratch >/dev/null && \
             buildah {storage} copy kiln-bench {} / >/dev/null",
            tree.display()
        ))?;
        Some(storage)
    } else {
        println!("buildah is not installed: its column is left out (apt-get install buildah)");
        None
    };

    let (mut kiln, mut pipeline, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let store_dir = work.path().join(format!("store-{round}"));
        let store = ImageStore::open(&store_dir)?;
        let mut measure_kiln = || -> Result<()> {
            let d = time(|| {
                store.snapshot_layer(&tree, Compression::Zstd)?;
                Ok(())
            })?;
            kiln.push(d.as_secs_f64());
            Ok(())
        };
        let mut measure_pipeline = || -> Result<()> {
            let d = time(|| {
                sh(&format!(
                    "tar -C {} -cf - . | zstd -3 -T1 -q | sha256sum >/dev/null",
                    tree.display()
                ))
            })?;
            pipeline.push(d.as_secs_f64());
            Ok(())
        };
        if round % 2 == 0 {
            measure_kiln()?;
            measure_pipeline()?;
        } else {
            measure_pipeline()?;
            measure_kiln()?;
        }
        if let Some(storage) = &container {
            let out = work.path().join(format!("oci-{round}"));
            let d = time(|| {
                sh(&format!(
                    "buildah {storage} commit --quiet kiln-bench oci:{}:bench >/dev/null",
                    out.display()
                ))
            })?;
            peer.push(d.as_secs_f64());
        }
        println!(
            "  round {}: kiln {:.2} s, tar|zstd|sha256sum {:.2} s{}",
            round + 1,
            kiln[round],
            pipeline[round],
            peer.get(round)
                .map(|b| format!(", buildah commit {b:.2} s"))
                .unwrap_or_default()
        );
        let _ = std::fs::remove_dir_all(&store_dir);
    }
    let (k, k_lo, k_hi) = median(&mut kiln);
    let (p, p_lo, p_hi) = median(&mut pipeline);
    println!();
    println!("Kiln snapshot_layer (zstd -3, both digests, synced): {k:.2} s (min {k_lo:.2}, max {k_hi:.2})");
    println!("tar -c | zstd -3 | sha256sum:                         {p:.2} s (min {p_lo:.2}, max {p_hi:.2})");
    let verdict = |ok: bool| if ok { "OK" } else { "OVER" };
    println!(
        "Kiln / pipeline: {:.2}x (target <= 1.2x) {}",
        k / p,
        verdict(k / p <= 1.2)
    );
    if !peer.is_empty() {
        let (b, b_lo, b_hi) = median(&mut peer);
        println!("buildah commit (vfs, to oci:):                        {b:.2} s (min {b_lo:.2}, max {b_hi:.2})");
        println!(
            "Kiln / buildah: {:.2}x (target <= 0.5x) {}",
            k / b,
            verdict(k / b <= 0.5)
        );
    }
    if let Some(storage) = &container {
        let _ = sh(&format!("buildah {storage} rm kiln-bench >/dev/null"));
        let _ = sh(&format!("rm -rf {}", buildah_root.display()));
    }
    Ok(())
}
