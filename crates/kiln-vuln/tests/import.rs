//! The readers on the fixtures in tests/data (written for Kiln), hostile input, and scans of
//! what they read.

use kiln_domain::resources::scan::{InstalledPackage, Inventory, PackageManager, Severity};
use kiln_vuln::advisory::{Advisory, Event};
use kiln_vuln::import::{import_path, Collect, ImportError, Limits, Mode, MIB};
use kiln_vuln::matching::{enrich, ids_needing_scores, lookup_keys, scan};
use std::io::Write;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(path: &Path) -> Collect {
    let mut sink = Collect::default();
    import_path(path, &Limits::default(), &mut sink).unwrap();
    sink
}

fn fails(path: &Path, limits: &Limits) -> ImportError {
    let mut sink = Collect::default();
    import_path(path, limits, &mut sink).expect_err("refused")
}

fn find<'a>(sink: &'a Collect, id: &str) -> &'a Advisory {
    sink.advisories()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("{id}"))
}

fn package(
    name: &str,
    version: &str,
    source: Option<&str>,
    manager: PackageManager,
) -> InstalledPackage {
    InstalledPackage {
        name: name.to_string(),
        version: version.to_string(),
        source_name: source.map(str::to_string),
        source_version: None,
        arch: Some("x86_64".to_string()),
        manager,
    }
}

fn bookworm() -> Inventory {
    Inventory {
        os_id: "debian".into(),
        os_version_id: "12".into(),
        os_id_like: vec![],
        packages: vec![
            package(
                "libssl3",
                "3.0.11-1~deb12u2",
                Some("openssl"),
                PackageManager::Dpkg,
            ),
            package(
                "libc6",
                "2.36-9+deb12u4",
                Some("glibc"),
                PackageManager::Dpkg,
            ),
            package("bash", "5.2.15-2", None, PackageManager::Dpkg),
        ],
    }
}

