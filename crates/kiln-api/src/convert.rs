//! Small conversions shared by all handlers: dates, errors from the other crates, and the
//! lookups every handler needs (scoped gets, reference resolution).

use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::{Millis, Resource};
use kiln_domain::version::{SemVer, VersionError, VersionFilter};
use kiln_domain::DomainError;
use kiln_store::{ListQuery, Row, StoreError, Txn, TxnExt};
use kiln_wire::{ApiError, ErrorKind, RequestContext};
use std::collections::BTreeMap;

/// Formats a time as the API's `DateTime` strings: `2026-11-26T22:45:47.123Z`.
pub fn date(millis: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
#[test]
fn dates_are_utc_with_milliseconds() {
    assert_eq!(date(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(date(0), "1970-01-01T00:00:00.000Z");
}

pub fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "storage failure");
    ApiError::service(format!("internal storage error: {e}"))
}

pub trait StoreResultExt<T> {
    /// Turns a storage failure into a `ServiceException`.
    fn api(self) -> Result<T, ApiError>;
}

impl<T> StoreResultExt<T> for Result<T, StoreError> {
    fn api(self) -> Result<T, ApiError> {
        self.map_err(store_error)
    }
}

pub fn domain_error(e: DomainError) -> ApiError {
    match e {
        DomainError::Invalid { field, message } => {
            ApiError::invalid_request(format!("{field}: {message}"))
        }
        DomainError::InvalidVersion { field, message } => {
            ApiError::invalid_version(format!("{field}: {message}"))
        }
    }
}

pub fn version_error(field: &str, e: VersionError) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidVersionNumberException,
        format!("{field}: {}", e.message),
    )
}

/// Dry runs stop after every check passed, before anything is written.
pub fn check_dry_run(dry_run: Option<bool>, operation: &str) -> Result<(), ApiError> {
    if dry_run == Some(true) {
        Err(ApiError::dry_run(operation))
    } else {
        Ok(())
    }
}

/// A new resource's ARN in the caller's account and region.
pub fn new_arn(ctx: &RequestContext, kind: ResourceKind, name: &str) -> Arn {
    Arn::new(
        &ctx.region,
        &ctx.account_id,
        kind,
        &kiln_domain::name::normalize(name),
    )
}

/// Parses an ARN the wire layer already matched against its pattern, and hides resources of
/// other accounts and regions: to the caller they do not exist.
pub fn scoped_arn(ctx: &RequestContext, arn: &str, field: &str) -> Result<Option<Arn>, ApiError> {
    let parsed = Arn::parse(arn).map_err(|e| ApiError::invalid_request(format!("{field}: {e}")))?;
    let visible = parsed.region == ctx.region && parsed.account == ctx.account_id;
    Ok(visible.then_some(parsed))
}

pub fn not_found(kind: ResourceKind, arn: &str) -> ApiError {
    ApiError::not_found(format!("The {} '{arn}' does not exist.", kind.label()))
}

/// Gets a resource by its exact ARN in the caller's scope, or `ResourceNotFoundException`.
pub fn get_exact<T: Resource>(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    arn: &str,
    field: &str,
) -> Result<T, ApiError> {
    if scoped_arn(ctx, arn, field)?.is_none() {
        return Err(not_found(kind, arn));
    }
    tx.get::<T>(arn).api()?.ok_or_else(|| not_found(kind, arn))
}

/// Resolves a reference that may name a version filter (`1.x.x`), a version (`1.2.3`, newest
/// build) or a build (`1.2.3/4`) to the newest matching stored row. `Ok(None)` when nothing
/// matches; an error when the ARN is malformed.
pub fn resolve(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
    field: &str,
) -> Result<Option<Row>, ApiError> {
    let Some(parsed) = scoped_arn(ctx, arn, field)? else {
        return Ok(None);
    };
    if !parsed.kind.is_versioned() || parsed.build.is_some() {
        return tx.get_row(arn).api();
    }
    let filter = match &parsed.version {
        Some(v) => VersionFilter::parse(v).map_err(|e| version_error(field, e))?,
        None => VersionFilter::ANY,
    };
    let candidates = tx
        .list_rows(&ListQuery {
            account: parsed.account.clone(),
            region: parsed.region.clone(),
            kind: parsed.kind,
            name: Some(parsed.name.clone()),
            after: None,
        })
        .api()?;
    let versions = candidates.iter().filter_map(|row| {
        let v = SemVer::parse(row.version.as_deref()?).ok()?;
        Some((v, row.build.unwrap_or(0)))
    });
    let Some((version, build)) = filter.newest(versions) else {
        return Ok(None);
    };
    Ok(candidates.into_iter().find(|row| {
        row.version.as_deref() == Some(version.to_string().as_str())
            && row.build.unwrap_or(0) == build
    }))
}

/// Like [`resolve`], but a reference to nothing is an `InvalidRequestException` naming it.
pub fn resolve_required(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
    field: &str,
) -> Result<Row, ApiError> {
    let kind = Arn::parse(arn)
        .map(|a| a.kind.label())
        .unwrap_or("resource");
    resolve(tx, ctx, arn, field)?.ok_or_else(|| {
        ApiError::invalid_request(format!("{field}: the {kind} '{arn}' does not exist"))
    })
}

/// The caller's resources of one kind (of one normalised name, if given), in ARN order, after
/// the cursor `after`.
pub fn list_own<T: Resource>(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    name: Option<&str>,
    after: Option<String>,
) -> Result<Vec<T>, ApiError> {
    tx.list(&ListQuery {
        account: ctx.account_id.clone(),
        region: ctx.region.clone(),
        kind,
        name: name.map(str::to_string),
        after,
    })
    .api()
}

/// Decodes a stored record, or a part of one (such as a pipeline's timing).
pub fn decode_row<T: serde::de::DeserializeOwned>(row: &Row) -> Result<T, ApiError> {
    serde_json::from_str(&row.body).map_err(|e| {
        store_error(StoreError::Corrupt {
            arn: row.arn.clone(),
            message: e.to_string(),
        })
    })
}

/// Refuses to delete a resource that others still reference.
pub fn check_no_referrers(tx: &mut dyn Txn, arn: &str, label: &str) -> Result<(), ApiError> {
    let referrers = tx.referrers(arn).api()?;
    if referrers.is_empty() {
        return Ok(());
    }
    Err(ApiError::dependency(format!(
        "The {label} '{arn}' cannot be deleted because it is used by: {}",
        referrers.join(", ")
    )))
}

/// Tags for a response: absent rather than empty, as AWS answers.
pub fn response_tags(
    tx: &mut dyn Txn,
    arn: &str,
) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    let tags = tx.tags(arn).api()?;
    Ok((!tags.is_empty()).then_some(tags))
}

/// Stores the tags a create request carried.
pub fn store_tags(
    tx: &mut dyn Txn,
    arn: &str,
    tags: Option<&BTreeMap<String, String>>,
) -> Result<(), ApiError> {
    match tags {
        Some(tags) if !tags.is_empty() => tx.set_tags(arn, tags).api(),
        _ => Ok(()),
    }
}

/// A name that normalises like an existing resource's is the same name.
pub fn check_name_free(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    name: &str,
) -> Result<(), ApiError> {
    let arn = new_arn(ctx, kind, name).to_string();
    if tx.get_row(&arn).api()?.is_some() {
        return Err(ApiError::already_exists(format!(
            "The {} '{arn}' already exists (names that differ only in case, spaces or underscores are the same name).",
            kind.label()
        )));
    }
    Ok(())
}
