//! Alpine secdb JSON (`secdb.alpinelinux.org/v3.20/main.json`): per package, `secfixes` maps a
//! fixed version to the ids it fixes (several per string, separated by blanks). Key `"0"`
//! means not affected. One advisory per id (the id itself; CVE ids mostly), one `affected` per
//! package with introduced 0 / fixed at the lowest version that lists it (apk order).

use super::{Batch, ImportError, Mode, Sink};
use crate::advisory::{Advisory, Affected, Event, Range};
use crate::version::apk;
use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
struct Secdb {
    distroversion: String,
    reponame: Option<String>,
    packages: Vec<PackageEntry>,
}

#[derive(Deserialize)]
struct PackageEntry {
    pkg: Package,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    #[serde(default)]
    secfixes: Option<BTreeMap<String, Option<Vec<Option<String>>>>>,
}

/// Reads one secdb file; `modified` is the records' `modified` (the file's time).
pub fn read_secdb(
    path: &Path,
    bytes: &[u8],
    modified: i64,
    sink: &mut dyn Sink,
) -> Result<(), ImportError> {
    let db: Secdb =
        serde_json::from_slice(bytes).map_err(|e| ImportError::new(path, e.to_string()))?;
    let release = db.distroversion.trim();
    let release = release.strip_prefix('v').unwrap_or(release);
    if release.is_empty() || release.contains(['/', ' ']) {
        return Err(ImportError::new(
            path,
            format!(
                "`distroversion` {:?} is not an Alpine release",
                db.distroversion
            ),
        ));
    }
    let repo = db.reponame.unwrap_or_else(|| "main".to_string());
    let source = format!("alpine-secdb:v{release}/{repo}");
    let ecosystem = format!("Alpine:v{release}");
    // id → package → lowest fixed version.
    let mut fixes: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for entry in db.packages {
        for (version, ids) in entry.pkg.secfixes.unwrap_or_default() {
            if version.trim() == "0" {
                continue;
            }
            for id in ids
                .unwrap_or_default()
                .iter()
                .flatten()
                .flat_map(|s| s.split_whitespace())
            {
                let lowest = fixes
                    .entry(id.to_string())
                    .or_default()
                    .entry(entry.pkg.name.clone())
                    .or_insert_with(|| version.clone());
                if apk::compare(&version, lowest) == Ordering::Less {
                    *lowest = version.clone();
                }
            }
        }
    }
    let batch = Batch {
        source: source.clone(),
        mode: Mode::Snapshot,
        path: path.to_path_buf(),
    };
    sink.begin(&batch)?;
    for (id, packages) in fixes {
        let affected = packages
            .into_iter()
            .map(|(name, fixed)| Affected {
                ecosystem: ecosystem.clone(),
                name,
                ranges: vec![Range {
                    kind: "ECOSYSTEM".to_string(),
                    events: vec![Event::Introduced("0".to_string()), Event::Fixed(fixed)],
                }],
                versions: Vec::new(),
                vendor_severity: None,
                severity: Vec::new(),
            })
            .collect();
        let advisory = Advisory {
            source_url: Some(format!("https://security.alpinelinux.org/vuln/{id}")),
            id,
            modified,
            published: None,
            withdrawn: None,
            aliases: Vec::new(),
            related: Vec::new(),
            summary: None,
            details: None,
            severity: Vec::new(),
            affected,
            references: Vec::new(),
            source: source.clone(),
        };
        sink.advisory(&batch, advisory)?;
    }
    sink.end(&batch)
}