#[test]
fn debian_tracker() {
    let sink = read(&data("debian-tracker.json"));
    assert_eq!(sink.batches.len(), 1);
    let batch = &sink.batches[0].0;
    assert_eq!(
        (batch.source.as_str(), batch.mode),
        ("debian-tracker", Mode::Snapshot)
    );
    let ids: Vec<&str> = sink.advisories().map(|a| a.id.as_str()).collect();
    // CVE-2024-0003 is undetermined only: skipped.
    assert_eq!(
        ids,
        [
            "CVE-2024-0001",
            "CVE-2024-0002",
            "CVE-2024-0004",
            "TEMP-0000000-ABCDEF"
        ]
    );
    let a = find(&sink, "CVE-2024-0001");
    let entries: Vec<(&str, &str, usize, Option<&str>)> = a
        .affected
        .iter()
        .map(|f| {
            (
                f.ecosystem.as_str(),
                f.name.as_str(),
                f.ranges[0].events.len(),
                f.vendor_severity.as_deref(),
            )
        })
        .collect();
    // Releases in name order; hamm is unknown; glibc's entry follows openssl's.
    assert_eq!(
        entries,
        [
            ("Debian:12", "openssl", 2, Some("medium")),
            ("Debian:11", "openssl", 1, Some("low")),
            ("Debian", "openssl", 2, Some("medium")),
            ("Debian:12", "glibc", 1, Some("low")),
        ]
    );
    assert_eq!(
        a.affected[0].ranges[0].events[1],
        Event::Fixed("3.0.14-1~deb12u2".into())
    );
    assert_eq!(a.summary.as_deref(), Some("openssl: a flaw in the fixture"));
    // Not affected in bookworm ("0"): only sid's entry is left.
    assert_eq!(
        find(&sink, "CVE-2024-0002").package_keys(),
        [("Debian".to_string(), "openssl".to_string())]
    );

    let advisories: Vec<Advisory> = sink.advisories().cloned().collect();
    let findings = scan(&bookworm(), &advisories, 5);
    let ids: Vec<&str> = findings
        .iter()
        .map(|f| f.vulnerability_id.as_str())
        .collect();
    // CVE-2024-0002 is sid's (the tracker says bookworm is not affected).
    assert_eq!(
        ids,
        ["CVE-2024-0001", "CVE-2024-0004", "TEMP-0000000-ABCDEF"]
    );
    let f = &findings[0];
    assert_eq!(f.title, "CVE-2024-0001 - libc6, libssl3");
    assert_eq!(f.fix_available.as_str(), "PARTIAL");
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.vendor_severity.as_deref(), Some("medium"));
    assert_eq!(f.source, "DEBIAN_CVE");
    assert_eq!(
        f.source_url.as_deref(),
        Some("https://security-tracker.debian.org/tracker/CVE-2024-0001")
    );
    let ssl = &f.vulnerable_packages[1];
    assert_eq!(
        (ssl.version.as_str(), ssl.release.as_deref(), ssl.epoch),
        ("3.0.11", Some("1~deb12u2"), Some(0))
    );
    assert_eq!(ssl.fixed_in_version.as_deref(), Some("3.0.14-1~deb12u2"));
    assert_eq!(
        ssl.remediation.as_deref(),
        Some("apt-get install --only-upgrade libssl3")
    );
    assert_eq!(ssl.package_manager, "OS");
    assert_eq!(findings[1].severity, Severity::High);
    assert_eq!(findings[2].severity, Severity::Untriaged);

    // The NVD-style record of CVE-2024-0004 gives it a CVSS score.
    let mut findings = findings;
    assert_eq!(ids_needing_scores(&findings).len(), 3);
    let nvd = read(&data("osv/osv-scanner/Debian/CVE-2024-0004.json"));
    let records: Vec<Advisory> = nvd.advisories().cloned().collect();
    enrich(&mut findings, &records);
    assert_eq!(findings[1].inspector_score, Some(5.5));
    assert_eq!(findings[1].severity, Severity::Medium);
    assert_eq!(findings[1].adjusted_cvss.as_ref().unwrap().version, "3.1");
    assert_eq!(findings[0].inspector_score, None);
}

#[test]
fn alpine_secdb() {
    let sink = read(&data("alpine-v3.20-main.json"));
    let batch = &sink.batches[0].0;
    assert_eq!(
        (batch.source.as_str(), batch.mode),
        ("alpine-secdb:v3.20/main", Mode::Snapshot)
    );
    let ids: Vec<&str> = sink.advisories().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "CVE-2023-42366",
            "CVE-2023-5678",
            "CVE-2023-5679",
            "CVE-2024-6119"
        ]
    );
    // Listed under two versions: the lowest is the fix.
    let a = find(&sink, "CVE-2024-6119");
    assert_eq!(a.affected[0].ecosystem, "Alpine:v3.20");
    assert_eq!(
        a.affected[0].ranges[0].events,
        [
            Event::Introduced("0".into()),
            Event::Fixed("3.3.2-r0".into())
        ]
    );

    let advisories: Vec<Advisory> = sink.advisories().cloned().collect();
    let alpine = Inventory {
        os_id: "alpine".into(),
        os_version_id: "3.20.3".into(),
        os_id_like: vec![],
        packages: vec![
            package(
                "libcrypto3",
                "3.3.1-r3",
                Some("openssl"),
                PackageManager::Apk,
            ),
            package("busybox", "1.36.1-r28", None, PackageManager::Apk),
        ],
    };
    let findings = scan(&alpine, &advisories, 5);
    let ids: Vec<&str> = findings
        .iter()
        .map(|f| f.vulnerability_id.as_str())
        .collect();
    assert_eq!(ids, ["CVE-2023-42366", "CVE-2024-6119"]);
    let f = &findings[1];
    assert_eq!(f.source, "ALPINE_SECDB");
    assert_eq!(
        f.source_url.as_deref(),
        Some("https://security.alpinelinux.org/vuln/CVE-2024-6119")
    );
    let p = &f.vulnerable_packages[0];
    assert_eq!(
        (p.name.as_str(), p.version.as_str(), p.release.as_deref()),
        ("libcrypto3", "3.3.1", Some("r3"))
    );
    assert_eq!(p.remediation.as_deref(), Some("apk upgrade libcrypto3"));
    assert_eq!(f.severity, Severity::Untriaged);
    let keys = lookup_keys(&alpine);
    assert!(keys.contains(&("Alpine:v3.20".to_string(), "openssl".to_string())));
    assert!(keys.contains(&("Alpine:v3.20".to_string(), "libcrypto3".to_string())));
}

