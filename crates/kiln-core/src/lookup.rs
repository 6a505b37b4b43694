//! The reads every action needs: resources in the caller's scope, references resolved to the
//! newest matching build, records decoded.

use crate::caller::Caller;
use crate::error::{CoreError, CoreResult};
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::Resource;
use kiln_domain::version::{SemVer, VersionError, VersionFilter};
use kiln_store::{ListQuery, Read, Row, StoreError, Txn, TxnExt};

pub fn version_error(field: &str, e: VersionError) -> CoreError {
    CoreError::InvalidVersion(format!("{field}: {}", e.message))
}

/// Parses an ARN the wire layer already matched against its pattern, and hides resources of
/// other accounts and regions: to the caller they do not exist.
pub fn scoped_arn(caller: Caller<'_>, arn: &str, field: &str) -> CoreResult<Option<Arn>> {
    let parsed = Arn::parse(arn).map_err(|e| CoreError::Invalid(format!("{field}: {e}")))?;
    let visible = parsed.region == caller.region && parsed.account == caller.account_id;
    Ok(visible.then_some(parsed))
}

/// Gets a resource by its exact ARN in the caller's scope, or [`CoreError::NotFound`].
pub fn get_exact<T: Resource>(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    kind: ResourceKind,
    arn: &str,
    field: &str,
) -> CoreResult<T> {
    if scoped_arn(caller, arn, field)?.is_none() {
        return Err(CoreError::not_found(kind, arn));
    }
    tx.get::<T>(arn)?
        .ok_or_else(|| CoreError::not_found(kind, arn))
}

/// Resolves a reference that may name a version filter (`1.x.x`), a version (`1.2.3`, newest
/// build) or a build (`1.2.3/4`) to the newest matching stored row. `Ok(None)` when nothing
/// matches; an error when the ARN is malformed.
pub fn resolve(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    arn: &str,
    field: &str,
) -> CoreResult<Option<Row>> {
    let Some(parsed) = scoped_arn(caller, arn, field)? else {
        return Ok(None);
    };
    let query = match read_of(arn, &parsed) {
        Read::List(query) => query,
        _ => return Ok(tx.get_row(arn)?),
    };
    let filter = match &parsed.version {
        Some(v) => VersionFilter::parse(v).map_err(|e| version_error(field, e))?,
        None => VersionFilter::ANY,
    };
    Ok(newest_row(tx.list_rows(&query)?, &filter))
}

/// The newest of `candidates` (by semantic version, then build) that `filter` matches.
pub fn newest_row(candidates: Vec<Row>, filter: &VersionFilter) -> Option<Row> {
    let versions = candidates.iter().filter_map(|row| {
        let v = SemVer::parse(row.version.as_deref()?).ok()?;
        Some((v, row.build.unwrap_or(0)))
    });
    let (version, build) = filter.newest(versions)?;
    candidates.into_iter().find(|row| {
        row.version.as_deref() == Some(version.to_string().as_str())
            && row.build.unwrap_or(0) == build
    })
}

/// The read [`resolve`] makes for `arn` (for [`Txn::prefetch`]); `None` when it makes none.
pub fn resolve_read(caller: Caller<'_>, arn: &str) -> Option<Read> {
    let parsed = scoped_arn(caller, arn, "").ok()??;
    Some(read_of(arn, &parsed))
}

/// An exact ARN is one row; a version or filter is every build of the name.
fn read_of(arn: &str, parsed: &Arn) -> Read {
    if !parsed.kind.is_versioned() || parsed.build.is_some() {
        return Read::Row(arn.to_string());
    }
    Read::List(ListQuery {
        account: parsed.account.clone(),
        region: parsed.region.clone(),
        kind: parsed.kind,
        name: Some(parsed.name.clone()),
        after: None,
    })
}

/// Like [`resolve`], but a reference to nothing is [`CoreError::Invalid`] naming it.
pub fn resolve_required(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    arn: &str,
    field: &str,
) -> CoreResult<Row> {
    let kind = Arn::parse(arn)
        .map(|a| a.kind.label())
        .unwrap_or("resource");
    resolve(tx, caller, arn, field)?
        .ok_or_else(|| CoreError::Invalid(format!("{field}: the {kind} '{arn}' does not exist")))
}

/// The caller's resources of one kind (of one normalised name, if given), in ARN order, after
/// the cursor `after`.
pub fn list_own<T: Resource>(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    kind: ResourceKind,
    name: Option<&str>,
    after: Option<String>,
) -> CoreResult<Vec<T>> {
    Ok(tx.list(&ListQuery {
        account: caller.account_id.to_string(),
        region: caller.region.to_string(),
        kind,
        name: name.map(str::to_string),
        after,
    })?)
}

/// Decodes a stored record, or a part of one (such as a pipeline's timing).
pub fn decode_row<T: serde::de::DeserializeOwned>(row: &Row) -> CoreResult<T> {
    serde_json::from_str(&row.body).map_err(|e| {
        CoreError::Storage(StoreError::Corrupt {
            arn: row.arn.clone(),
            message: e.to_string(),
        })
    })
}
