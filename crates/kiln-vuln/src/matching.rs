//! An image's packages against advisories: OSV's evaluation (contract §2.5(a)) with the
//! ecosystem's version order, one [`ScanFinding`] per vulnerability.
//!
//! - Which packages: Debian and Alpine data name *source* packages, so a package matches by its
//!   source name (and, for dpkg, the source version when the database gives one); the finding
//!   reports the binary package. RPM data (Red Hat, AlmaLinux, Rocky) is matched by both names.
//! - Which entries: those of the image's ecosystems (`ecosystem`). The generic `Debian` is used
//!   only when an advisory says nothing about the package in the image's own release, and never
//!   from the Debian tracker (which lists every release it knows, so its `Debian` entries are
//!   sid's).
//! - A version is affected when an `affected` entry lists it in `versions`, or one of its
//!   `ECOSYSTEM`/`SEMVER` ranges includes it: below a `limit` (if any), and after sorting the
//!   events by version (`introduced: "0"` first), the last `introduced` at or below it is not
//!   followed by a `fixed` at or below it or a `last_affected` below it. `GIT` ranges name
//!   commits, not package versions, and are not evaluated. Withdrawn advisories never match.
//! - One finding per vulnerability id (the CVE when an advisory has one, else its own id),
//!   merging the packages and the advisories of every source that reports it.