/// Writes a zip of (name, bytes) entries, deflated.
fn zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let mut writer = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, bytes) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn osv_directory_and_zip() {
    // A directory like an osv-scanner cache: each .json one batch, other files skipped.
    let mut sink = Collect::default();
    let summary = import_path(&data("osv"), &Limits::default(), &mut sink).unwrap();
    assert_eq!((summary.batches, summary.records), (2, 2));
    assert_eq!(summary.skipped.len(), 1);
    assert!(sink
        .batches
        .iter()
        .all(|(b, _)| b.source == "osv" && b.mode == Mode::Incremental));
    let a = find(&sink, "DEBIAN-CVE-2024-0030");
    assert_eq!(a.modified, 1_719_828_000_123);
    assert_eq!(a.affected.len(), 1, "the GIT-only entry names no package");
    assert_eq!(a.references, ["https://example.org/bash"]);
    assert_eq!(a.affected[0].vendor_severity.as_deref(), Some("high"));

    let advisories: Vec<Advisory> = sink.advisories().cloned().collect();
    let findings = scan(&bookworm(), &advisories, 5);
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f.vulnerability_id, "CVE-2024-0030");
    assert_eq!(
        (f.severity, f.inspector_score),
        (Severity::Critical, Some(9.8))
    );
    assert_eq!(f.source, "DEBIAN");
    assert_eq!(
        f.source_url.as_deref(),
        Some("https://osv.dev/vulnerability/DEBIAN-CVE-2024-0030")
    );
    assert_eq!(f.description, "A longer description of the flaw.");
    assert_eq!(f.related_vulnerabilities, ["DEBIAN-CVE-2024-0030"]);
    assert_eq!(f.vendor_created_at, Some(1_717_200_000_000));
    assert_eq!(f.cvss[0].base_score, 9.8);

    // The same records in an all.zip: one batch; withdrawn records come through marked.
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("osv-scalibr/Debian/all.zip");
    std::fs::create_dir_all(all.parent().unwrap()).unwrap();
    let withdrawn = br#"{"id":"DEBIAN-CVE-2020-1","modified":"2024-01-01T00:00:00Z","withdrawn":"2024-01-01T00:00:00Z"}"#;
    zip(
        &all,
        &[
            (
                "DEBIAN-CVE-2024-0030.json",
                std::fs::read(data("osv/osv-scanner/Debian/DEBIAN-CVE-2024-0030.json")).unwrap(),
            ),
            ("../../etc/passwd.json", withdrawn.to_vec()),
            ("notes/", Vec::new()),
        ],
    );
    let mut sink = Collect::default();
    let summary = import_path(dir.path(), &Limits::default(), &mut sink).unwrap();
    assert_eq!(
        (summary.batches, summary.records, summary.withdrawn),
        (1, 2, 1)
    );
    assert!(find(&sink, "DEBIAN-CVE-2020-1").withdrawn.is_some());
    assert!(!Path::new("/etc/passwd.json").exists());
}

