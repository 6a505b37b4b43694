//! OSV records (ossf/osv-schema) to advisories, from a JSON file or an `all.zip`.

use super::{time::millis, Batch, ImportError, Limits, Mode, Sink};
use crate::advisory::{Advisory, Affected, Event, Range, SeverityScore};
use serde::Deserialize;
use std::io::Read;
use std::path::Path;

/// The parts of an OSV record Kiln keeps; everything else is skipped while parsing. Members
/// OSV allows to be absent may also be `null`.
#[derive(Deserialize)]
struct Record {
    id: String,
    modified: String,
    published: Option<String>,
    withdrawn: Option<String>,
    aliases: Option<Vec<String>>,
    related: Option<Vec<String>>,
    summary: Option<String>,
    details: Option<String>,
    severity: Option<Vec<Severity>>,
    affected: Option<Vec<RecordAffected>>,
    references: Option<Vec<Reference>>,
}

#[derive(Deserialize)]
struct Severity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct Reference {
    url: Option<String>,
}

#[derive(Deserialize)]
struct Package {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RecordAffected {
    package: Option<Package>,
    ranges: Option<Vec<RecordRange>>,
    versions: Option<Vec<String>>,
    severity: Option<Vec<Severity>>,
    ecosystem_specific: Option<EcosystemSpecific>,
}

/// Debian's OSV records carry the tracker's urgency here.
#[derive(Deserialize)]
struct EcosystemSpecific {
    urgency: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RecordRange {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<RecordEvent>,
}

#[derive(Deserialize)]
struct RecordEvent {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
    limit: Option<String>,
}

/// Parses one OSV record; the message names serde's line and column, or the member.
pub fn parse_osv_record(bytes: &[u8]) -> Result<Advisory, String> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    convert(record)
}

fn convert(r: Record) -> Result<Advisory, String> {
    if r.id.trim().is_empty() {
        return Err("`id` is empty".to_string());
    }
    let scores = |s: Option<Vec<Severity>>| -> Vec<SeverityScore> {
        s.unwrap_or_default()
            .into_iter()
            .map(|s| SeverityScore {
                kind: s.kind,
                score: s.score,
            })
            .collect()
    };
    let mut affected = Vec::new();
    for (i, a) in r.affected.unwrap_or_default().into_iter().enumerate() {
        // Entries without a package (a GIT range of a repository) name nothing a scan meets.
        let Some(package) = a.package else { continue };
        let mut ranges = Vec::new();
        for (j, range) in a.ranges.unwrap_or_default().into_iter().enumerate() {
            let mut events = Vec::new();
            for (k, e) in range.events.into_iter().enumerate() {
                let event = match (e.introduced, e.fixed, e.last_affected, e.limit) {
                    (Some(v), None, None, None) => Event::Introduced(v),
                    (None, Some(v), None, None) => Event::Fixed(v),
                    (None, None, Some(v), None) => Event::LastAffected(v),
                    (None, None, None, Some(v)) => Event::Limit(v),
                    _ => {
                        return Err(format!(
                            "affected[{i}].ranges[{j}].events[{k}] must have exactly one of \
                             introduced, fixed, last_affected, limit"
                        ))
                    }
                };
                events.push(event);
            }
            ranges.push(Range {
                kind: range.kind,
                events,
            });
        }
        let vendor_severity = a
            .ecosystem_specific
            .and_then(|e| e.urgency)
            .and_then(|u| u.as_str().map(clean_urgency));
        affected.push(Affected {
            ecosystem: package.ecosystem,
            name: package.name,
            ranges,
            versions: a.versions.unwrap_or_default(),
            vendor_severity,
            severity: scores(a.severity),
        });
    }
    let time = |field: &str, t: Option<String>| t.map(|t| millis(field, &t)).transpose();
    Ok(Advisory {
        modified: millis("modified", &r.modified)?,
        published: time("published", r.published)?,
        withdrawn: time("withdrawn", r.withdrawn)?,
        aliases: r.aliases.unwrap_or_default(),
        related: r.related.unwrap_or_default(),
        summary: r.summary.filter(|s| !s.is_empty()),
        details: r.details.filter(|s| !s.is_empty()),
        severity: scores(r.severity),
        affected,
        references: r
            .references
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.url)
            .collect(),
        source: "osv".to_string(),
        source_url: Some(format!("https://osv.dev/vulnerability/{}", r.id)),
        id: r.id,
    })
}

/// Debian writes urgencies such as `low*` and `medium**` (marks of its own triage).
pub fn clean_urgency(text: &str) -> String {
    text.trim().trim_end_matches('*').trim().to_string()
}

/// Reads every `.json` entry of an OSV zip (`all.zip`) as one record, in one batch.
pub fn read_osv_zip(path: &Path, limits: &Limits, sink: &mut dyn Sink) -> Result<(), ImportError> {
    let file = std::fs::File::open(path).map_err(|e| ImportError::new(path, e.to_string()))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| ImportError::new(path, format!("not a readable zip: {e}")))?;
    if archive.len() > limits.max_zip_entries {
        return Err(ImportError::new(
            path,
            format!(
                "{} entries is more than the {} a zip may have",
                archive.len(),
                limits.max_zip_entries
            ),
        ));
    }
    let batch = Batch {
        source: "osv".to_string(),
        mode: Mode::Incremental,
        path: path.to_path_buf(),
    };
    sink.begin(&batch)?;
    let mut total: u64 = 0;
    let mut buffer = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| ImportError::new(path, format!("zip entry {index}: {e}")))?;
        // The name is only ever printed.
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("#{index}"));
        if entry.is_dir() || !name.ends_with(".json") {
            continue;
        }
        let err = |m: String| ImportError::in_entry(path, &name, m);
        let (size, compressed) = (entry.size(), entry.compressed_size());
        if size > limits.max_record_bytes {
            return Err(err(format!(
                "expands to {size} bytes, more than the {} bytes a JSON record may have",
                limits.max_record_bytes
            )));
        }
        if size > limits.ratio_checked_above && size / compressed.max(1) > limits.max_zip_ratio {
            return Err(err(format!(
                "expands {} times ({compressed} to {size} bytes), more than the {} times \
                 allowed: a zip bomb?",
                size / compressed.max(1),
                limits.max_zip_ratio
            )));
        }
        buffer.clear();
        // The header's size may lie: read at most one byte more than the limit.
        (&mut entry)
            .take(limits.max_record_bytes + 1)
            .read_to_end(&mut buffer)
            .map_err(|e| err(format!("cannot be read: {e}")))?;
        if buffer.len() as u64 > limits.max_record_bytes {
            return Err(err(format!(
                "expands past the {} bytes a JSON record may have",
                limits.max_record_bytes
            )));
        }
        // Also on what it really expanded to, in case the header understated it.
        let actual = buffer.len() as u64;
        if actual > limits.ratio_checked_above && actual / compressed.max(1) > limits.max_zip_ratio
        {
            return Err(err(format!(
                "expanded {} times ({compressed} to {actual} bytes), more than the {} times \
                 allowed: a zip bomb?",
                actual / compressed.max(1),
                limits.max_zip_ratio
            )));
        }
        total += actual;
        if total > limits.max_zip_total_bytes {
            return Err(err(format!(
                "the zip expands past the {} bytes allowed in total",
                limits.max_zip_total_bytes
            )));
        }
        let advisory = parse_osv_record(&buffer).map_err(err)?;
        sink.advisory(&batch, advisory)?;
    }
    sink.end(&batch)
}
