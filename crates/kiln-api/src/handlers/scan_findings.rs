//! ListImageScanFindings and ListImageScanFindingAggregations: the findings the scans of the
//! caller's images stored (`kiln_store::vulndb`), in the shapes Inspector gives them
//! (contract §2.3, §2.4).
//!
//! A stored finding row carries the account, Region, image and pipeline; its body is the
//! domain's [`ScanFinding`]. Both operations read only the caller's rows in the caller's
//! Region, so a filter naming another account's image or pipeline finds nothing.

use crate::convert::StoreResultExt;
use crate::paging::DEFAULT_PAGE;
use crate::service::Service;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::scan::{Cvss, ScanFinding, Severity, VulnerablePackage as Package};
use kiln_store::{FindingFilter, FindingQuery, FindingRow, SeverityCountsRow, Txn};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

const LIST_OP: &str = "ListImageScanFindings";
const AGGREGATIONS_OP: &str = "ListImageScanFindingAggregations";

/// The filter names ListImageScanFindings takes.
const FINDING_FILTERS: &[&str] = &[
    "imageBuildVersionArn",
    "imagePipelineArn",
    "vulnerabilityId",
    "severity",
];
/// The filter names ListImageScanFindingAggregations takes (`accountId`: contract §6 #9).
const AGGREGATION_FILTERS: &[&str] = &[
    "accountId",
    "imageBuildVersionArn",
    "imagePipelineArn",
    "vulnerabilityId",
];

fn invalid_value(message: String) -> ApiError {
    ApiError::new(ErrorKind::InvalidParameterValueException, message)
}

/// The one value of a filter, its name checked against `allowed`. `field` names the filter in
/// messages (`filters[0]`, `filter`).
fn one_filter<'a>(
    field: &str,
    name: Option<&'a str>,
    values: Option<&'a [String]>,
    allowed: &[&str],
) -> Result<(&'a str, &'a str), ApiError> {
    let name = name.unwrap_or_default();
    if !allowed.contains(&name) {
        return Err(ApiError::invalid_request(format!(
            "{field}.name: '{name}' is not a filter of this operation; use one of: {}",
            allowed.join(", ")
        )));
    }
    match values.unwrap_or_default() {
        [value] => Ok((name, value)),
        values => Err(ApiError::invalid_request(format!(
            "{field}.values: give exactly one value (got {})",
            values.len()
        ))),
    }
}

/// The store's filter for a filter name and value, the value checked for its name.
fn finding_filter(field: &str, name: &str, value: &str) -> Result<FindingFilter, ApiError> {
    let arn_of = |kind: ResourceKind, what: &str| -> Result<String, ApiError> {
        match Arn::parse(value) {
            Ok(arn) if arn.kind == kind && (kind != ResourceKind::Image || arn.build.is_some()) => {
                Ok(arn.to_string())
            }
            _ => Err(invalid_value(format!(
                "{field}.values: '{value}' is not {what} ARN"
            ))),
        }
    };
    Ok(match name {
        "imageBuildVersionArn" => {
            FindingFilter::Image(arn_of(ResourceKind::Image, "an image build version")?)
        }
        "imagePipelineArn" => {
            FindingFilter::Pipeline(arn_of(ResourceKind::ImagePipeline, "an image pipeline")?)
        }
        "vulnerabilityId" => FindingFilter::Vulnerability(value.to_string()),
        _ => match Severity::parse(value) {
            Some(severity) => FindingFilter::Severity(severity.as_str().to_string()),
            None => {
                let all: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
                return Err(invalid_value(format!(
                    "{field}.values: '{value}' is not a severity; use one of: {}",
                    all.join(", ")
                )));
            }
        },
    })
}

/// The cursor of a page: the last finding's image ARN and vulnerability id.
fn cursor(row: &FindingRow) -> String {
    format!("{}\n{}", row.image_arn, row.vulnerability_id)
}

