//! Vulnerability records and scan findings: what both backends keep and answer the same way.

use crate::Fixture;
use kiln_store::{
    FindingFilter, FindingQuery, FindingRow, SeverityCountsRow, Store, StoreError, Txn,
    VulnPackageKey, VulnRecordRow,
};
use std::time::Instant;

fn key(ecosystem: &str, name: &str) -> VulnPackageKey {
    VulnPackageKey {
        ecosystem: ecosystem.into(),
        name: name.into(),
    }
}

fn record(source: &str, id: &str, modified: i64, keys: &[(&str, &str)]) -> VulnRecordRow {
    VulnRecordRow {
        source: source.into(),
        id: id.into(),
        modified_millis: modified,
        packages: keys.iter().map(|(e, n)| key(e, n)).collect(),
        body: format!("{{\"id\":\"{id}\",\"modified\":{modified},\"q\":\"it's \\\\ ok\"}}"),
    }
}

fn write<R>(store: &Store, f: impl FnOnce(&mut dyn Txn) -> Result<R, StoreError>) -> R {
    store.write(|tx| f(tx)).unwrap().unwrap()
}

fn read<R>(store: &Store, f: impl FnOnce(&mut dyn Txn) -> Result<R, StoreError>) -> R {
    store.read(|tx| f(tx)).unwrap().unwrap()
}

fn ids(records: &[VulnRecordRow]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{}/{}", r.source, r.id))
        .collect()
}

pub fn vuln_records_round_trip_and_are_replaced_with_their_keys(fixture: &Fixture) {
    let store = fixture.open();
    write(&store, |tx| {
        tx.put_vuln_records(&[
            record(
                "osv",
                "CVE-1",
                10,
                &[("Debian:12", "openssl"), ("Debian:12", "libssl3")],
            ),
            record("osv", "CVE-2", 20, &[("Alpine:v3.20", "openssl")]),
            record("debian-tracker", "CVE-1", 5, &[("Debian:12", "openssl")]),
        ])
    });
    let all = read(&store, |tx| {
        tx.vuln_records_for_packages(&[key("Debian:12", "openssl"), key("Alpine:v3.20", "openssl")])
    });
    assert_eq!(
        ids(&all),
        ["debian-tracker/CVE-1", "osv/CVE-1", "osv/CVE-2"]
    );
    assert_eq!(
        all[1],
        VulnRecordRow {
            packages: vec![],
            ..record("osv", "CVE-1", 10, &[])
        }
    );
    // A key of another ecosystem finds nothing; a record with two keys comes once.
    let none = read(&store, |tx| {
        tx.vuln_records_for_packages(&[key("Debian:11", "openssl")])
    });
    assert!(none.is_empty());
    let once = read(&store, |tx| {
        tx.vuln_records_for_packages(&[key("Debian:12", "libssl3"), key("Debian:12", "openssl")])
    });
    assert_eq!(ids(&once), ["debian-tracker/CVE-1", "osv/CVE-1"]);

    // Replacing a record replaces its keys: the old ones find it no more.
    write(&store, |tx| {
        tx.put_vuln_records(&[
            record("osv", "CVE-1", 5, &[("Debian:12", "curl")]),
            record("osv", "CVE-1", 30, &[("Debian:12", "curl")]),
        ])
    });
    let libssl = read(&store, |tx| {
        tx.vuln_records_for_packages(&[key("Debian:12", "libssl3")])
    });
    assert!(libssl.is_empty(), "{libssl:?}");
    let curl = read(&store, |tx| {
        tx.vuln_records_for_packages(&[key("Debian:12", "curl")])
    });
    assert_eq!(ids(&curl), ["osv/CVE-1"]);
    assert_eq!(
        curl[0].modified_millis, 30,
        "the last of a repeated record stays"
    );

    // By id, across sources; modified of those a source holds; ids of a source.
    let by_id = read(&store, |tx| {
        tx.vuln_records_by_id(&["CVE-1".into(), "CVE-9".into()])
    });
    assert_eq!(ids(&by_id), ["debian-tracker/CVE-1", "osv/CVE-1"]);
    let mut modified = read(&store, |tx| {
        tx.vuln_modified("osv", &["CVE-2".into(), "CVE-1".into(), "CVE-3".into()])
    });
    modified.sort();
    assert_eq!(
        modified,
        [("CVE-1".to_string(), 30), ("CVE-2".to_string(), 20)]
    );
    assert_eq!(read(&store, |tx| tx.vuln_ids("osv")), ["CVE-1", "CVE-2"]);
    assert!(read(&store, |tx| tx.vuln_ids("nothing")).is_empty());

    // Status: one line per source, with its newest modified.
    let status = read(&store, |tx| tx.vuln_status());
    let lines: Vec<_> = status
        .iter()
        .map(|s| (s.source.as_str(), s.records, s.newest_modified_millis))
        .collect();
    assert_eq!(
        lines,
        [("debian-tracker", 1, Some(5)), ("osv", 2, Some(30))]
    );

    // Delete: counts what there was, takes the keys along, leaves other sources.
    let deleted = write(&store, |tx| {
        tx.delete_vuln_records("osv", &["CVE-1".into(), "CVE-404".into()])
    });
    assert_eq!(deleted, 1);
    assert!(read(&store, |tx| tx
        .vuln_records_for_packages(&[key("Debian:12", "curl")]))
    .is_empty());
    let left = read(&store, |tx| tx.vuln_records_by_id(&["CVE-1".into()]));
    assert_eq!(ids(&left), ["debian-tracker/CVE-1"]);
}

