//! The lifecycle execution APIs (contract §4.4): ListLifecycleExecutions,
//! GetLifecycleExecution, ListLifecycleExecutionResources, CancelLifecycleExecution.
//!
//! The records are written by the engine that runs policies and StartResourceStateUpdate;
//! these operations read them (and ask for a cancel) through `kiln_core::lifecycle_records`.
//! Executions of other accounts and Regions do not exist to the caller. Lists of executions
//! are newest first, their pages continue after the last execution id answered; a list of
//! resources continues after the last position answered.

use super::lifecycle_convert::{execution_resource_to_wire, execution_state, execution_to_wire};
use crate::convert::{scoped_arn, StoreResultExt};
use crate::service::Service;
use kiln_core::lifecycle_records;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::lifecycle::LifecycleExecution as Execution;
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

fn find(tx: &mut dyn Txn, ctx: &RequestContext, id: &str) -> Result<Execution, ApiError> {
    lifecycle_records::get(tx, &ctx.account_id, &ctx.region, id)
        .api()?
        .ok_or_else(|| {
            ApiError::not_found(format!("The lifecycle execution '{id}' does not exist."))
        })
}

pub fn list_executions(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListLifecycleExecutionsRequest,
) -> Result<ListLifecycleExecutionsResponse, ApiError> {
    const OP: &str = "ListLifecycleExecutions";
    let resource_arn = input.resource_arn.unwrap_or_default();
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let (account, region) = (&ctx.account_id, &ctx.region);
    let executions = match scoped_arn(ctx, &resource_arn, "resourceArn")? {
        // Another account's or Region's resource has no executions the caller may see.
        None => Vec::new(),
        Some(arn) if arn.kind == ResourceKind::LifecyclePolicy => {
            lifecycle_records::list_of_policy(tx, account, region, &resource_arn).api()?
        }
        Some(arn) if arn.kind == ResourceKind::Image && arn.build.is_some() => {
            lifecycle_records::list_of_image(tx, account, region, &resource_arn).api()?
        }
        Some(_) => {
            return Err(ApiError::new(
                ErrorKind::InvalidParameterValueException,
                format!(
                    "resourceArn: '{resource_arn}' is neither a lifecycle policy ARN nor an image build version ARN (arn:aws:imagebuilder:<region>:<account>:image/<name>/<x.y.z>/<build>)"
                ),
            ))
        }
    };
    let start = match &after {
        Some(last) => executions
            .iter()
            .position(|e| &e.id == last)
            .map_or(executions.len(), |i| i + 1),
        None => 0,
    };
    let page = svc.pager.page(
        OP,
        ctx,
        executions.into_iter().skip(start),
        input.max_results,
        |e| e.id.clone(),
    );
    Ok(ListLifecycleExecutionsResponse {
        lifecycle_executions: Some(page.items.iter().map(execution_to_wire).collect()),
        next_token: page.next_token,
    })
}

pub fn get_execution(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetLifecycleExecutionRequest,
) -> Result<GetLifecycleExecutionResponse, ApiError> {
    let id = input.lifecycle_execution_id.unwrap_or_default();
    let execution = find(tx, ctx, &id)?;
    Ok(GetLifecycleExecutionResponse {
        lifecycle_execution: Some(execution_to_wire(&execution)),
    })
}

pub fn list_resources(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListLifecycleExecutionResourcesRequest,
) -> Result<ListLifecycleExecutionResourcesResponse, ApiError> {
    const OP: &str = "ListLifecycleExecutionResources";
    let id = input.lifecycle_execution_id.unwrap_or_default();
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let execution = find(tx, ctx, &id)?;
    // The cursor is the position of the last row answered (rows are only ever appended).
    let start = match after {
        Some(last) => last
            .parse::<usize>()
            .map_err(|_| {
                ApiError::new(
                    ErrorKind::InvalidPaginationTokenException,
                    "nextToken: it does not belong to this list".to_string(),
                )
            })?
            .saturating_add(1),
        None => 0,
    };
    let parent = input.parent_resource_id.filter(|p| !p.is_empty());
    let rows = execution
        .resources
        .iter()
        .enumerate()
        .skip(start)
        .filter(|(_, r)| r.parent == parent);
    let page = svc
        .pager
        .page(OP, ctx, rows, input.max_results, |(i, _)| i.to_string());
    Ok(ListLifecycleExecutionResourcesResponse {
        lifecycle_execution_id: Some(execution.id.clone()),
        lifecycle_execution_state: Some(execution_state(&execution)),
        resources: Some(
            page.items
                .iter()
                .map(|(_, r)| execution_resource_to_wire(r))
                .collect(),
        ),
        next_token: page.next_token,
    })
}

pub fn cancel(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CancelLifecycleExecutionRequest,
) -> Result<CancelLifecycleExecutionResponse, ApiError> {
    let id = input.lifecycle_execution_id.unwrap_or_default();
    let mut execution = find(tx, ctx, &id)?;
    if execution.status.is_terminal() {
        return Err(ApiError::invalid_request(format!(
            "lifecycleExecutionId: the lifecycle execution '{id}' has already ended ({:?}); only a PENDING or IN_PROGRESS execution can be cancelled",
            execution.status
        )));
    }
    // An execution already CANCELLING stays so: the cancel was asked for already.
    lifecycle_records::request_cancel(
        tx,
        &mut execution,
        "Cancelled by CancelLifecycleExecution.",
        ctx.now_millis,
    )
    .api()?;
    Ok(CancelLifecycleExecutionResponse {
        lifecycle_execution_id: Some(id),
    })
}

#[cfg(test)]
mod tests;
