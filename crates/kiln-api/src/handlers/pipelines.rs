//! (stub: being implemented)
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

pub fn create(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: CreateImagePipelineRequest,
) -> Result<CreateImagePipelineResponse, ApiError> {
    Err(ApiError::not_implemented("CreateImagePipeline"))
}

pub fn get(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: GetImagePipelineRequest,
) -> Result<GetImagePipelineResponse, ApiError> {
    Err(ApiError::not_implemented("GetImagePipeline"))
}

pub fn list(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListImagePipelinesRequest,
) -> Result<ListImagePipelinesResponse, ApiError> {
    Err(ApiError::not_implemented("ListImagePipelines"))
}

pub fn update(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: UpdateImagePipelineRequest,
) -> Result<UpdateImagePipelineResponse, ApiError> {
    Err(ApiError::not_implemented("UpdateImagePipeline"))
}

pub fn delete(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: DeleteImagePipelineRequest,
) -> Result<DeleteImagePipelineResponse, ApiError> {
    Err(ApiError::not_implemented("DeleteImagePipeline"))
}

pub fn list_images(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListImagePipelineImagesRequest,
) -> Result<ListImagePipelineImagesResponse, ApiError> {
    Err(ApiError::not_implemented("ListImagePipelineImages"))
}
