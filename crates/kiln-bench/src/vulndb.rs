//! `kiln-bench vulndb [--records N] [--images N] [--rounds N] [--tree DIR]`: the scanner's
//! targets (issue 17 item 6), each figure printed next to its target:
//! - import: an `all.zip` of N generated OSV `Debian:12` records (100,000 by default;
//!   `kiln_vuln::synth`, the real format) read and imported into a fresh SQLite store in one
//!   transaction, exactly as `kiln vulndb import --data-dir` does: >= 20,000 records/s;
//! - scan: the packages of the managed Debian base image (`mmdebstrap --variant=minbase
//!   bookworm`, the tree the worker makes it from; or `--tree DIR`) evaluated against those
//!   records, as a build's scan does (`kiln_core::scans::evaluate`: the store lookup, decoding,
//!   matching): <= 50 ms per image (median of `--rounds` scans);
//! - re-evaluation: N images (1,000 by default) scanned with that inventory, then one more
//!   record imported, and `kiln_core::scans::reevaluate_stale` until none is stale: <= 10 s.
//!
//! There is no other scanner on these machines to time in the same run (grype, trivy and
//! osv-scanner download their databases; the network reaches only the package registries), so
//! the targets stand as the baselines.

use anyhow::{anyhow, bail, Context, Result};
use kiln_core::vulndb::Importer;
use kiln_core::Core;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::pipeline::ImageScanning;
use kiln_domain::resources::scan::{ImageScan, Inventory};
use kiln_store::TxnExt;
use kiln_vuln::advisory::Advisory;
use kiln_vuln::import::{Batch, ImportError, Limits, Sink};
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Options {
    records: usize,
    images: usize,
    rounds: usize,
    tree: Option<PathBuf>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        records: 100_000,
        images: 1_000,
        rounds: 21,
        tree: None,
    };
    let mut args = args;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--records" => options.records = value.parse().context("--records")?,
            "--images" => options.images = value.parse().context("--images")?,
            "--rounds" => options.rounds = value.parse().context("--rounds")?,
            "--tree" => options.tree = Some(PathBuf::from(value)),
            _ => bail!(
                "unknown flag {flag} (vulndb takes --records N, --images N, --rounds N, --tree DIR)"
            ),
        }
    }
    if options.rounds == 0 || options.records == 0 {
        bail!("--rounds and --records must be at least 1");
    }
    Ok(options)
}

/// Hands what an import reads to an [`Importer`].
struct ToImporter<'a, 't> {
    importer: &'a mut Importer<'t>,
}

impl Sink for ToImporter<'_, '_> {
    fn begin(&mut self, batch: &Batch) -> Result<(), ImportError> {
        self.importer
            .declare(&batch.source, batch.mode)
            .map_err(|e| ImportError::new(&batch.path, e.to_string()))
    }
    fn advisory(&mut self, batch: &Batch, advisory: Advisory) -> Result<(), ImportError> {
        self.importer
            .add(&batch.source, batch.mode, advisory)
            .map_err(|e| ImportError::new(&batch.path, e.to_string()))
    }
    fn end(&mut self, _: &Batch) -> Result<(), ImportError> {
        Ok(())
    }
}

/// Imports `path` into `core`'s store in one transaction; answers how many records were read.
fn import(core: &Core, path: &Path) -> Result<u64> {
    core.store
        .write(|tx| {
            let mut importer = Importer::new(tx);
            let summary = kiln_vuln::import::import_path(
                path,
                &Limits::default(),
                &mut ToImporter {
                    importer: &mut importer,
                },
            )
            .map_err(|e| anyhow!("{e}"))?;
            importer.finish().map_err(|e| anyhow!("{e}"))?;
            Ok::<_, anyhow::Error>(summary.records)
        })
        .map_err(|e| anyhow!("{e}"))?
}

fn fresh_core(dir: &Path) -> Result<Core> {
    Core::open_database(dir, None, kiln_store::sqlite::Sync::Normal)
        .map_err(|e| anyhow!("opening {}: {e}", dir.display()))
}

/// The Debian minbase tree (made once with mmdebstrap unless given).
fn tree(options: &Options, work: &Path) -> Result<PathBuf> {
    if let Some(tree) = &options.tree {
        return Ok(tree.clone());
    }
    if !crate::build::have("mmdebstrap") {
        bail!("give --tree DIR, or install mmdebstrap to make the managed Debian base's tree");
    }
    let tree = work.join("minbase");
    println!("making the managed Debian base's tree with mmdebstrap (once)...");
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "mmdebstrap --quiet --variant=minbase bookworm {} >/dev/null",
                tree.display()
            ),
        ])
        .status()?;
    if !status.success() {
        bail!("mmdebstrap failed");
    }
    Ok(tree)
}

fn image_record(index: usize, inventory_os: &str) -> Image {
    let arn = Arn::new("us-east-1", "123456789012", ResourceKind::Image, "bench")
        .with_version("1.0.0")
        .with_build(index as u32 + 1);
    Image {
        name: "bench".into(),
        status: ImageStatus::Available,
        recipe_arn: "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/bench/1.0.0".into(),
        infrastructure_configuration_arn:
            "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/bench".into(),
        os_version: Some(inventory_os.to_string()),
        build_id: format!("{index:016x}"),
        scanning: Some(ImageScanning {
            enabled: Some(true),
            ..ImageScanning::default()
        }),
        ..Image::blank(arn)
    }
}

