//! Resource policies: Put/Get{Component,Image,ImageRecipe,ContainerRecipe}Policy, and the reads
//! the other handlers make to let a grantee see and use what is shared with it.
//!
//! A policy is put on one resource: a component or image build version (the model's ARN
//! patterns take only build versions), or an image or container recipe version. Only the
//! owner may put or get it; to any other account (a grantee included) the resource does not
//! exist, exactly as for Delete* and tagging. The document is checked by
//! `kiln_domain::resources::sharing::parse_policy` (refusals are
//! `InvalidParameterValueException` naming the part at fault); storing it and the grants it
//! makes is `kiln_core::sharing`'s.
//!
//! GetXPolicy of a resource that has no policy answers `{}`, as the model documents for
//! GetImagePolicy and GetContainerRecipePolicy.

use crate::convert::{caller, not_found, scoped_arn, StoreResultExt};
use crate::service::Service;
use kiln_core::sharing;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::sharing::parse_policy;
use kiln_domain::resources::Resource;
use kiln_domain::version::SemVer;
use kiln_store::{Row, Txn};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};
use std::collections::BTreeMap;

/// The resource `arn` names exactly, in the caller's own account and Region.
fn owned(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    arn: &str,
    field: &str,
) -> Result<Arn, ApiError> {
    let Some(parsed) = scoped_arn(ctx, arn, field)? else {
        return Err(not_found(kind, arn));
    };
    let row = tx
        .get_row(&parsed.to_string())
        .api()?
        .filter(|row| row.kind == kind)
        .ok_or_else(|| not_found(kind, arn))?;
    if kind == ResourceKind::Image {
        let image: Image = crate::convert::decode_row(&row)?;
        if image.status == ImageStatus::Deleted {
            return Err(not_found(kind, arn));
        }
    }
    Ok(parsed)
}

fn put(
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    kind: ResourceKind,
    arn: &str,
    field: &str,
    policy: &str,
) -> Result<String, ApiError> {
    let resource = owned(tx, ctx, kind, arn, field)?;
    let parsed = parse_policy(policy, &resource)
        .map_err(|e| ApiError::new(ErrorKind::InvalidParameterValueException, e.to_string()))?;
    sharing::put_policy(tx, caller(ctx), &resource, policy, &parsed).api()?;
    Ok(resource.to_string())
}

fn get(
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    kind: ResourceKind,
    arn: &str,
    field: &str,
) -> Result<String, ApiError> {
    let resource = owned(tx, ctx, kind, arn, field)?;
    Ok(sharing::get_policy(tx, &resource)
        .api()?
        .map_or_else(|| "{}".to_string(), |p| p.document))
}

pub fn put_component_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: PutComponentPolicyRequest,
) -> Result<PutComponentPolicyResponse, ApiError> {
    let arn = input.component_arn.unwrap_or_default();
    let policy = input.policy.unwrap_or_default();
    let arn = put(
        ctx,
        tx,
        ResourceKind::Component,
        &arn,
        "componentArn",
        &policy,
    )?;
    Ok(PutComponentPolicyResponse {
        request_id: None,
        component_arn: Some(arn),
    })
}

pub fn get_component_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetComponentPolicyRequest,
) -> Result<GetComponentPolicyResponse, ApiError> {
    let arn = input.component_arn.unwrap_or_default();
    Ok(GetComponentPolicyResponse {
        request_id: None,
        policy: Some(get(ctx, tx, ResourceKind::Component, &arn, "componentArn")?),
    })
}

pub fn put_image_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: PutImagePolicyRequest,
) -> Result<PutImagePolicyResponse, ApiError> {
    let arn = input.image_arn.unwrap_or_default();
    let policy = input.policy.unwrap_or_default();
    let arn = put(ctx, tx, ResourceKind::Image, &arn, "imageArn", &policy)?;
    Ok(PutImagePolicyResponse {
        request_id: None,
        image_arn: Some(arn),
    })
}

pub fn get_image_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetImagePolicyRequest,
) -> Result<GetImagePolicyResponse, ApiError> {
    let arn = input.image_arn.unwrap_or_default();
    Ok(GetImagePolicyResponse {
        request_id: None,
        policy: Some(get(ctx, tx, ResourceKind::Image, &arn, "imageArn")?),
    })
}

pub fn put_image_recipe_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: PutImageRecipePolicyRequest,
) -> Result<PutImageRecipePolicyResponse, ApiError> {
    let arn = input.image_recipe_arn.unwrap_or_default();
    let policy = input.policy.unwrap_or_default();
    let arn = put(
        ctx,
        tx,
        ResourceKind::ImageRecipe,
        &arn,
        "imageRecipeArn",
        &policy,
    )?;
    Ok(PutImageRecipePolicyResponse {
        request_id: None,
        image_recipe_arn: Some(arn),
    })
}

pub fn get_image_recipe_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetImageRecipePolicyRequest,
) -> Result<GetImageRecipePolicyResponse, ApiError> {
    let arn = input.image_recipe_arn.unwrap_or_default();
    Ok(GetImageRecipePolicyResponse {
        request_id: None,
        policy: Some(get(
            ctx,
            tx,
            ResourceKind::ImageRecipe,
            &arn,
            "imageRecipeArn",
        )?),
    })
}

