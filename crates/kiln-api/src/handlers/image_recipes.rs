//! (stub: being implemented)
use crate::service::Service;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

pub fn create(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: CreateImageRecipeRequest,
) -> Result<CreateImageRecipeResponse, ApiError> {
    Err(ApiError::not_implemented("CreateImageRecipe"))
}

pub fn get(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: GetImageRecipeRequest,
) -> Result<GetImageRecipeResponse, ApiError> {
    Err(ApiError::not_implemented("GetImageRecipe"))
}

pub fn list(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: ListImageRecipesRequest,
) -> Result<ListImageRecipesResponse, ApiError> {
    Err(ApiError::not_implemented("ListImageRecipes"))
}

pub fn delete(
    _svc: &Service,
    _ctx: &RequestContext,
    _tx: &mut dyn Txn,
    _input: DeleteImageRecipeRequest,
) -> Result<DeleteImageRecipeResponse, ApiError> {
    Err(ApiError::not_implemented("DeleteImageRecipe"))
}