use crate::advisory::{Advisory, Affected, Event, Range};
use crate::cvss;
use crate::ecosystem::{self, OsEcosystems};
#[cfg(test)]
use crate::version::VersionOrder;
use crate::version::{dpkg, rpm, Comparator};
use kiln_domain::resources::scan::{
    Cvss, FixAvailable, InstalledPackage, Inventory, PackageManager, ScanFinding, Severity,
    VulnerablePackage,
};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The longest description a finding carries (the model's limit).
const MAX_DESCRIPTION: usize = 1024;

/// The (ecosystem, package name) pairs to ask the store for: every ecosystem of the image's
/// OS, with the binary and the source name of every package. Empty when Kiln cannot scan the
/// OS (`ecosystem::for_inventory` is `None`).
pub fn lookup_keys(inventory: &Inventory) -> Vec<(String, String)> {
    let Some(os) = ecosystem::for_inventory(inventory) else {
        return Vec::new();
    };
    let mut keys = BTreeSet::new();
    for package in &inventory.packages {
        for ecosystem in &os.ecosystems {
            keys.insert((ecosystem.clone(), package.name.clone()));
            keys.insert((ecosystem.clone(), package.source().to_string()));
        }
    }
    keys.into_iter().collect()
}

/// Whether an affected entry's ranges or versions include `version`; with the lowest `fixed`
/// above it when so.
pub fn affected_version(
    order: &Comparator,
    affected: &Affected,
    version: &str,
) -> Option<Option<String>> {
    let listed = affected
        .versions
        .iter()
        .any(|v| order.compare(v, version) == Ordering::Equal);
    let ranges = || affected.ranges.iter().filter(|r| r.kind != "GIT");
    if !listed && !ranges().any(|r| in_range(order, r, version)) {
        return None;
    }
    let fixed = ranges()
        .flat_map(|r| r.events.iter())
        .filter_map(|e| match e {
            Event::Fixed(v) if order.compare(v, version) == Ordering::Greater => Some(v),
            _ => None,
        })
        .min_by(|a, b| order.compare(a, b));
    Some(fixed.cloned())
}

/// OSV's `IncludedInRanges` for one range.
pub fn in_range(order: &Comparator, range: &Range, version: &str) -> bool {
    let cmp = |a: &str, b: &str| order.compare(a, b);
    let limits: Vec<&str> = range
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Limit(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    if !limits.is_empty()
        && !limits
            .iter()
            .any(|l| *l == "*" || cmp(version, l) == Ordering::Less)
    {
        return false;
    }
    let mut events: Vec<&Event> = range
        .events
        .iter()
        .filter(|e| !matches!(e, Event::Limit(_)))
        .collect();
    let rank = |e: &Event| match e {
        Event::Introduced(_) => 0,
        Event::LastAffected(_) => 1,
        Event::Fixed(_) => 2,
        Event::Limit(_) => 3,
    };
    let is_zero = |e: &Event| matches!(e, Event::Introduced(v) if v == "0");
    events.sort_by(|a, b| {
        is_zero(b)
            .cmp(&is_zero(a))
            .then_with(|| cmp(a.version(), b.version()))
            .then_with(|| rank(a).cmp(&rank(b)))
    });
    let mut vulnerable = false;
    for event in events {
        match event {
            Event::Introduced(v) if v == "0" || cmp(version, v) != Ordering::Less => {
                vulnerable = true
            }
            Event::Fixed(v) if cmp(version, v) != Ordering::Less => vulnerable = false,
            Event::LastAffected(v) if cmp(version, v) == Ordering::Greater => vulnerable = false,
            _ => {}
        }
    }
    vulnerable
}

/// The names a package is looked up under, and the version that is compared.
fn match_names(package: &InstalledPackage) -> (Vec<&str>, &str) {
    match package.manager {
        PackageManager::Dpkg => (
            vec![package.source()],
            package
                .source_version
                .as_deref()
                .unwrap_or(&package.version),
        ),
        PackageManager::Apk => (vec![package.source()], &package.version),
        PackageManager::Rpm => {
            let mut names = vec![package.name.as_str()];
            if package.source() != package.name {
                names.push(package.source());
            }
            (names, &package.version)
        }
    }
}

/// What one vulnerability gathered: advisories and (package index → fixed version).
#[derive(Default)]
struct Group<'a> {
    advisories: BTreeSet<usize>,
    affected: Vec<&'a Affected>,
    packages: BTreeMap<usize, Option<String>>,
}

/// Scans an inventory against advisories (those `lookup_keys` found; others are ignored).
/// Empty when Kiln cannot scan the OS (see `ecosystem::for_inventory`).
pub fn scan(inventory: &Inventory, advisories: &[Advisory], now_millis: i64) -> Vec<ScanFinding> {
    let Some(os) = ecosystem::for_inventory(inventory) else {
        return Vec::new();
    };
    // (ecosystem, name) → (advisory, affected entry).
    let mut index: HashMap<(&str, &str), Vec<(usize, usize)>> = HashMap::new();
    for (a, advisory) in advisories.iter().enumerate() {
        if advisory.withdrawn.is_some() {
            continue;
        }
        for (f, affected) in advisory.affected.iter().enumerate() {
            if os.contains(&affected.ecosystem) {
                index
                    .entry((affected.ecosystem.as_str(), affected.name.as_str()))
                    .or_default()
                    .push((a, f));
            }
        }
    }
    let order = Comparator::new(os.order);
    let mut scores = HashMap::new();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    // Binary packages of one source share the source's name and version: evaluate once.
    type Hit = (usize, usize, Option<String>);
    let mut memo: HashMap<(&str, &str), Vec<Hit>> = HashMap::new();
    for (p, package) in inventory.packages.iter().enumerate() {
        let (names, version) = match_names(package);
        for name in names {
            let hits = memo.entry((name, version)).or_insert_with(|| {
                let mut hits = Vec::new();
                for ecosystem in &os.ecosystems {
                    for &(a, f) in index.get(&(ecosystem.as_str(), name)).into_iter().flatten() {
                        let advisory = &advisories[a];
                        let affected = &advisory.affected[f];
                        if !applies(&os, advisory, affected) {
                            continue;
                        }
                        if let Some(fixed) = affected_version(&order, affected, version) {
                            hits.push((a, f, fixed));
                        }
                    }
                }
                hits
            });
            for (a, f, fixed) in hits.iter() {
                let advisory = &advisories[*a];
                let group = groups
                    .entry(advisory.vulnerability_id().to_string())
                    .or_default();
                group.advisories.insert(*a);
                group.affected.push(&advisory.affected[*f]);
                let slot = group.packages.entry(p).or_insert(None);
                // Sources may disagree: the highest fix satisfies all that name one.
                if let Some(fixed) = fixed {
                    let higher = slot
                        .as_deref()
                        .is_none_or(|s| order.compare(fixed, s) == Ordering::Greater);
                    if higher {
                        *slot = Some(fixed.clone());
                    }
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(id, group)| finding(inventory, advisories, id, group, now_millis, &mut scores))
        .collect()
}

/// Whether an entry of a generic ecosystem (`Debian`) applies to the image (see the module).
fn applies(os: &OsEcosystems, advisory: &Advisory, affected: &Affected) -> bool {
    if os.generic.as_deref() != Some(affected.ecosystem.as_str()) || os.ecosystems.len() == 1 {
        return true;
    }
    if advisory.source == "debian-tracker" {
        return false;
    }
    !advisory.affected.iter().any(|other| {
        other.name == affected.name
            && other.ecosystem != affected.ecosystem
            && os.contains(&other.ecosystem)
    })
}

/// `DEBIAN_CVE`, `ALPINE_SECDB`, or an OSV id's database prefix (`DEBIAN`, `DSA`, `GHSA`).
pub fn source_label(advisory: &Advisory) -> String {
    if advisory.source == "debian-tracker" {
        "DEBIAN_CVE".to_string()
    } else if advisory.source.starts_with("alpine-secdb") {
        "ALPINE_SECDB".to_string()
    } else {
        advisory
            .id
            .split('-')
            .next()
            .unwrap_or(&advisory.id)
            .to_string()
    }
}

fn source_url(advisory: &Advisory, vulnerability_id: &str) -> String {
    if advisory.source == "debian-tracker" {
        format!("https://security-tracker.debian.org/tracker/{vulnerability_id}")
    } else if advisory.source.starts_with("alpine-secdb") {
        format!("https://security.alpinelinux.org/vuln/{vulnerability_id}")
    } else {
        format!("https://osv.dev/vulnerability/{}", advisory.id)
    }
}

/// The CVSS scores of an advisory (and of its matched entries): v3.x and v4.0 vectors scored.
fn scores<'a>(
    advisory: &'a Advisory,
    affected: impl Iterator<Item = &'a Affected>,
    cache: &mut HashMap<&'a str, Option<cvss::Score>>,
) -> Vec<Cvss> {
    let label = source_label(advisory);
    advisory
        .severity
        .iter()
        .chain(affected.flat_map(|a| a.severity.iter()))
        .filter(|s| s.kind.starts_with("CVSS_V3") || s.kind.starts_with("CVSS_V4"))
        .filter_map(|s| {
            let score = cache
                .entry(s.score.as_str())
                .or_insert_with(|| cvss::base_score(&s.score))
                .clone()?;
            Some(Cvss {
                base_score: score.base_score,
                scoring_vector: s.score.trim().to_string(),
                version: score.version.to_string(),
                source: label.clone(),
            })
        })
        .collect()
}

/// The highest v3 score of a list.
fn best_v3(scores: &[Cvss]) -> Option<&Cvss> {
    scores
        .iter()
        .filter(|c| c.version.starts_with('3'))
        .max_by(|a, b| a.base_score.total_cmp(&b.base_score))
}

fn finding<'a>(
    inventory: &Inventory,
    advisories: &'a [Advisory],
    vulnerability_id: String,
    group: Group<'a>,
    now_millis: i64,
    score_cache: &mut HashMap<&'a str, Option<cvss::Score>>,
) -> ScanFinding {
    // The advisory named by the id first, then by source and id.
    let mut primary: Vec<&Advisory> = group.advisories.iter().map(|&a| &advisories[a]).collect();
    primary.sort_by(|a, b| {
        (a.id != vulnerability_id, &a.source, &a.id).cmp(&(
            b.id != vulnerability_id,
            &b.source,
            &b.id,
        ))
    });
    let first = primary[0];
    let mut packages: Vec<VulnerablePackage> = group
        .packages
        .iter()
        .map(|(&p, fixed)| vulnerable_package(&inventory.packages[p], fixed.clone()))
        .collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
    packages.dedup_by(|a, b| a.name == b.name && a.version == b.version);
    let mut names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    names.dedup();
    let title = format!("{vulnerability_id} - {}", names.join(", "));
    let description = primary
        .iter()
        .find_map(|a| a.details.as_deref().or(a.summary.as_deref()))
        .map(|d| truncate(d.trim(), MAX_DESCRIPTION))
        .unwrap_or_default();
    let mut cvss: Vec<Cvss> = Vec::new();
    for advisory in &primary {
        let matched = group
            .affected
            .iter()
            .copied()
            .filter(|f| advisory.affected.iter().any(|g| std::ptr::eq(g, *f)));
        for score in scores(advisory, matched, score_cache) {
            if !cvss
                .iter()
                .any(|c| c.scoring_vector == score.scoring_vector)
            {
                cvss.push(score);
            }
        }
    }
    let adjusted = best_v3(&cvss).cloned();
    let mut vendor_words: Vec<&str> = group
        .affected
        .iter()
        .filter_map(|a| a.vendor_severity.as_deref())
        .collect();
    for advisory in &primary {
        vendor_words.extend(
            advisory
                .severity
                .iter()
                .filter(|s| s.kind == "Ubuntu")
                .map(|s| s.score.as_str()),
        );
    }
    let severity = cvss::severity(adjusted.as_ref().map(|c| c.base_score), &vendor_words);
    let vendor_severity = vendor_words
        .iter()
        .max_by_key(|w| cvss::vendor_severity(w).unwrap_or(Severity::Untriaged))
        .map(|w| w.to_string());
    let fixed = packages
        .iter()
        .filter(|p| p.fixed_in_version.is_some())
        .count();
    let fix_available = if fixed == packages.len() {
        FixAvailable::Yes
    } else if fixed > 0 {
        FixAvailable::Partial
    } else {
        FixAvailable::No
    };
    let upgrades: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            p.fixed_in_version
                .as_ref()
                .map(|f| format!("{} to {f}", p.name))
        })
        .collect();
    let remediation_text = if upgrades.is_empty() {
        "None Provided".to_string()
    } else {
        format!("Upgrade {}", upgrades.join(", "))
    };
    let mut references: Vec<String> = Vec::new();
    for url in primary.iter().flat_map(|a| a.references.iter()) {
        if !references.contains(url) {
            references.push(url.clone());
        }
    }
    let related: BTreeSet<String> = primary
        .iter()
        .flat_map(|a| {
            a.aliases
                .iter()
                .chain(a.related.iter())
                .chain(std::iter::once(&a.id))
        })
        .filter(|id| **id != vulnerability_id)
        .cloned()
        .collect();
    ScanFinding {
        title,
        description,
        severity,
        inspector_score: adjusted.as_ref().map(|c| c.base_score),
        adjusted_cvss: adjusted,
        fix_available,
        remediation_text: Some(remediation_text),
        remediation_url: None,
        source: source_label(first),
        source_url: Some(source_url(first, &vulnerability_id)),
        vendor_severity,
        vendor_created_at: first.published,
        vendor_updated_at: primary.iter().map(|a| a.modified).max(),
        reference_urls: references,
        related_vulnerabilities: related.into_iter().collect(),
        cvss,
        vulnerable_packages: packages,
        first_observed_at: now_millis,
        updated_at: now_millis,
        vulnerability_id,
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

/// A finding's package: the binary package, its version split as Inspector reports it.
fn vulnerable_package(package: &InstalledPackage, fixed: Option<String>) -> VulnerablePackage {
    let (epoch, version, release) = match package.manager {
        PackageManager::Dpkg => {
            let (epoch, upstream, revision) = dpkg::split(&package.version);
            (Some(epoch.unwrap_or(0) as i32), upstream, revision)
        }
        PackageManager::Rpm => {
            let evr = rpm::parse_evr(&package.version);
            let epoch = evr.epoch.and_then(|e| e.parse().ok()).unwrap_or(0);
            (
                Some(epoch),
                evr.version.to_string(),
                evr.release.map(str::to_string),
            )
        }
        PackageManager::Apk => match package.version.rsplit_once("-r") {
            Some((version, release)) => (Some(0), version.to_string(), Some(format!("r{release}"))),
            None => (Some(0), package.version.clone(), None),
        },
    };
    VulnerablePackage {
        name: package.name.clone(),
        version,
        release,
        epoch,
        arch: package.arch.clone(),
        package_manager: "OS".to_string(),
        remediation: fixed
            .as_ref()
            .map(|_| package.manager.upgrade_command(&package.name)),
        fixed_in_version: fixed,
    }
}

/// The vulnerability ids of findings that have no CVSS score: the caller fetches the records
/// whose id is one of them (`CVE-...` records of another source) and calls [`enrich`].
pub fn ids_needing_scores(findings: &[ScanFinding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.cvss.is_empty())
        .map(|f| f.vulnerability_id.clone())
        .collect()
}

/// Gives findings without CVSS the scores of a record whose id is their vulnerability id,
/// and the severity and `inspectorScore` that follow from them.
pub fn enrich(findings: &mut [ScanFinding], records: &[Advisory]) {
    for finding in findings.iter_mut().filter(|f| f.cvss.is_empty()) {
        for record in records
            .iter()
            .filter(|r| r.id == finding.vulnerability_id && r.withdrawn.is_none())
        {
            for score in scores(record, std::iter::empty(), &mut HashMap::new()) {
                if !finding
                    .cvss
                    .iter()
                    .any(|c| c.scoring_vector == score.scoring_vector)
                {
                    finding.cvss.push(score);
                }
            }
        }
        if let Some(best) = best_v3(&finding.cvss).cloned() {
            finding.severity = Severity::from_cvss_score(best.base_score);
            finding.inspector_score = Some(best.base_score);
            finding.adjusted_cvss = Some(best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(events: &[(&str, &str)]) -> Range {
        Range {
            kind: "ECOSYSTEM".to_string(),
            events: events
                .iter()
                .map(|(k, v)| {
                    let v = v.to_string();
                    match *k {
                        "introduced" => Event::Introduced(v),
                        "fixed" => Event::Fixed(v),
                        "last_affected" => Event::LastAffected(v),
                        _ => Event::Limit(v),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn range_rules() {
        let d = &Comparator::new(VersionOrder::Dpkg);
        let r = range(&[("introduced", "0"), ("fixed", "1.2-1")]);
        assert!(in_range(d, &r, "1.1-9"));
        assert!(!in_range(d, &r, "1.2-1"));
        let r = range(&[("introduced", "1.0"), ("last_affected", "1.5")]);
        assert!(!in_range(d, &r, "0.9"));
        assert!(in_range(d, &r, "1.5"));
        assert!(!in_range(d, &r, "1.5.1"));
        // Out of order, and a limit.
        let r = range(&[
            ("fixed", "3.0"),
            ("introduced", "2.0"),
            ("fixed", "1.0"),
            ("introduced", "0"),
        ]);
        assert!(in_range(d, &r, "0.5") && !in_range(d, &r, "1.5") && in_range(d, &r, "2.5"));
        assert!(!in_range(d, &r, "3.0"));
        let r = range(&[("introduced", "0"), ("limit", "2.0")]);
        assert!(in_range(d, &r, "1.9") && !in_range(d, &r, "2.0"));
        let r = range(&[("introduced", "0"), ("limit", "*")]);
        assert!(in_range(d, &r, "99"));
    }
}