pub fn put_container_recipe_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: PutContainerRecipePolicyRequest,
) -> Result<PutContainerRecipePolicyResponse, ApiError> {
    let arn = input.container_recipe_arn.unwrap_or_default();
    let policy = input.policy.unwrap_or_default();
    let arn = put(
        ctx,
        tx,
        ResourceKind::ContainerRecipe,
        &arn,
        "containerRecipeArn",
        &policy,
    )?;
    Ok(PutContainerRecipePolicyResponse {
        request_id: None,
        container_recipe_arn: Some(arn),
    })
}

pub fn get_container_recipe_policy(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetContainerRecipePolicyRequest,
) -> Result<GetContainerRecipePolicyResponse, ApiError> {
    let arn = input.container_recipe_arn.unwrap_or_default();
    Ok(GetContainerRecipePolicyResponse {
        request_id: None,
        policy: Some(get(
            ctx,
            tx,
            ResourceKind::ContainerRecipe,
            &arn,
            "containerRecipeArn",
        )?),
    })
}

/// [`kiln_core::sharing::resolve_visible`]: the caller's own resources, or those shared with it.
pub(crate) fn resolve_visible(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
    field: &str,
) -> Result<Option<Row>, ApiError> {
    sharing::resolve_visible(tx, caller(ctx), arn, field).api()
}

/// Like [`resolve_visible`], but a reference to nothing is an `InvalidRequestException`
/// naming it (as `convert::resolve_required`).
pub(crate) fn resolve_visible_required(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
    field: &str,
) -> Result<Row, ApiError> {
    let kind = Arn::parse(arn)
        .map(|a| a.kind.label())
        .unwrap_or("resource");
    resolve_visible(tx, ctx, arn, field)?.ok_or_else(|| {
        ApiError::invalid_request(format!(
            "{field}: the {kind} '{arn}' does not exist or is not shared with your account"
        ))
    })
}

/// The resources of `kind` a List operation answers for its `owner`: the caller's own (no
/// owner, or `Self`), those other accounts share with it (`Shared`), else none; in ARN order
/// after the cursor `after`.
pub(crate) fn listed<T: Resource>(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    owner: Option<&Ownership>,
    after: Option<String>,
) -> Result<Vec<T>, ApiError> {
    match owner {
        None | Some(Ownership::SelfOwned) => crate::convert::list_own(tx, ctx, kind, None, after),
        Some(Ownership::Shared) => {
            let mut rows = sharing::shared_with(tx, caller(ctx), kind).api()?;
            rows.sort_by(|a, b| a.arn.cmp(&b.arn));
            rows.into_iter()
                .filter(|row| after.as_deref().is_none_or(|a| row.arn.as_str() > a))
                .map(|row| crate::convert::decode_row(&row))
                .collect()
        }
        Some(_) => Ok(Vec::new()),
    }
}

/// The builds of one version (`…/name/1.2.3`) of another account's resource of `kind` that
/// are shared with the caller: ListComponentBuildVersions and ListImageBuildVersions answer
/// them to a grantee (only the builds shared with it; none for an ARN that names nothing
/// shared, nor for the caller's own ARNs, which the handlers list themselves).
pub(crate) fn shared_builds<T: serde::de::DeserializeOwned>(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    version_arn: &str,
    field: &str,
) -> Result<Vec<T>, ApiError> {
    let Ok(parsed) = Arn::parse(version_arn) else {
        return Ok(Vec::new());
    };
    if parsed.kind != kind || parsed.region != ctx.region || parsed.account == ctx.account_id {
        return Ok(Vec::new());
    }
    let version = SemVer::parse(parsed.version.as_deref().unwrap_or_default())
        .map_err(|e| crate::convert::version_error(field, e))?
        .to_string();
    sharing::shared_with(tx, caller(ctx), kind)
        .api()?
        .into_iter()
        .filter(|row| {
            row.account == parsed.account
                && row.name == parsed.name
                && row.version.as_deref() == Some(version.as_str())
        })
        .map(|row| crate::convert::decode_row(&row))
        .collect()
}

/// Tags belong to the owner's account: a grantee reading a shared resource sees none (`{}`),
/// as an AWS RAM consumer never sees the tags the owner put on a resource it shares. `arn` is
/// the resource the tags are of.
pub(crate) fn hide_foreign_tags(
    ctx: &RequestContext,
    arn: Option<&str>,
    tags: &mut Option<BTreeMap<String, String>>,
) {
    let own = arn
        .and_then(|a| Arn::parse(a).ok())
        .is_some_and(|a| a.account == ctx.account_id);
    if !own && tags.as_ref().is_some_and(|t| !t.is_empty()) {
        *tags = Some(BTreeMap::new());
    }
}

/// The tags a response shows the caller for `arn`: its own resources' tags, `{}` for a
/// resource another account shares with it (see [`hide_foreign_tags`]).
pub(crate) fn visible_tags(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    arn: &str,
) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    let mut tags = crate::convert::response_tags(tx, arn)?;
    hide_foreign_tags(ctx, Some(arn), &mut tags);
    Ok(tags)
}