pub fn reads_in_an_import_see_its_own_writes(fixture: &Fixture) {
    let store = fixture.open();
    write(&store, |tx| {
        tx.put_vuln_records(&[record("osv", "A", 1, &[("npm", "x")])])?;
        assert_eq!(tx.vuln_ids("osv")?, ["A"]);
        assert_eq!(
            ids(&tx.vuln_records_for_packages(&[key("npm", "x")])?),
            ["osv/A"]
        );
        tx.delete_vuln_records("osv", &["A".into()])?;
        assert!(tx.vuln_records_by_id(&["A".into()])?.is_empty());
        tx.notify_workers()
    });
    assert!(read(&store, |tx| tx.vuln_status()).is_empty());
}

pub fn a_failed_import_leaves_the_previous_records(fixture: &Fixture) {
    let store = fixture.open();
    write(&store, |tx| {
        tx.put_vuln_records(&[record("osv", "A", 1, &[("npm", "x")])])
    });
    let failed: Result<(), StoreError> = store
        .write(|tx| {
            tx.put_vuln_records(&[
                record("osv", "A", 2, &[("npm", "y")]),
                record("osv", "B", 2, &[("npm", "x")]),
            ])?;
            tx.delete_vuln_records("osv", &["A".into()])?;
            Err(StoreError::BatchFailed {
                reason: "the import failed half way".into(),
            })
        })
        .unwrap();
    assert!(failed.is_err());
    let x = read(&store, |tx| {
        tx.vuln_records_for_packages(&[key("npm", "x")])
    });
    assert_eq!(ids(&x), ["osv/A"]);
    assert_eq!(x[0].modified_millis, 1);
    assert!(read(&store, |tx| tx
        .vuln_records_for_packages(&[key("npm", "y")]))
    .is_empty());
}

const A1: &str = "111111111111";
const A2: &str = "222222222222";

fn image(account: &str, region: &str, name: &str) -> String {
    format!("arn:aws:imagebuilder:{region}:{account}:image/{name}/1.0.0/1")
}

