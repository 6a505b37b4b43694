//! (stub: being implemented)
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

pub fn create(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: CreateWorkflowRequest,
) -> Result<CreateWorkflowResponse, ApiError> {
    Err(ApiError::not_implemented("CreateWorkflow"))
}

pub fn get(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: GetWorkflowRequest,
) -> Result<GetWorkflowResponse, ApiError> {
    Err(ApiError::not_implemented("GetWorkflow"))
}

pub fn list(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListWorkflowsRequest,
) -> Result<ListWorkflowsResponse, ApiError> {
    Err(ApiError::not_implemented("ListWorkflows"))
}

pub fn list_build_versions(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListWorkflowBuildVersionsRequest,
) -> Result<ListWorkflowBuildVersionsResponse, ApiError> {
    Err(ApiError::not_implemented("ListWorkflowBuildVersions"))
}

pub fn delete(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: DeleteWorkflowRequest,
) -> Result<DeleteWorkflowResponse, ApiError> {
    Err(ApiError::not_implemented("DeleteWorkflow"))
}