fn scan_record(image: &Image, inventory: &Inventory) -> Result<ImageScan> {
    let ecosystems = kiln_core::scans::ecosystems_of(inventory);
    Ok(ImageScan {
        arn: ImageScan::key(&image.arn.region, &image.arn.account, &image.build_id),
        image_arn: image.arn.to_string(),
        pipeline_arn: None,
        inventory: inventory.clone(),
        ecosystems,
        generation: 0,
        evaluated_at: 0,
    })
}

/// Evaluates every stale scan; answers how many and how long it took.
fn reevaluate_all(core: &Core) -> Result<(usize, f64)> {
    use kiln_core::clock::Clock;
    let clock = std::sync::Arc::new(kiln_core::clock::SystemClock);
    let started = Instant::now();
    let mut evaluated = 0;
    loop {
        let clock = clock.clone();
        let n = kiln_core::scans::reevaluate_stale(&core.store, move || clock.now_millis(), 200)
            .map_err(|e| anyhow!("{e}"))?;
        if n == 0 {
            return Ok((evaluated, started.elapsed().as_secs_f64()));
        }
        evaluated += n;
    }
}

pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let options = parse(args)?;
    let work = tempfile::tempdir()?;
    let zip = work.path().join("all.zip");
    let started = Instant::now();
    kiln_vuln::synth::write_all_zip(&zip, options.records, 17)?;
    println!(
        "{} generated OSV Debian:12 records: {} ({:.1} MB) in {:.1} s",
        options.records,
        zip.display(),
        std::fs::metadata(&zip)?.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // Import, three rounds on fresh stores: the median.
    let mut rates = Vec::new();
    let mut core = None;
    for round in 0..3 {
        let dir = work.path().join(format!("store-{round}"));
        let fresh = fresh_core(&dir)?;
        let started = Instant::now();
        let read = import(&fresh, &zip)?;
        let seconds = started.elapsed().as_secs_f64();
        rates.push(read as f64 / seconds);
        println!("  import round {round}: {read} records in {seconds:.2} s");
        core = Some(fresh);
    }
    let core = core.context("no import round ran")?;
    let (import_rate, _, _) = crate::build::stats(&rates);

    // Scan: the managed Debian base's inventory against the data.
    let tree = tree(&options, work.path())?;
    let inventory = kiln_build::metadata::inventory(&tree, &|| None);
    if inventory.packages.is_empty() {
        bail!("{} has no dpkg database", tree.display());
    }
    let first = image_record(0, "Debian GNU/Linux 12");
    let scan = scan_record(&first, &inventory)?;
    let mut times = Vec::new();
    let mut findings = 0;
    for _ in 0..options.rounds {
        let started = Instant::now();
        let found = core
            .store
            .read(|tx| kiln_core::scans::evaluate(tx, &scan, 0))
            .map_err(|e| anyhow!("{e}"))?
            .map_err(|e| anyhow!("{e}"))?
            .map_err(|reason| anyhow!("the scan failed: {reason}"))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        findings = found.findings.len();
    }
    let (scan_ms, scan_min, scan_max) = crate::build::stats(&times);

    // Re-evaluation: the images scanned (their first findings, not timed), then one more
    // record that affects every one of them (bash), evaluated again.
    core.store
        .write(|tx| {
            for i in 0..options.images {
                let image = image_record(i, "Debian GNU/Linux 12");
                let scan = scan_record(&image, &inventory).map_err(|e| e.to_string())?;
                tx.put(&image).map_err(|e| e.to_string())?;
                tx.put(&scan).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        })
        .map_err(|e| anyhow!("{e}"))?
        .map_err(|e| anyhow!("{e}"))?;
    let (first, first_seconds) = reevaluate_all(&core)?;
    let extra = work.path().join("extra");
    std::fs::create_dir_all(&extra)?;
    let record = serde_json::json!({
        "schema_version": "1.6.0", "id": "DEBIAN-CVE-2099-99999",
        "modified": "2026-12-01T00:00:00Z", "aliases": ["CVE-2099-99999"],
        "summary": "a new vulnerability of bash",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "bash"},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": "0"}, {"fixed": "5.2.15-2+deb12u9"}]}]}],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    });
    std::fs::write(extra.join("new.json"), record.to_string())?;
    import(&core, &extra)?;
    let (evaluated, reevaluation) = reevaluate_all(&core)?;
    println!(
        "  first findings of {first} images: {first_seconds:.2} s; the new record adds a finding to each"
    );

    println!();
    println!("{:<44} {:>14} {:>14}", "", "measured", "target");
    println!(
        "{:<44} {:>12.0}/s {:>12}/s",
        format!("import of {} OSV records (median of 3)", options.records),
        import_rate,
        "20,000"
    );
    println!(
        "{:<44} {:>11.1} ms {:>11} ms",
        format!(
            "scan of the Debian base ({} packages, {findings} findings)",
            inventory.packages.len()
        ),
        scan_ms,
        "50"
    );
    println!(
        "{:<44} {:>14}",
        "  (min / max)",
        format!("{scan_min:.1} / {scan_max:.1} ms")
    );
    println!(
        "{:<44} {:>12.2} s {:>12} s",
        format!("re-evaluation of {evaluated} images"),
        reevaluation,
        "10"
    );
    if evaluated != options.images {
        bail!(
            "re-evaluated {evaluated} images of {}: the benchmark is wrong",
            options.images
        );
    }
    Ok(())
}