fn finding(image_arn: &str, pipeline: Option<&str>, id: &str, severity: &str) -> FindingRow {
    let parts: Vec<&str> = image_arn.split(':').collect();
    FindingRow {
        image_arn: image_arn.into(),
        account: parts[4].into(),
        region: parts[3].into(),
        pipeline_arn: pipeline.map(str::to_string),
        vulnerability_id: id.into(),
        severity: severity.into(),
        body: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn query(account: &str, filter: Option<FindingFilter>) -> FindingQuery {
    FindingQuery {
        account: account.into(),
        region: "us-east-1".into(),
        filter,
        after: None,
        limit: 100,
    }
}

fn keys(rows: &[FindingRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            let name = r.image_arn.split('/').nth(1).unwrap_or("?");
            format!("{name}:{}", r.vulnerability_id)
        })
        .collect()
}

/// Two images of two pipelines in A1, one image in A2, one in A1's other Region.
fn seed(store: &Store) -> (String, String) {
    let a = image(A1, "us-east-1", "a");
    let b = image(A1, "us-east-1", "b");
    let c = image(A2, "us-east-1", "c");
    let d = image(A1, "eu-west-1", "d");
    write(store, |tx| {
        tx.replace_findings(
            &a,
            &[
                finding(&a, Some("p1"), "CVE-1", "CRITICAL"),
                finding(&a, Some("p1"), "CVE-2", "HIGH"),
                finding(&a, Some("p1"), "CVE-3", "LOW"),
            ],
        )?;
        tx.replace_findings(
            &b,
            &[
                finding(&b, Some("p2"), "CVE-1", "CRITICAL"),
                finding(&b, Some("p2"), "CVE-4", "MEDIUM"),
                finding(&b, Some("p2"), "GHSA-x", "UNTRIAGED"),
            ],
        )?;
        tx.replace_findings(&c, &[finding(&c, None, "CVE-1", "CRITICAL")])?;
        tx.replace_findings(&d, &[finding(&d, None, "CVE-1", "HIGH")])
    });
    (a, b)
}

pub fn findings_are_listed_by_filter_and_cursor_in_their_scope(fixture: &Fixture) {
    let store = fixture.open();
    let (a, b) = seed(&store);
    let list = |q: FindingQuery| keys(&read(&store, |tx| tx.list_findings(&q)));
    assert_eq!(
        list(query(A1, None)),
        ["a:CVE-1", "a:CVE-2", "a:CVE-3", "b:CVE-1", "b:CVE-4", "b:GHSA-x"]
    );
    assert_eq!(list(query(A2, None)), ["c:CVE-1"]);
    assert_eq!(
        list(query(A1, Some(FindingFilter::Image(b.clone())))),
        ["b:CVE-1", "b:CVE-4", "b:GHSA-x"]
    );
    // Another account's image is not in this account's rows.
    let c = image(A2, "us-east-1", "c");
    assert!(list(query(A1, Some(FindingFilter::Image(c)))).is_empty());
    assert_eq!(
        list(query(A1, Some(FindingFilter::Pipeline("p1".into())))),
        ["a:CVE-1", "a:CVE-2", "a:CVE-3"]
    );
    assert_eq!(
        list(query(
            A1,
            Some(FindingFilter::Vulnerability("CVE-1".into()))
        )),
        ["a:CVE-1", "b:CVE-1"]
    );
    assert_eq!(
        list(query(A1, Some(FindingFilter::Severity("CRITICAL".into())))),
        ["a:CVE-1", "b:CVE-1"]
    );
    assert_eq!(
        list(query(A1, Some(FindingFilter::Severity("UNTRIAGED".into())))),
        ["b:GHSA-x"]
    );
    // Pages: a limit and a cursor after the last row of the page before.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = read(&store, |tx| {
            tx.list_findings(&FindingQuery {
                after: after.clone(),
                limit: 4,
                ..query(A1, None)
            })
        });
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        after = Some((last.image_arn.clone(), last.vulnerability_id.clone()));
        pages.push(keys(&page));
    }
    assert_eq!(
        pages,
        [
            vec!["a:CVE-1", "a:CVE-2", "a:CVE-3", "b:CVE-1"],
            vec!["b:CVE-4", "b:GHSA-x"]
        ]
    );
    let filtered = read(&store, |tx| {
        tx.list_findings(&FindingQuery {
            after: Some((a.clone(), "CVE-1".into())),
            limit: 1,
            ..query(A1, Some(FindingFilter::Severity("CRITICAL".into())))
        })
    });
    assert_eq!(keys(&filtered), ["b:CVE-1"]);

    // The rows come back as stored.
    let of_a = read(&store, |tx| tx.findings_of_image(&a));
    assert_eq!(of_a[0], finding(&a, Some("p1"), "CVE-1", "CRITICAL"));
    assert_eq!(keys(&of_a), ["a:CVE-1", "a:CVE-2", "a:CVE-3"]);
}

