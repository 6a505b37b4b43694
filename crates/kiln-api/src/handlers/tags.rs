//! TagResource, UntagResource and ListTagsForResource, for every kind of resource alike: tags
//! live in their own table, keyed by ARN.
//!
//! A versioned ARN without a build number (or with `x` filters) names the newest matching
//! resource, as everywhere else in the API.

use crate::convert::{resolve, StoreResultExt};
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

/// Most tags one resource may carry (the TagMap limit).
const MAX_TAGS: usize = 50;

fn target(tx: &mut dyn Txn, ctx: &RequestContext, arn: &str) -> Result<String, ApiError> {
    let row = resolve(tx, ctx, arn, "resourceArn")
        .map_err(|e| ApiError::new(ErrorKind::InvalidParameterException, e.message))?;
    row.map(|r| r.arn)
        .ok_or_else(|| ApiError::not_found(format!("The resource '{arn}' does not exist.")))
}

pub fn tag(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: TagResourceRequest,
) -> Result<TagResourceResponse, ApiError> {
    let arn = target(tx, ctx, input.resource_arn.as_deref().unwrap_or_default())?;
    let tags = input.tags.unwrap_or_default();
    let mut merged = tx.tags(&arn).api()?;
    merged.extend(tags.clone());
    if merged.len() > MAX_TAGS {
        return Err(ApiError::new(
            ErrorKind::InvalidParameterException,
            format!(
                "tags: the resource would carry {} tags; at most {MAX_TAGS} are allowed",
                merged.len()
            ),
        ));
    }
    tx.set_tags(&arn, &tags).api()?;
    Ok(TagResourceResponse {})
}

pub fn untag(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: UntagResourceRequest,
) -> Result<UntagResourceResponse, ApiError> {
    let arn = target(tx, ctx, input.resource_arn.as_deref().unwrap_or_default())?;
    tx.remove_tags(&arn, &input.tag_keys.unwrap_or_default())
        .api()?;
    Ok(UntagResourceResponse {})
}

pub fn list(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, ApiError> {
    let arn = target(tx, ctx, input.resource_arn.as_deref().unwrap_or_default())?;
    Ok(ListTagsForResourceResponse {
        tags: Some(tx.tags(&arn).api()?),
    })
}
