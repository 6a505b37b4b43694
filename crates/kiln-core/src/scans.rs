//! Vulnerability scans of images (contract §2), on a store transaction: what the worker's scan
//! step, the test stage's gate and the background re-evaluation share.
//!
//! A scan reads the image's package inventory (the worker does that, from an instance of the
//! image), keeps it as an [`ImageScan`] record, and matches it against the vulnerability data
//! in the store (`kiln-vuln` does the matching): the findings replace the image's previous
//! ones, each keeping the `firstObservedAt` of its first report. An import of new data moves
//! the data's generation ([`vulndb`](crate::vulndb)); every scan record evaluated against an
//! older generation is evaluated again ([`reevaluate_stale`]), so findings follow the data
//! without reading any image again.

use crate::error::{CoreError, CoreResult};
use crate::vulndb;
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::pipeline::ScanResultCondition;
use kiln_domain::resources::scan::{
    FixAvailable, ImageScan, Inventory, ScanFinding, ScanState, ScanStatus, Severity,
};
use kiln_domain::resources::Millis;
use kiln_store::{FindingRow, Store, Txn, TxnExt, VulnPackageKey};
use std::collections::HashMap;

/// What one evaluation found, by severity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    pub findings: usize,
    pub by_severity: Vec<(Severity, usize)>,
}

