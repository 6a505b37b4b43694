//! (stub: being implemented)
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

pub fn create(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: CreateContainerRecipeRequest,
) -> Result<CreateContainerRecipeResponse, ApiError> {
    Err(ApiError::not_implemented("CreateContainerRecipe"))
}

pub fn get(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: GetContainerRecipeRequest,
) -> Result<GetContainerRecipeResponse, ApiError> {
    Err(ApiError::not_implemented("GetContainerRecipe"))
}

pub fn list(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListContainerRecipesRequest,
) -> Result<ListContainerRecipesResponse, ApiError> {
    Err(ApiError::not_implemented("ListContainerRecipes"))
}

pub fn delete(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: DeleteContainerRecipeRequest,
) -> Result<DeleteContainerRecipeResponse, ApiError> {
    Err(ApiError::not_implemented("DeleteContainerRecipe"))
}
