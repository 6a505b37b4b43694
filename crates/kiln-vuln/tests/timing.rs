//! Rough timings of import parsing and a scan on synthetic data (ignored; the real benchmark
//! is kiln-bench's): `cargo test --release -p kiln-vuln --test timing -- --ignored --nocapture`.

use kiln_domain::resources::scan::{InstalledPackage, Inventory, PackageManager};
use kiln_vuln::import::parse_osv_record;
use kiln_vuln::matching::{lookup_keys, scan};
use kiln_vuln::synth;
use std::collections::HashSet;
use std::time::Instant;

#[test]
#[ignore]
fn parse_and_scan_100k() {
    let texts: Vec<String> = synth::generate(100_000, 1).map(|v| v.to_string()).collect();
    let start = Instant::now();
    let advisories: Vec<_> = texts
        .iter()
        .map(|t| parse_osv_record(t.as_bytes()).unwrap())
        .collect();
    let parse = start.elapsed();
    // The minbase image: every source package, two binaries each.
    let mut packages = Vec::new();
    for (name, version) in synth::MINBASE {
        for suffix in ["", "-bin"] {
            packages.push(InstalledPackage {
                name: format!("{name}{suffix}"),
                version: version.to_string(),
                source_name: (!suffix.is_empty()).then(|| name.to_string()),
                source_version: None,
                arch: Some("amd64".into()),
                manager: PackageManager::Dpkg,
            });
        }
    }
    let inventory = Inventory {
        os_id: "debian".into(),
        os_version_id: "12".into(),
        os_id_like: vec![],
        packages,
    };
    let keys: HashSet<(String, String)> = lookup_keys(&inventory).into_iter().collect();
    let relevant: Vec<_> = advisories
        .iter()
        .filter(|a| a.package_keys().iter().any(|k| keys.contains(k)))
        .cloned()
        .collect();
    let start = Instant::now();
    let mut findings = Vec::new();
    for _ in 0..10 {
        findings = scan(&inventory, &relevant, 0);
    }
    let scan_time = start.elapsed() / 10;
    println!(
        "parse {:?} ({:.0} records/s); scan of {} packages against {} advisories: {:?}, {} findings",
        parse,
        100_000.0 / parse.as_secs_f64(),
        inventory.packages.len(),
        relevant.len(),
        scan_time,
        findings.len()
    );
}