fn parse_cursor(after: &str) -> Result<(String, String), ApiError> {
    after
        .split_once('\n')
        .map(|(image, id)| (image.to_string(), id.to_string()))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidPaginationTokenException,
                "nextToken is not valid: it does not name a finding",
            )
        })
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImageScanFindingsRequest,
) -> Result<ListImageScanFindingsResponse, ApiError> {
    // The model allows exactly one filter in the list when the list is given; checked again
    // here so that no second filter is ever silently ignored.
    let filter = match input.filters.as_deref().unwrap_or_default() {
        [] => None,
        [f] => {
            let (name, value) = one_filter(
                "filters[0]",
                f.name.as_deref(),
                f.values.as_deref(),
                FINDING_FILTERS,
            )?;
            Some(finding_filter("filters[0]", name, value)?)
        }
        more => {
            return Err(ApiError::invalid_request(format!(
                "filters: give at most one filter (got {})",
                more.len()
            )))
        }
    };
    let after = svc
        .pager
        .decode(LIST_OP, ctx, input.next_token.as_deref())?
        .map(|a| parse_cursor(&a))
        .transpose()?;
    let limit = input
        .max_results
        .map(|m| m.clamp(1, 100) as usize)
        .unwrap_or(DEFAULT_PAGE);
    // One more than the page, to know whether another page follows.
    let rows = tx
        .list_findings(&FindingQuery {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
            filter,
            after,
            limit: limit + 1,
        })
        .api()?;
    let page = svc
        .pager
        .page(LIST_OP, ctx, rows, Some(limit as i32), cursor);
    let findings = page
        .items
        .iter()
        .map(finding_to_wire)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ListImageScanFindingsResponse {
        request_id: None,
        findings: Some(findings),
        next_token: page.next_token,
    })
}

pub fn aggregations(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImageScanFindingAggregationsRequest,
) -> Result<ListImageScanFindingAggregationsResponse, ApiError> {
    // The answer is one aggregation, a single page: Kiln issues no token for it, so any token
    // given is refused as one it did not issue.
    svc.pager
        .decode(AGGREGATIONS_OP, ctx, input.next_token.as_deref())?;
    let (name, value) = match &input.filter {
        None => ("accountId", ctx.account_id.as_str()),
        Some(f) => one_filter(
            "filter",
            f.name.as_deref(),
            f.values.as_deref(),
            AGGREGATION_FILTERS,
        )?,
    };
    let counts = |tx: &mut dyn Txn, filter: Option<&FindingFilter>| {
        tx.count_findings(&ctx.account_id, &ctx.region, filter)
            .map(counts_to_wire)
            .api()
    };
    let aggregation = match name {
        "accountId" => {
            if !is_account_id(value) {
                return Err(invalid_value(format!(
                    "filter.values: '{value}' is not an account id (12 digits)"
                )));
            }
            // Another account's findings are not the caller's to count: they show as none.
            let severity_counts = if value == ctx.account_id {
                counts(tx, None)?
            } else {
                counts_to_wire(SeverityCountsRow::default())
            };
            ImageScanFindingAggregation {
                account_aggregation: Some(AccountAggregation {
                    account_id: Some(value.to_string()),
                    severity_counts: Some(severity_counts),
                }),
                ..Default::default()
            }
        }
        _ => {
            let filter = finding_filter("filter", name, value)?;
            let severity_counts = Some(counts(tx, Some(&filter))?);
            match filter {
                FindingFilter::Image(arn) => ImageScanFindingAggregation {
                    image_aggregation: Some(ImageAggregation {
                        image_build_version_arn: Some(arn),
                        severity_counts,
                    }),
                    ..Default::default()
                },
                FindingFilter::Pipeline(arn) => ImageScanFindingAggregation {
                    image_pipeline_aggregation: Some(ImagePipelineAggregation {
                        image_pipeline_arn: Some(arn),
                        severity_counts,
                    }),
                    ..Default::default()
                },
                // `severity` is no filter of this operation (refused above).
                FindingFilter::Vulnerability(id) | FindingFilter::Severity(id) => {
                    ImageScanFindingAggregation {
                        vulnerability_id_aggregation: Some(VulnerabilityIdAggregation {
                            vulnerability_id: Some(id),
                            severity_counts,
                        }),
                        ..Default::default()
                    }
                }
            }
        }
    };
    Ok(ListImageScanFindingAggregationsResponse {
        request_id: None,
        aggregation_type: Some(name.to_string()),
        responses: Some(vec![aggregation]),
        next_token: None,
    })
}

