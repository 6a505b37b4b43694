//! The normalised vulnerability record Kiln stores: OSV-shaped (ossf/osv-schema), whatever
//! it was read from, with only what a scan uses. Stored as JSON (`serde`), one per
//! (source, id); empty members are left out of the JSON.

use serde::{Deserialize, Serialize};

/// One advisory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    /// `modified`, in milliseconds since the epoch.
    pub modified: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<i64>,
    /// Set: withdrawn, never matches (an import removes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Scores of the whole vulnerability (`CVSS_V3` vectors ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Affected>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Where it came from: `osv`, `debian-tracker`, `alpine-secdb:v3.20/main`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
}

/// OSV `severity[]`: `{type: CVSS_V3, score: "CVSS:3.1/AV:N/..."}`, or `Ubuntu` with a word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityScore {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

/// One package an advisory affects in one ecosystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// `Debian:12`, `Alpine:v3.20` ...
    pub ecosystem: String,
    /// The package's name (the source package's, for Debian and Alpine).
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    /// Versions affected, listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// The vendor's rating for this package (Debian urgency without its `*` marks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_severity: Option<String>,
    /// Scores given for this package only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
}

/// OSV `ranges[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// `ECOSYSTEM`, `SEMVER` or `GIT` (which a package version cannot be matched against).
    #[serde(rename = "type")]
    pub kind: String,
    pub events: Vec<Event>,
}

/// One event of a range (exactly one key, as OSV writes it: `{"introduced": "0"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

impl Advisory {
    /// The (ecosystem, package name) pairs it affects, for the store's lookup index (sorted,
    /// without duplicates).
    pub fn package_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self
            .affected
            .iter()
            .map(|a| (a.ecosystem.clone(), a.name.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The CVE the advisory is about: its id when that is one, else its first CVE alias.
    pub fn cve(&self) -> Option<&str> {
        if self.id.starts_with("CVE-") {
            return Some(&self.id);
        }
        self.aliases
            .iter()
            .filter(|a| a.starts_with("CVE-"))
            .min()
            .map(String::as_str)
    }

    /// The id a finding reports it under: the CVE when there is one.
    pub fn vulnerability_id(&self) -> &str {
        self.cve().unwrap_or(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_keys() {
        let text = r#"{"id":"DEBIAN-CVE-2024-1","modified":5,"aliases":["CVE-2024-1"],
            "affected":[{"ecosystem":"Debian:12","name":"openssl","ranges":[{"type":"ECOSYSTEM",
            "events":[{"introduced":"0"},{"fixed":"3.0.14-1~deb12u2"}]}]},
            {"ecosystem":"Debian:11","name":"openssl"},{"ecosystem":"Debian:12","name":"openssl"}],
            "source":"osv"}"#;
        let a: Advisory = serde_json::from_str(text).unwrap();
        assert_eq!(
            a.affected[0].ranges[0].events[1],
            Event::Fixed("3.0.14-1~deb12u2".into())
        );
        assert_eq!(a.package_keys().len(), 2);
        assert_eq!(a.vulnerability_id(), "CVE-2024-1");
        let again: Advisory = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(again, a);
        assert!(!serde_json::to_string(&a).unwrap().contains("withdrawn"));
    }
}