impl ScanSummary {
    fn of(findings: &[ScanFinding]) -> ScanSummary {
        let by_severity = Severity::ALL
            .into_iter()
            .rev()
            .map(|s| (s, findings.iter().filter(|f| f.severity == s).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        ScanSummary {
            findings: findings.len(),
            by_severity,
        }
    }

    /// "3 findings (1 CRITICAL, 2 HIGH)".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .by_severity
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        if parts.is_empty() {
            format!("{} findings", self.findings)
        } else {
            format!("{} findings ({})", self.findings, parts.join(", "))
        }
    }
}

/// Moves the scan state of image `arn` unless its scan has ended; answers whether it moved.
pub fn set_state(
    tx: &mut dyn Txn,
    arn: &str,
    status: ScanStatus,
    reason: Option<String>,
) -> CoreResult<bool> {
    let Some(mut image) = tx.get::<Image>(arn)? else {
        return Ok(false);
    };
    if image
        .scan_state
        .as_ref()
        .is_some_and(|s| s.status.is_terminal())
    {
        return Ok(false);
    }
    image.scan_state = Some(ScanState { status, reason });
    tx.put(&image)?;
    Ok(true)
}

/// When an image's build ends before its scan did, the scan is ABANDONED (contract §2.2).
/// Called by `images::move_image` with every status change.
pub fn abandon_if_unfinished(image: &mut Image) {
    if !image.status.is_final() {
        return;
    }
    if let Some(state) = &mut image.scan_state {
        if !state.status.is_terminal() {
            *state = ScanState {
                status: ScanStatus::Abandoned,
                reason: Some(format!(
                    "the image became {} before its scan findings were collected",
                    image.status.as_str()
                )),
            };
        }
    }
}

/// The key of `image`'s scan record.
fn scan_key(image: &Image) -> String {
    ImageScan::key(&image.arn.region, &image.arn.account, &image.build_id).to_string()
}

/// The OSV ecosystems an inventory's OS maps to (most specific first, the family's generic one
/// last), empty when Kiln cannot scan that OS.
pub fn ecosystems_of(inventory: &Inventory) -> Vec<String> {
    kiln_vuln::ecosystem::for_inventory(inventory)
        .map(|os| os.ecosystems.into_iter().chain(os.generic).collect())
        .unwrap_or_default()
}

/// Scans `image` whose packages the worker read into `inventory`: keeps the inventory, stores
/// the findings and completes the scan state. The scan fails (FAILED with the reason, and no
/// findings) when Kiln cannot tell the image's OS or holds no vulnerability data for it: an
/// empty list would say the image is clean.
pub fn scan_image(
    tx: &mut dyn Txn,
    image: &Image,
    inventory: Inventory,
    now: Millis,
) -> CoreResult<Result<ScanSummary, String>> {
    let ecosystems = ecosystems_of(&inventory);
    let record = ImageScan {
        arn: kiln_domain::arn::Arn::parse(&scan_key(image))
            .map_err(|e| CoreError::Internal(e.to_string()))?,
        image_arn: image.arn.to_string(),
        pipeline_arn: image.pipeline_arn.clone(),
        inventory,
        ecosystems,
        generation: vulndb::generation(tx)?,
        evaluated_at: now,
    };
    tx.put(&record)?;
    let outcome = evaluate(tx, &record, now)?;
    match &outcome {
        Ok(evaluation) => {
            if evaluation.changed {
                store_findings(tx, image, evaluation)?;
            }
            set_state(tx, &record.image_arn, ScanStatus::Completed, None)?;
        }
        Err(reason) => {
            tx.replace_findings(&record.image_arn, &[])?;
            set_state(
                tx,
                &record.image_arn,
                ScanStatus::Failed,
                Some(reason.clone()),
            )?;
        }
    }
    Ok(outcome.map(|evaluation| ScanSummary::of(&evaluation.findings)))
}

/// The findings of the scan record against the data held now, settled against the image's
/// stored findings (see [`Evaluation`]); or why Kiln cannot scan it.
pub fn evaluate(
    tx: &mut dyn Txn,
    scan: &ImageScan,
    now: Millis,
) -> CoreResult<Result<Evaluation, String>> {
    if scan.ecosystems.is_empty() {
        let os = if scan.inventory.os_id.is_empty() {
            "the image has no os-release".to_string()
        } else {
            format!("{} {}", scan.inventory.os_id, scan.inventory.os_version_id)
        };
        return Ok(Err(format!(
            "Kiln cannot scan this OS ({os}): it scans Debian, Ubuntu, Alpine and RPM-based images"
        )));
    }
    let loaded = vulndb::ecosystems(tx)?;
    if !scan
        .ecosystems
        .iter()
        .any(|e| loaded.iter().any(|l| l == e))
    {
        return Ok(Err(format!(
            "no vulnerability data for {} is loaded{}: import it with `kiln vulndb import` (see the README, Vulnerability scanning)",
            scan.ecosystems.join(" or "),
            if loaded.is_empty() {
                String::new()
            } else {
                format!(" (Kiln holds data for {})", loaded.join(", "))
            }
        )));
    }
    let keys: Vec<VulnPackageKey> = kiln_vuln::matching::lookup_keys(&scan.inventory)
        .into_iter()
        .map(|(ecosystem, name)| VulnPackageKey { ecosystem, name })
        .collect();
    let rows = tx.vuln_records_for_packages(&keys)?;
    let advisories = vulndb::decode(&rows)?;
    let mut findings = kiln_vuln::matching::scan(&scan.inventory, &advisories, now);
    let unscored = kiln_vuln::matching::ids_needing_scores(&findings);
    if !unscored.is_empty() {
        let scored = vulndb::decode(&tx.vuln_records_by_id(&unscored)?)?;
        kiln_vuln::matching::enrich(&mut findings, &scored);
    }
    Ok(Ok(settle(tx, &scan.image_arn, findings, now)?))
}

/// What an evaluation found, each finding's times settled against the image's stored ones.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub findings: Vec<ScanFinding>,
    /// Each finding as stored (JSON), in the order of `findings`.
    bodies: Vec<String>,
    /// Which of `findings` are new or differ from the stored ones.
    changed_findings: Vec<usize>,
    /// Stored findings the data no longer supports.
    removed: Vec<String>,
    /// Whether anything must be written.
    pub changed: bool,
}

/// The two times of a stored finding (read without decoding the rest).
#[derive(serde::Deserialize)]
struct Times {
    first_observed_at: Millis,
    updated_at: Millis,
}