fn is_account_id(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

fn counts_to_wire(c: SeverityCountsRow) -> SeverityCounts {
    let long = |n: u64| Some(i64::try_from(n).unwrap_or(i64::MAX));
    SeverityCounts {
        all: long(c.all),
        critical: long(c.critical),
        high: long(c.high),
        medium: long(c.medium),
    }
}

/// Epoch seconds, as the model's `timestamp` members are written in JSON.
fn seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// The model's strings are `NonEmptyString`s: an empty one is left out instead.
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn cvss_to_wire(c: &Cvss) -> CvssScore {
    CvssScore {
        base_score: Some(c.base_score),
        scoring_vector: Some(c.scoring_vector.clone()),
        version: Some(c.version.clone()),
        source: Some(c.source.clone()),
    }
}

fn package_to_wire(p: &Package) -> VulnerablePackage {
    VulnerablePackage {
        name: Some(p.name.clone()),
        version: Some(p.version.clone()),
        epoch: p.epoch,
        release: p.release.clone(),
        arch: p.arch.clone(),
        package_manager: non_empty(&p.package_manager),
        fixed_in_version: p.fixed_in_version.clone(),
        remediation: p.remediation.clone(),
        file_path: None,
        source_layer_hash: None,
    }
}

/// One stored finding as `ImageScanFinding`. A body that does not decode is a corrupt store,
/// answered as a service error naming the finding.
pub fn finding_to_wire(row: &FindingRow) -> Result<ImageScanFinding, ApiError> {
    let f: ScanFinding = serde_json::from_str(&row.body).map_err(|e| {
        ApiError::service(format!(
            "the stored finding {} of {} cannot be read: {e}",
            row.vulnerability_id, row.image_arn
        ))
    })?;
    let remediation =
        (f.remediation_text.is_some() || f.remediation_url.is_some()).then(|| Remediation {
            recommendation: Some(RemediationRecommendation {
                text: f.remediation_text.clone(),
                url: f.remediation_url.clone(),
            }),
        });
    Ok(ImageScanFinding {
        aws_account_id: Some(row.account.clone()),
        image_build_version_arn: Some(row.image_arn.clone()),
        // One-off CreateImage images have no pipeline: the member is left out.
        image_pipeline_arn: row.pipeline_arn.clone(),
        r#type: Some("PACKAGE_VULNERABILITY".to_string()),
        title: non_empty(&f.title),
        description: non_empty(&f.description),
        remediation,
        severity: Some(f.severity.as_str().to_string()),
        first_observed_at: Some(seconds(f.first_observed_at)),
        updated_at: Some(seconds(f.updated_at)),
        inspector_score: f.inspector_score,
        inspector_score_details: f.adjusted_cvss.as_ref().map(|c| InspectorScoreDetails {
            adjusted_cvss: Some(CvssScoreDetails {
                score_source: Some(c.source.clone()),
                cvss_source: Some(c.source.clone()),
                version: Some(c.version.clone()),
                score: Some(c.base_score),
                scoring_vector: Some(c.scoring_vector.clone()),
                // Kiln adjusts no score for the environment (contract §2.3).
                adjustments: Some(Vec::new()),
            }),
        }),
        package_vulnerability_details: Some(PackageVulnerabilityDetails {
            vulnerability_id: Some(f.vulnerability_id.clone()),
            vulnerable_packages: Some(f.vulnerable_packages.iter().map(package_to_wire).collect()),
            source: non_empty(&f.source),
            cvss: Some(f.cvss.iter().map(cvss_to_wire).collect()),
            related_vulnerabilities: Some(f.related_vulnerabilities.clone()),
            source_url: f.source_url.as_deref().and_then(non_empty),
            vendor_severity: f.vendor_severity.as_deref().and_then(non_empty),
            vendor_created_at: f.vendor_created_at.map(seconds),
            vendor_updated_at: f.vendor_updated_at.map(seconds),
            // At least one URL, or none (the model's NonEmptyStringList).
            reference_urls: (!f.reference_urls.is_empty()).then(|| f.reference_urls.clone()),
        }),
        fix_available: Some(f.fix_available.as_str().to_string()),
    })
}
