//! The rows of vulnerability data and scan findings. The store keeps them opaque (a JSON body
//! each, written and read by `kiln-vuln` and `kiln-core`) and indexes only what lookups need:
//! vulnerability records by (source, id) and by the (ecosystem, package) pairs they affect;
//! findings by image, with the account, Region, pipeline, vulnerability id and severity that
//! ListImageScanFindings filters and ListImageScanFindingAggregations counts on.

/// One vulnerability record (an OSV advisory, or one made from the Debian tracker or an Alpine
/// secdb file), unique by (`source`, `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnRecordRow {
    /// Where it was imported from: `osv`, `debian-tracker`, `alpine-secdb:v3.20/main` ...
    pub source: String,
    pub id: String,
    /// The record's `modified`, in milliseconds since the epoch.
    pub modified_millis: i64,
    /// The packages it affects (the lookup index); answers may leave this empty.
    pub packages: Vec<VulnPackageKey>,
    pub body: String,
}

/// One (ecosystem, package name) a record affects: `("Debian:12", "openssl")`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VulnPackageKey {
    pub ecosystem: String,
    pub name: String,
}

/// What one source holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnSourceStatus {
    pub source: String,
    pub records: u64,
    pub newest_modified_millis: Option<i64>,
}

/// One finding of one image (one vulnerability, with every package of the image it affects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub image_arn: String,
    pub account: String,
    pub region: String,
    pub pipeline_arn: Option<String>,
    pub vulnerability_id: String,
    /// `CRITICAL`, `HIGH` ... as the API writes it.
    pub severity: String,
    pub body: String,
}

/// The one filter ListImageScanFindings (and the aggregations) may give.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FindingFilter {
    Image(String),
    Pipeline(String),
    Vulnerability(String),
    Severity(String),
}

/// Findings of one account and Region, in (image ARN, vulnerability id) order after a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FindingQuery {
    pub account: String,
    pub region: String,
    pub filter: Option<FindingFilter>,
    /// Only findings that sort after this (image ARN, vulnerability id).
    pub after: Option<(String, String)>,
    pub limit: usize,
}

/// `SeverityCounts`: every finding, and those of the three highest severities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeverityCountsRow {
    pub all: u64,
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
}

/// The rows to write, the last one of each (source, id) only, so that a record given twice in
/// one call is written once (PostgreSQL refuses to upsert one row twice in a statement).
pub(crate) fn last_of_each(rows: &[VulnRecordRow]) -> Vec<&VulnRecordRow> {
    last_by(rows, |row| (row.source.as_str(), row.id.as_str()))
}

/// The findings to write, the last one of each vulnerability only (the image is the same).
pub(crate) fn last_finding_of_each(rows: &[FindingRow]) -> Vec<&FindingRow> {
    last_by(rows, |row| row.vulnerability_id.as_str())
}

fn last_by<'a, T, K: std::hash::Hash + Eq>(rows: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut last = std::collections::HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        last.insert(key(row), i);
    }
    rows.iter()
        .enumerate()
        .filter(|(i, row)| last.get(&key(row)) == Some(i))
        .map(|(_, row)| row)
        .collect()
}

/// Refuses findings that name another image than the one they are stored under.
pub(crate) fn check_findings_image(
    image_arn: &str,
    rows: &[FindingRow],
) -> Result<(), crate::StoreError> {
    match rows.iter().find(|row| row.image_arn != image_arn) {
        Some(row) => Err(crate::StoreError::Corrupt {
            arn: image_arn.to_string(),
            message: format!(
                "a finding of {} (vulnerability {}) was given as one of this image",
                row.image_arn, row.vulnerability_id
            ),
        }),
        None => Ok(()),
    }
}

/// The column a [`FindingFilter`] compares, and the value it compares with.
pub(crate) fn filter_parts(filter: &FindingFilter) -> (&'static str, &str) {
    match filter {
        FindingFilter::Image(v) => ("image_arn", v),
        FindingFilter::Pipeline(v) => ("pipeline_arn", v),
        FindingFilter::Vulnerability(v) => ("vulnerability_id", v),
        FindingFilter::Severity(v) => ("severity", v),
    }
}
