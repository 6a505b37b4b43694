//! (stub: being implemented)
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

pub fn tag(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: TagResourceRequest,
) -> Result<TagResourceResponse, ApiError> {
    Err(ApiError::not_implemented("TagResource"))
}

pub fn untag(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: UntagResourceRequest,
) -> Result<UntagResourceResponse, ApiError> {
    Err(ApiError::not_implemented("UntagResource"))
}

pub fn list(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, ApiError> {
    Err(ApiError::not_implemented("ListTagsForResource"))
}