/// A finding keeps the `firstObservedAt` of its first report, and its `updatedAt` until its
/// content changes; new ones get `now` for both.
fn settle(
    tx: &mut dyn Txn,
    image_arn: &str,
    mut findings: Vec<ScanFinding>,
    now: Millis,
) -> CoreResult<Evaluation> {
    let encode = |f: &ScanFinding| {
        serde_json::to_string(f)
            .map_err(|e| CoreError::Internal(format!("encoding a finding: {e}")))
    };
    let mut stored: HashMap<String, (String, Option<Times>)> = tx
        .findings_of_image(image_arn)?
        .into_iter()
        .map(|row| {
            let times = serde_json::from_str::<Times>(&row.body).ok();
            (row.vulnerability_id, (row.body, times))
        })
        .collect();
    let mut changed_findings = Vec::new();
    let mut bodies = Vec::with_capacity(findings.len());
    for (index, finding) in findings.iter_mut().enumerate() {
        let body = match stored.remove(&finding.vulnerability_id) {
            Some((old, Some(times))) => {
                finding.first_observed_at = times.first_observed_at;
                finding.updated_at = times.updated_at;
                let same = encode(finding)?;
                if same == old {
                    same
                } else {
                    changed_findings.push(index);
                    finding.updated_at = now;
                    encode(finding)?
                }
            }
            _ => {
                changed_findings.push(index);
                finding.first_observed_at = now;
                finding.updated_at = now;
                encode(finding)?
            }
        };
        bodies.push(body);
    }
    // Findings the data no longer supports are gone.
    let removed: Vec<String> = stored.into_keys().collect();
    Ok(Evaluation {
        changed: !changed_findings.is_empty() || !removed.is_empty(),
        findings,
        bodies,
        changed_findings,
        removed,
    })
}

/// Writes what an evaluation changed (only that: a re-evaluation rewrites no finding the new
/// data left alone).
fn store_findings(tx: &mut dyn Txn, image: &Image, evaluation: &Evaluation) -> CoreResult<()> {
    let rows: Vec<FindingRow> = evaluation
        .changed_findings
        .iter()
        .map(|&i| {
            let f = &evaluation.findings[i];
            FindingRow {
                image_arn: image.arn.to_string(),
                account: image.arn.account.clone(),
                region: image.arn.region.clone(),
                pipeline_arn: image.pipeline_arn.clone(),
                vulnerability_id: f.vulnerability_id.clone(),
                severity: f.severity.as_str().to_string(),
                body: evaluation.bodies[i].clone(),
            }
        })
        .collect();
    tx.update_findings(&image.arn.to_string(), &rows, &evaluation.removed)?;
    Ok(())
}

/// The stored findings of image `arn`.
pub fn findings_of(tx: &mut dyn Txn, arn: &str) -> CoreResult<Vec<ScanFinding>> {
    tx.findings_of_image(arn)?
        .into_iter()
        .map(|row| {
            serde_json::from_str(&row.body).map_err(|e| {
                CoreError::Storage(kiln_store::StoreError::Corrupt {
                    arn: format!("{arn} finding {}", row.vulnerability_id),
                    message: e.to_string(),
                })
            })
        })
        .collect()
}

/// `scanResultCondition` (contract §2.1): the findings that fail the image, if any. A finding
/// counts when it has a fix, or whatever its fix when `fixAvailable` is false; it fails the
/// image when its severity is above `maximumSeverityLabel` (a CRITICAL one always is, since
/// the label is at most HIGH). UNTRIAGED findings have no severity to compare and never fail
/// it.
pub fn failing_findings<'a>(
    findings: &'a [ScanFinding],
    condition: &ScanResultCondition,
) -> Vec<&'a ScanFinding> {
    let limit = Severity::parse(&condition.maximum_severity_label).unwrap_or(Severity::High);
    findings
        .iter()
        .filter(|f| !condition.fix_available || f.fix_available != FixAvailable::No)
        .filter(|f| f.severity != Severity::Untriaged && f.severity > limit)
        .collect()
}

