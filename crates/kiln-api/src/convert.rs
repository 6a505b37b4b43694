//! Small conversions shared by all handlers: dates, errors from the other crates, and the
//! lookups every handler needs (scoped gets, reference resolution).

use kiln_core::lookup;
use kiln_core::{Caller, CoreError};
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::{Millis, Resource};
use kiln_domain::version::VersionError;
use kiln_domain::DomainError;
use kiln_store::{Row, StoreError, Txn};
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

/// The caller of a request, as the core knows it.
pub fn caller(ctx: &RequestContext) -> Caller<'_> {
    Caller {
        account_id: &ctx.account_id,
        region: &ctx.region,
        now_millis: ctx.now_millis,
    }
}

/// The AWS error shape of a failure below the HTTP layer: the one place that decides it.
pub fn core_error(e: CoreError) -> ApiError {
    match e {
        CoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
        CoreError::Invalid(message) => ApiError::invalid_request(message),
        CoreError::InvalidVersion(message) => ApiError::invalid_version(message),
        CoreError::Storage(e) => store_error(e),
        CoreError::Internal(message) => ApiError::service(message),
    }
}

impl<T> StoreResultExt<T> for Result<T, CoreError> {
    fn api(self) -> Result<T, ApiError> {
        self.map_err(core_error)
    }
}

/// Parses an ARN the wire layer already matched against its pattern, and hides resources of
/// other accounts and regions: to the caller they do not exist.
pub fn scoped_arn(ctx: &RequestContext, arn: &str, field: &str) -> Result<Option<Arn>, ApiError> {
    lookup::scoped_arn(caller(ctx), arn, field).api()
}

pub fn not_found(kind: ResourceKind, arn: &str) -> ApiError {
    core_error(CoreError::not_found(kind, arn))
}

/// Gets a resource by its exact ARN in the caller's scope, or `ResourceNotFoundException`.
pub fn get_exact<T: Resource>(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    arn: &str,
    field: &str,
) -> Result<T, ApiError> {
    lookup::get_exact(tx, caller(ctx), kind, arn, field).api()
}

/// See [`lookup::resolve`].
pub fn resolve(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
    field: &str,
) -> Result<Option<Row>, ApiError> {
    lookup::resolve(tx, caller(ctx), arn, field).api()
}

/// Like [`resolve`], but a reference to nothing is an `InvalidRequestException` naming it.
pub fn resolve_required(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
    field: &str,
) -> Result<Row, ApiError> {
    lookup::resolve_required(tx, caller(ctx), arn, field).api()
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
    lookup::list_own(tx, caller(ctx), kind, name, after).api()
}

/// Decodes a stored record, or a part of one (such as a pipeline's timing).
pub fn decode_row<T: serde::de::DeserializeOwned>(row: &Row) -> Result<T, ApiError> {
    lookup::decode_row(row).api()
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

/// Tags for a response. None are answered `{}`: the generated types write `tags` always.
pub fn response_tags(
    tx: &mut dyn Txn,
    arn: &str,
) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    Ok(Some(tx.tags(arn).api()?))
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

/// A refused `parentImage`, as CreateImageRecipe and CreateContainerRecipe answer it.
pub fn parent_error(message: String) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidParameterValueException,
        format!("parentImage: {message}"),
    )
}

#[cfg(test)]
#[test]
fn core_errors_keep_their_aws_classes_and_messages() {
    let cases = [
        (
            CoreError::not_found(ResourceKind::Image, "arn:x"),
            "ResourceNotFoundException",
            "The image 'arn:x' does not exist.",
        ),
        (
            CoreError::Invalid("imageRecipeArn: bad".into()),
            "InvalidRequestException",
            "imageRecipeArn: bad",
        ),
        (
            CoreError::InvalidVersion("imageRecipeArn: 1.x".into()),
            "InvalidVersionNumberException",
            "imageRecipeArn: 1.x",
        ),
        (
            CoreError::Internal("reading images: gone".into()),
            "ServiceException",
            "reading images: gone",
        ),
        (
            CoreError::Storage(StoreError::Corrupt {
                arn: "arn:x".into(),
                message: "bad".into(),
            }),
            "ServiceException",
            "internal storage error: ",
        ),
    ];
    for (error, code, message) in cases {
        let api = core_error(error);
        assert_eq!(api.code(), code, "{}", api.message);
        assert!(api.message.starts_with(message), "{}", api.message);
    }
}
