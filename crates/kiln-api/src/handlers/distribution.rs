//! (stub: being implemented)
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

pub fn create(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: CreateDistributionConfigurationRequest,
) -> Result<CreateDistributionConfigurationResponse, ApiError> {
    Err(ApiError::not_implemented("CreateDistributionConfiguration"))
}

pub fn get(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: GetDistributionConfigurationRequest,
) -> Result<GetDistributionConfigurationResponse, ApiError> {
    Err(ApiError::not_implemented("GetDistributionConfiguration"))
}

pub fn list(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListDistributionConfigurationsRequest,
) -> Result<ListDistributionConfigurationsResponse, ApiError> {
    Err(ApiError::not_implemented("ListDistributionConfigurations"))
}

pub fn update(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: UpdateDistributionConfigurationRequest,
) -> Result<UpdateDistributionConfigurationResponse, ApiError> {
    Err(ApiError::not_implemented("UpdateDistributionConfiguration"))
}

pub fn delete(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: DeleteDistributionConfigurationRequest,
) -> Result<DeleteDistributionConfigurationResponse, ApiError> {
    Err(ApiError::not_implemented("DeleteDistributionConfiguration"))
}