#[test]
fn zip_bombs_and_caps() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("all.zip");
    // 32 MiB of blanks (valid JSON whitespace) deflates to a few tens of KiB.
    let mut big = vec![b' '; 32 * MIB as usize];
    big[0] = b'{';
    big[32 * MIB as usize - 1] = b'}';
    zip(&bomb, &[("bomb.json", big)]);
    let e = fails(&bomb, &Limits::default());
    assert_eq!(e.entry.as_deref(), Some("bomb.json"));
    assert!(e.message.contains("zip bomb"), "{e}");
    // Larger than a record may be.
    let limits = Limits {
        max_record_bytes: MIB,
        ..Limits::default()
    };
    assert!(fails(&bomb, &limits)
        .message
        .contains("more than the 1048576 bytes"));
    // More than a zip may expand to in total.
    let many = dir.path().join("many.zip");
    let record = std::fs::read(data("osv/osv-scanner/Debian/DEBIAN-CVE-2024-0030.json")).unwrap();
    zip(
        &many,
        &[
            ("a.json", record.clone()),
            ("b.json", record.clone()),
            ("c.json", record),
        ],
    );
    let limits = Limits {
        max_zip_total_bytes: 2500,
        ..Limits::default()
    };
    let e = fails(&many, &limits);
    assert!(e.message.contains("in total"), "{e}");
    // A JSON file over the record cap.
    let limits = Limits {
        max_record_bytes: 100,
        ..Limits::default()
    };
    let e = fails(&data("alpine-v3.20-main.json"), &limits);
    assert!(e.message.contains("more than the 100 bytes"), "{e}");
}

#[test]
fn malformed_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let truncated = write("t.json", br#"{"id": "X-1", "modified": "2024-"#);
    let e = fails(&truncated, &Limits::default());
    assert_eq!(e.path, truncated);
    assert!(e.message.contains("line 1 column"), "{e}");
    assert!(e.to_string().starts_with(&truncated.display().to_string()));

    let no_id = write(
        "n.json",
        br#"{"modified": "2024-01-01T00:00:00Z", "affected": []}"#,
    );
    assert!(fails(&no_id, &Limits::default())
        .message
        .contains("`id` and `modified`"));

    let not_utf8 = write(
        "u.json",
        b"{\"id\": \"X-\xff\", \"modified\": \"2024-01-01T00:00:00Z\"}",
    );
    let e = fails(&not_utf8, &Limits::default());
    assert!(e.message.contains("line 1 column"), "{e}");

    let bad_time = write("b.json", br#"{"id": "X-1", "modified": "yesterday"}"#);
    assert!(fails(&bad_time, &Limits::default())
        .message
        .contains("`modified`"));

    let two_keys = write(
        "e.json",
        br#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Debian:12", "name": "a"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}]}]}"#,
    );
    assert!(fails(&two_keys, &Limits::default())
        .message
        .contains("events[0]"));

    let unknown = write("x.json", br#"{"hello": "world"}"#);
    assert!(fails(&unknown, &Limits::default())
        .message
        .contains("neither"));

    let yaml = write("main.yaml", b"distroversion: v3.20\n");
    assert!(fails(&yaml, &Limits::default()).message.contains("YAML"));

    let tracker = std::fs::read(data("debian-tracker.json")).unwrap();
    let cut = write("tracker.json", &tracker[..tracker.len() / 2]);
    let e = fails(&cut, &Limits::default());
    assert!(
        e.message.contains("line") && e.message.contains("column"),
        "{e}"
    );

    // A record without an id inside a zip names the entry.
    let z = dir.path().join("all.zip");
    zip(
        &z,
        &[(
            "no-id.json",
            br#"{"modified": "2024-01-01T00:00:00Z"}"#.to_vec(),
        )],
    );
    let e = fails(&z, &Limits::default());
    assert_eq!(e.entry.as_deref(), Some("no-id.json"));
    assert!(e.message.contains("missing field `id`"), "{e}");

    let not_zip = write("junk.zip", b"PK\x03\x04 not really");
    assert!(fails(&not_zip, &Limits::default()).message.contains("zip"));
}