pub fn findings_are_counted_by_severity(fixture: &Fixture) {
    let store = fixture.open();
    seed(&store);
    let counts = |account: &str, filter: Option<FindingFilter>| {
        read(&store, |tx| {
            tx.count_findings(account, "us-east-1", filter.as_ref())
        })
    };
    let c = |all, critical, high, medium| SeverityCountsRow {
        all,
        critical,
        high,
        medium,
    };
    assert_eq!(counts(A1, None), c(6, 2, 1, 1));
    assert_eq!(counts(A2, None), c(1, 1, 0, 0));
    assert_eq!(
        counts(A1, Some(FindingFilter::Pipeline("p2".into()))),
        c(3, 1, 0, 1)
    );
    assert_eq!(
        counts(A1, Some(FindingFilter::Image(image(A1, "us-east-1", "a")))),
        c(3, 1, 1, 0)
    );
    assert_eq!(
        counts(A1, Some(FindingFilter::Vulnerability("CVE-1".into()))),
        c(2, 2, 0, 0)
    );
    assert_eq!(
        counts(A1, Some(FindingFilter::Severity("LOW".into()))),
        c(1, 0, 0, 0)
    );
    assert_eq!(counts("333333333333", None), c(0, 0, 0, 0));
    let eu = read(&store, |tx| tx.count_findings(A1, "eu-west-1", None));
    assert_eq!(eu, c(1, 0, 1, 0));
}

pub fn findings_are_replaced_and_forgotten_per_image(fixture: &Fixture) {
    let store = fixture.open();
    let (a, b) = seed(&store);
    write(&store, |tx| {
        tx.replace_findings(&a, &[finding(&a, Some("p1"), "CVE-9", "MEDIUM")])
    });
    assert_eq!(
        keys(&read(&store, |tx| tx.findings_of_image(&a))),
        ["a:CVE-9"]
    );
    // A vulnerability given twice: the last one stays.
    write(&store, |tx| {
        tx.replace_findings(
            &b,
            &[
                finding(&b, Some("p2"), "CVE-7", "LOW"),
                finding(&b, Some("p2"), "CVE-7", "HIGH"),
            ],
        )
    });
    let of_b = read(&store, |tx| tx.findings_of_image(&b));
    assert_eq!(of_b, [finding(&b, Some("p2"), "CVE-7", "HIGH")]);
    write(&store, |tx| tx.replace_findings(&b, &[]));
    assert!(read(&store, |tx| tx.findings_of_image(&b)).is_empty());
    assert_eq!(
        keys(&read(&store, |tx| tx.list_findings(&query(A1, None)))),
        ["a:CVE-9"]
    );
    // A row of another image is refused, and the call changes nothing.
    let refused = store
        .write(|tx| tx.replace_findings(&a, &[finding(&b, None, "CVE-1", "LOW")]))
        .unwrap();
    assert!(
        matches!(refused, Err(StoreError::Corrupt { .. })),
        "{refused:?}"
    );
    assert_eq!(
        keys(&read(&store, |tx| tx.findings_of_image(&a))),
        ["a:CVE-9"]
    );
}