/// The message of an image the gate failed: which findings, over which limit.
pub fn gate_message(failing: &[&ScanFinding], condition: &ScanResultCondition) -> String {
    let mut ids: Vec<String> = failing
        .iter()
        .map(|f| format!("{} ({})", f.vulnerability_id, f.severity.as_str()))
        .collect();
    let more = ids.len().saturating_sub(10);
    ids.truncate(10);
    format!(
        "the image scan found {} finding(s) above {}{}: {}{}",
        failing.len(),
        condition.maximum_severity_label,
        if condition.fix_available {
            " with a fix available"
        } else {
            ""
        },
        ids.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// Evaluates again, each in a write transaction of its own, the scan records of images still
/// AVAILABLE (or deprecated/disabled) with scanning on whose findings predate the data's
/// generation; at most `limit` of them. Answers how many it evaluated. Another process doing
/// the same finds the record's generation moved and skips it.
pub fn reevaluate_stale(
    store: &Store,
    now: impl Fn() -> Millis,
    limit: usize,
) -> CoreResult<usize> {
    let (generation, stale) = store.read(|tx| {
        let generation = vulndb::generation(tx)?;
        let mut stale = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let rows = tx.rows_of_kind(
                kiln_domain::arn::ResourceKind::ImageScan,
                after.as_deref(),
                1000,
            )?;
            let Some(last) = rows.last() else { break };
            after = Some(last.arn.clone());
            for row in rows {
                let scan: ImageScan = serde_json::from_str(&row.body).map_err(|e| {
                    CoreError::Storage(kiln_store::StoreError::Corrupt {
                        arn: row.arn.clone(),
                        message: e.to_string(),
                    })
                })?;
                if scan.generation < generation {
                    stale.push(row.arn);
                }
            }
            if stale.len() >= limit {
                break;
            }
        }
        stale.truncate(limit);
        Ok::<_, CoreError>((generation, stale))
    })??;
    let mut done = 0;
    for key in stale {
        let evaluated = store.write(|tx| reevaluate_one(tx, &key, generation, now()))??;
        if evaluated {
            done += 1;
        }
    }
    Ok(done)
}

fn reevaluate_one(tx: &mut dyn Txn, key: &str, generation: u64, now: Millis) -> CoreResult<bool> {
    let Some(mut scan) = tx.get::<ImageScan>(key)? else {
        return Ok(false);
    };
    if scan.generation >= generation {
        return Ok(false);
    }
    scan.generation = generation;
    scan.evaluated_at = now;
    tx.put(&scan)?;
    let Some(image) = tx.get::<Image>(&scan.image_arn)? else {
        // The image is gone: so is the reason to keep what its scan read.
        tx.delete_row(key)?;
        return Ok(false);
    };
    let usable = matches!(
        image.status,
        ImageStatus::Available | ImageStatus::Deprecated | ImageStatus::Disabled
    );
    if !usable || !image.scanning.as_ref().is_some_and(|s| s.is_on()) {
        return Ok(false);
    }
    match evaluate(tx, &scan, now)? {
        Ok(evaluation) => {
            if evaluation.changed {
                store_findings(tx, &image, &evaluation)?;
            }
            if image.scan_state.as_ref().map(|s| s.status) != Some(ScanStatus::Completed) {
                let mut image = image;
                image.scan_state = Some(ScanState {
                    status: ScanStatus::Completed,
                    reason: None,
                });
                tx.put(&image)?;
            }
        }
        Err(reason) => {
            // Data that was there is gone (or never came): say so rather than keep findings
            // the data no longer supports.
            tx.replace_findings(&scan.image_arn, &[])?;
            let mut image = image;
            image.scan_state = Some(ScanState {
                status: ScanStatus::Failed,
                reason: Some(reason),
            });
            tx.put(&image)?;
        }
    }
    Ok(true)
}

/// Forgets what the scan of `image` read and found (DeleteImage).
pub fn forget(tx: &mut dyn Txn, image: &Image) -> CoreResult<()> {
    tx.replace_findings(&image.arn.to_string(), &[])?;
    tx.delete_row(&scan_key(image))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity, fix: FixAvailable) -> ScanFinding {
        ScanFinding {
            vulnerability_id: id.into(),
            title: id.into(),
            description: String::new(),
            severity,
            inspector_score: None,
            adjusted_cvss: None,
            fix_available: fix,
            remediation_text: None,
            remediation_url: None,
            source: "osv".into(),
            source_url: None,
            vendor_severity: None,
            vendor_created_at: None,
            vendor_updated_at: None,
            reference_urls: Vec::new(),
            related_vulnerabilities: Vec::new(),
            cvss: Vec::new(),
            vulnerable_packages: Vec::new(),
            first_observed_at: 0,
            updated_at: 0,
        }
    }

    fn condition(label: &str, fix_available: bool) -> ScanResultCondition {
        ScanResultCondition {
            maximum_severity_label: label.into(),
            fix_available,
        }
    }

    fn failing(findings: &[ScanFinding], c: &ScanResultCondition) -> Vec<String> {
        failing_findings(findings, c)
            .into_iter()
            .map(|f| f.vulnerability_id.clone())
            .collect()
    }

    #[test]
    fn the_scan_result_condition_counts_what_aws_counts() {
        let findings = [
            finding("critical-fixed", Severity::Critical, FixAvailable::Yes),
            finding("critical-unfixed", Severity::Critical, FixAvailable::No),
            finding("high-partial", Severity::High, FixAvailable::Partial),
            finding("medium-fixed", Severity::Medium, FixAvailable::Yes),
            finding("untriaged", Severity::Untriaged, FixAvailable::Yes),
        ];
        // Only findings with a fix count by default; CRITICAL is always above the label.
        assert_eq!(
            failing(&findings, &condition("HIGH", true)),
            ["critical-fixed"]
        );
        assert_eq!(
            failing(&findings, &condition("MEDIUM", true)),
            ["critical-fixed", "high-partial"]
        );
        assert_eq!(
            failing(&findings, &condition("LOW", true)),
            ["critical-fixed", "high-partial", "medium-fixed"]
        );
        // fixAvailable false counts every finding.
        assert_eq!(
            failing(&findings, &condition("HIGH", false)),
            ["critical-fixed", "critical-unfixed"]
        );
        // A finding at the label passes; UNTRIAGED has no severity to compare.
        assert!(failing(&findings[3..], &condition("MEDIUM", true)).is_empty());
        let message = gate_message(
            &failing_findings(&findings, &condition("MEDIUM", true)),
            &condition("MEDIUM", true),
        );
        assert_eq!(
            message,
            "the image scan found 2 finding(s) above MEDIUM with a fix available: critical-fixed (CRITICAL), high-partial (HIGH)"
        );
    }

    #[test]
    fn a_build_that_ends_first_abandons_its_scan() {
        let arn = kiln_domain::arn::Arn::new(
            "us-east-1",
            "123456789012",
            kiln_domain::arn::ResourceKind::Image,
            "img",
        );
        let json = serde_json::json!({
            "arn": arn, "name": "img", "image_type": "Ami", "build_type": "UserInitiated",
            "status": "Failed", "reason": null, "history": [], "pipeline_arn": null,
            "recipe_arn": "r", "infrastructure_configuration_arn": "i",
            "distribution_configuration_arn": null, "image_tests_enabled": true,
            "enhanced_image_metadata_enabled": true, "platform": "Linux", "os_version": null,
            "output_resources": [], "owner": "123456789012", "date_created": 0,
            "scan_state": {"status": "Scanning", "reason": null}
        });
        let mut image: Image = serde_json::from_value(json).expect("an image");
        abandon_if_unfinished(&mut image);
        let state = image.scan_state.expect("a scan state");
        assert_eq!(state.status, ScanStatus::Abandoned);
        assert_eq!(
            state.reason.as_deref(),
            Some("the image became FAILED before its scan findings were collected")
        );
        // A finished scan stays as it ended.
        image.scan_state = Some(ScanState {
            status: ScanStatus::Completed,
            reason: None,
        });
        abandon_if_unfinished(&mut image);
        assert_eq!(
            image.scan_state.map(|s| s.status),
            Some(ScanStatus::Completed)
        );
    }
}
