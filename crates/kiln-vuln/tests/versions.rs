//! The comparators against the upstream projects' own version-ordering cases (tests/data; each
//! file names its source).

use kiln_vuln::version::{apk, compare, dpkg, is_valid, rpm, VersionOrder};
use std::cmp::Ordering;

fn data(name: &str) -> Vec<(usize, String)> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.to_string()))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .collect()
}

fn ordering(result: &str) -> Ordering {
    match result {
        "-1" => Ordering::Less,
        "0" => Ordering::Equal,
        "1" => Ordering::Greater,
        other => panic!("result {other}"),
    }
}

/// Lines `a b result`, checked both ways round; `!v` lines must be refused.
fn run_triples(name: &str, order: VersionOrder) -> usize {
    let mut checked = 0;
    for (n, line) in data(name) {
        if let Some(invalid) = line.strip_prefix('!') {
            assert!(
                !is_valid(order, invalid),
                "{name}:{n}: {invalid:?} accepted"
            );
            // Still ordered, without panicking: after every valid version.
            assert_eq!(
                compare(order, invalid, "1.0"),
                Ordering::Greater,
                "{name}:{n}"
            );
            checked += 1;
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [a, b, result] = fields[..] else {
            panic!("{name}:{n}: {line:?}");
        };
        let want = ordering(result);
        assert_eq!(compare(order, a, b), want, "{name}:{n}: {a} vs {b}");
        assert_eq!(
            compare(order, b, a),
            want.reverse(),
            "{name}:{n}: {b} vs {a}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn dpkg_upstream_cases() {
    assert!(run_triples("dpkg-version.data", VersionOrder::Dpkg) > 100);
}

#[test]
fn rpmvercmp_upstream_cases() {
    let mut checked = 0;
    for (n, line) in data("rpmvercmp.data") {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [a, b, result] = fields[..] else {
            panic!("rpmvercmp.data:{n}: {line:?}");
        };
        assert_eq!(
            rpm::rpmvercmp(a, b),
            ordering(result),
            "line {n}: {a} vs {b}"
        );
        checked += 1;
    }
    assert!(checked > 80);
}

#[test]
fn apk_upstream_cases() {
    let mut checked = 0;
    for (n, line) in data("apk-version.data") {
        // As apk's test does: a comment after '#', then 'a op b' or 'v' or '!v'.
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            [a, op, b] => assert_eq!(apk::matches(a, op, b), Some(true), "line {n}: {line}"),
            [v] => match v.strip_prefix('!') {
                Some(v) => assert!(!apk::validate(v), "line {n}: {v:?} accepted"),
                None => assert!(apk::validate(v), "line {n}: {v:?} refused"),
            },
            _ => panic!("line {n}: {line:?}"),
        }
        checked += 1;
    }
    assert!(checked > 700, "{checked}");
}

#[test]
fn rpm_epoch_version_release() {
    use Ordering::*;
    for (a, b, want) in [
        ("1:1.0-1", "2.0-1", Greater),
        ("0:1.0-1", "1.0-1", Equal),
        ("1.0-1", "1.0-2", Less),
        ("1.0", "1.0-1", Less),
        ("2:3.0.7-27.el9", "1:3.0.7-28.el9", Greater),
        ("3.0.7-27.el9", "3.0.7-27.el9_4", Less),
        ("1.0~rc1-1", "1.0-1", Less),
        (":1.0-1", "0:1.0-1", Equal),
    ] {
        assert_eq!(rpm::compare_evr(a, b), want, "{a} vs {b}");
        assert_eq!(
            compare(VersionOrder::Rpm, b, a),
            want.reverse(),
            "{b} vs {a}"
        );
    }
}

#[test]
fn dpkg_blanks_and_splits() {
    assert_eq!(dpkg::compare("0:0-1\t  ", "\t  0:0-1  \t"), Ordering::Equal);
    assert!(!is_valid(VersionOrder::Dpkg, ""));
    assert!(!is_valid(VersionOrder::Dpkg, "  "));
    assert!(!is_valid(VersionOrder::Dpkg, "0:0 0-1"));
    assert_eq!(
        dpkg::split("1:3.0.14-1~deb12u2"),
        (Some(1), "3.0.14".to_string(), Some("1~deb12u2".to_string()))
    );
    // Unparsable ones sort after valid ones and among themselves as strings.
    assert_eq!(dpkg::compare("b_1", "a_1"), Ordering::Greater);
    assert_eq!(dpkg::compare("99:9", "a_1"), Ordering::Less);
}
