//! (stub: being implemented)
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

pub fn create(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: CreateComponentRequest,
) -> Result<CreateComponentResponse, ApiError> {
    Err(ApiError::not_implemented("CreateComponent"))
}

pub fn get(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: GetComponentRequest,
) -> Result<GetComponentResponse, ApiError> {
    Err(ApiError::not_implemented("GetComponent"))
}

pub fn list(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListComponentsRequest,
) -> Result<ListComponentsResponse, ApiError> {
    Err(ApiError::not_implemented("ListComponents"))
}

pub fn list_build_versions(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListComponentBuildVersionsRequest,
) -> Result<ListComponentBuildVersionsResponse, ApiError> {
    Err(ApiError::not_implemented("ListComponentBuildVersions"))
}

pub fn delete(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: DeleteComponentRequest,
) -> Result<DeleteComponentResponse, ApiError> {
    Err(ApiError::not_implemented("DeleteComponent"))
}