pub fn findings_are_updated_one_by_one(fixture: &Fixture) {
    let store = fixture.open();
    let (a, b) = seed(&store);
    write(&store, |tx| {
        tx.replace_findings(
            &a,
            &[
                finding(&a, Some("p1"), "CVE-1", "LOW"),
                finding(&a, Some("p1"), "CVE-2", "LOW"),
                finding(&a, Some("p1"), "CVE-3", "LOW"),
            ],
        )
    });
    write(&store, |tx| {
        tx.replace_findings(&b, &[finding(&b, Some("p2"), "CVE-1", "LOW")])
    });
    // One changed, one new, one gone; the others as they were, and other images untouched.
    write(&store, |tx| {
        tx.update_findings(
            &a,
            &[
                finding(&a, Some("p1"), "CVE-2", "HIGH"),
                finding(&a, Some("p1"), "CVE-4", "MEDIUM"),
            ],
            &["CVE-3".to_string(), "CVE-9".to_string()],
        )
    });
    assert_eq!(
        read(&store, |tx| tx.findings_of_image(&a)),
        [
            finding(&a, Some("p1"), "CVE-1", "LOW"),
            finding(&a, Some("p1"), "CVE-2", "HIGH"),
            finding(&a, Some("p1"), "CVE-4", "MEDIUM"),
        ]
    );
    assert_eq!(
        read(&store, |tx| tx.findings_of_image(&b)),
        [finding(&b, Some("p2"), "CVE-1", "LOW")]
    );
    // Nothing at all is a no-op; a row of another image is refused.
    write(&store, |tx| tx.update_findings(&a, &[], &[]));
    assert_eq!(read(&store, |tx| tx.findings_of_image(&a)).len(), 3);
    let refused = store
        .write(|tx| tx.update_findings(&a, &[finding(&b, None, "CVE-5", "LOW")], &[]))
        .unwrap();
    assert!(
        matches!(refused, Err(StoreError::Corrupt { .. })),
        "{refused:?}"
    );
}

/// The import and lookup the scanner makes, at the size of a real feed. Timed only in release
/// builds (a debug build is many times slower); run with
/// `cargo test --release -p kiln-store --test suite vuln_bulk -- --nocapture`.
pub fn bulk_import_and_lookup(fixture: &Fixture) {
    let store = fixture.open();
    let n: usize = if cfg!(debug_assertions) {
        5_000
    } else {
        100_000
    };
    let body = "x".repeat(1000);
    let records: Vec<VulnRecordRow> = (0..n)
        .map(|i| {
            let keys = (0..1 + i % 3)
                .map(|k| {
                    key(
                        &format!("Debian:{}", 10 + k),
                        &format!("pkg{}", (i * 7 + k) % 20_000),
                    )
                })
                .collect();
            VulnRecordRow {
                source: "osv".into(),
                id: format!("CVE-2024-{i:06}"),
                modified_millis: i as i64,
                packages: keys,
                body: body.clone(),
            }
        })
        .collect();
    let started = Instant::now();
    write(&store, |tx| tx.put_vuln_records(&records));
    let import = started.elapsed();
    let per_second = n as f64 / import.as_secs_f64();
    let lookups: Vec<VulnPackageKey> = (0..300)
        .map(|i| key("Debian:12", &format!("pkg{}", i * 13)))
        .collect();
    // The first lookup also prepares the statement on its connection: time the next ones.
    let mut found = read(&store, |tx| tx.vuln_records_for_packages(&lookups));
    let started = Instant::now();
    for _ in 0..10 {
        found = read(&store, |tx| tx.vuln_records_for_packages(&lookups));
    }
    let lookup = started.elapsed() / 10;
    eprintln!(
        "{}: {n} records in {import:?} ({per_second:.0}/s); 300 keys -> {} records in {lookup:?}",
        if fixture.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        },
        found.len()
    );
    assert!(!found.is_empty());
    let status = read(&store, |tx| tx.vuln_status());
    assert_eq!(status[0].records, n as u64);
    if !cfg!(debug_assertions) {
        assert!(
            per_second > 20_000.0,
            "import too slow: {per_second:.0} records/s"
        );
        assert!(lookup.as_millis() < 100, "lookup too slow: {lookup:?}");
    }
}
