//! The Debian security tracker JSON (`security-tracker.debian.org/tracker/data/json`):
//! `{package: {CVE: {description, releases: {codename: {status, fixed_version, urgency}}}}}`.
//!
//! One advisory per CVE (its id is the CVE id; it aliases nothing more), one `affected` per
//! (source package, release): `resolved` with a fixed version → introduced 0, fixed V;
//! `fixed_version "0"` → not affected (no entry); `open` → introduced 0 and no fix;
//! `undetermined` and `resolved` without a version → skipped; releases are `Debian:<number>`
//! from the codename (`sid` → `Debian`), unknown codenames skipped. The file is read as a
//! stream, one package at a time; the advisories are gathered per CVE (typed, compact) and
//! handed to the sink at the end, sorted by id.

use super::osv::clean_urgency;
use super::{Batch, ImportError, Mode, Sink};
use crate::advisory::{Advisory, Affected, Event, Range};
use crate::ecosystem::debian_ecosystem;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

#[derive(Deserialize)]
struct Issue {
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, Release>,
}

#[derive(Deserialize)]
struct Release {
    status: Option<String>,
    fixed_version: Option<String>,
    urgency: Option<String>,
}

/// Reads a tracker file; `modified` is the records' `modified` (the file's time).
pub fn read_tracker(
    path: &Path,
    reader: impl Read,
    modified: i64,
    sink: &mut dyn Sink,
) -> Result<(), ImportError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let advisories = de
        .deserialize_map(TrackerVisitor { modified })
        .and_then(|a| de.end().map(|_| a))
        .map_err(|e| ImportError::new(path, e.to_string()))?;
    let batch = Batch {
        source: "debian-tracker".to_string(),
        mode: Mode::Snapshot,
        path: path.to_path_buf(),
    };
    sink.begin(&batch)?;
    for (_, advisory) in advisories {
        sink.advisory(&batch, advisory)?;
    }
    sink.end(&batch)
}

struct TrackerVisitor {
    modified: i64,
}

impl<'de> Visitor<'de> for TrackerVisitor {
    type Value = BTreeMap<String, Advisory>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the Debian tracker's object of source packages")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut advisories: BTreeMap<String, Advisory> = BTreeMap::new();
        while let Some(package) = map.next_key::<String>()? {
            let issues: BTreeMap<String, Issue> = map.next_value()?;
            for (cve, issue) in issues {
                add_issue(&mut advisories, &package, cve, issue, self.modified);
            }
        }
        Ok(advisories)
    }
}

fn add_issue(
    advisories: &mut BTreeMap<String, Advisory>,
    package: &str,
    cve: String,
    issue: Issue,
    modified: i64,
) {
    let mut affected = Vec::new();
    for (codename, release) in issue.releases {
        let Some(ecosystem) = debian_ecosystem(&codename) else {
            continue;
        };
        let fixed = release.fixed_version.filter(|v| !v.is_empty());
        let mut events = vec![Event::Introduced("0".to_string())];
        match (release.status.as_deref(), fixed) {
            (_, Some(v)) if v == "0" => continue,
            (Some("undetermined"), _) => continue,
            (Some("resolved"), Some(v)) | (Some("open"), Some(v)) => events.push(Event::Fixed(v)),
            (Some("open"), None) => {}
            _ => continue,
        }
        affected.push(Affected {
            ecosystem,
            name: package.to_string(),
            ranges: vec![Range {
                kind: "ECOSYSTEM".to_string(),
                events,
            }],
            versions: Vec::new(),
            vendor_severity: release
                .urgency
                .map(|u| clean_urgency(&u))
                .filter(|u| !u.is_empty()),
            severity: Vec::new(),
        });
    }
    if affected.is_empty() {
        return;
    }
    let advisory = advisories.entry(cve.clone()).or_insert_with(|| Advisory {
        source_url: Some(format!("https://security-tracker.debian.org/tracker/{cve}")),
        id: cve,
        modified,
        published: None,
        withdrawn: None,
        aliases: Vec::new(),
        related: Vec::new(),
        summary: None,
        details: None,
        severity: Vec::new(),
        affected: Vec::new(),
        references: Vec::new(),
        source: "debian-tracker".to_string(),
    });
    if advisory.summary.is_none() {
        advisory.summary = issue.description.filter(|d| !d.is_empty());
    }
    advisory.affected.extend(affected);
}
