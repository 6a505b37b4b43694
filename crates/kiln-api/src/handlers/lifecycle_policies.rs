//! Lifecycle policies: Create, Get, List, Update, Delete (contract §4.1, §4.2).
//!
//! A policy is stored at its ARN (`lifecycle-policy/<normalised name>`); its rules are checked
//! by the pure `lifecycle::validate` (through `lifecycle_convert`) before anything is written.
//! The schedule is the record's `next_run`: an ENABLED policy runs a day after it was enabled,
//! then daily (the engine in `kiln_core` advances it); a DISABLED one has none. Disabling or
//! deleting a policy asks its running executions to stop (CANCELLING), as AWS "cancels any
//! in-flight lifecycle execution"; actions already applied stay.

use super::lifecycle_convert::{
    missing, resource_type_from_wire, resource_type_to_wire, rules_from_wire, rules_to_wire,
    seconds, selection_from_wire, selection_to_wire, status_from_wire, status_to_wire,
};
use crate::convert::{
    check_dry_run, check_name_free, get_exact, list_own, new_arn, response_tags, StoreResultExt,
};
use crate::filters::Filters;
use crate::service::Service;
use kiln_core::lifecycle_records;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::lifecycle::{
    LifecyclePolicy as Policy, PolicyResourceType, PolicyStatus,
};
use kiln_store::{Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

const KIND: ResourceKind = ResourceKind::LifecyclePolicy;

fn resource_type_name(t: PolicyResourceType) -> &'static str {
    match t {
        PolicyResourceType::AmiImage => "AMI_IMAGE",
        PolicyResourceType::ContainerImage => "CONTAINER_IMAGE",
    }
}

fn status_name(s: PolicyStatus) -> &'static str {
    match s {
        PolicyStatus::Enabled => "ENABLED",
        PolicyStatus::Disabled => "DISABLED",
    }
}

/// Sets a policy's status and schedule: a policy that becomes ENABLED runs a day later, one
/// that stays ENABLED keeps its next run, a DISABLED one has none.
fn set_status(policy: &mut Policy, status: PolicyStatus, now: i64) {
    policy.next_run = match status {
        PolicyStatus::Disabled => None,
        PolicyStatus::Enabled => match (policy.status, policy.next_run) {
            (PolicyStatus::Enabled, Some(next)) => Some(next),
            _ => Some(Policy::first_run(now)),
        },
    };
    policy.status = status;
}

/// Asks every running execution of the policy to stop.
fn cancel_executions(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    policy_arn: &str,
    reason: &str,
) -> Result<(), ApiError> {
    let running = lifecycle_records::unfinished(tx).api()?;
    for mut execution in running
        .into_iter()
        .filter(|e| e.policy_arn.as_deref() == Some(policy_arn))
    {
        lifecycle_records::request_cancel(tx, &mut execution, reason, ctx.now_millis).api()?;
    }
    Ok(())
}

fn to_wire(tx: &mut dyn Txn, p: &Policy) -> Result<LifecyclePolicy, ApiError> {
    let arn = p.arn.to_string();
    Ok(LifecyclePolicy {
        arn: Some(arn.clone()),
        name: Some(p.name.clone()),
        description: p.description.clone(),
        status: Some(status_to_wire(p.status)),
        execution_role: Some(p.execution_role.clone()),
        resource_type: Some(resource_type_to_wire(p.resource_type)),
        policy_details: Some(rules_to_wire(&p.rules)),
        resource_selection: Some(selection_to_wire(&p.selection)),
        date_created: Some(seconds(p.date_created)),
        date_updated: p.date_updated.map(seconds),
        date_last_run: p.date_last_run.map(seconds),
        tags: response_tags(tx, &arn)?,
    })
}

pub fn create(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateLifecyclePolicyRequest,
) -> Result<CreateLifecyclePolicyResponse, ApiError> {
    let name = input.name.clone().unwrap_or_default();
    check_name_free(tx, ctx, KIND, &name)?;
    let resource_type = resource_type_from_wire(
        input
            .resource_type
            .ok_or_else(|| missing("resourceType".to_string()))?,
    );
    let rules = rules_from_wire(resource_type, input.policy_details)?;
    let selection = selection_from_wire(input.resource_selection)?;
    check_dry_run(input.dry_run, "CreateLifecyclePolicy")?;
    let arn = new_arn(ctx, KIND, &name);
    let mut policy = Policy {
        arn: arn.clone(),
        name,
        description: input.description,
        status: PolicyStatus::Disabled,
        execution_role: input.execution_role.unwrap_or_default(),
        resource_type,
        rules,
        selection,
        date_created: ctx.now_millis,
        date_updated: None,
        date_last_run: None,
        next_run: None,
    };
    set_status(&mut policy, status_from_wire(input.status), ctx.now_millis);
    tx.put_tagged(&policy, input.tags.as_ref()).api()?;
    Ok(CreateLifecyclePolicyResponse {
        client_token: input.client_token,
        lifecycle_policy_arn: Some(arn.to_string()),
    })
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetLifecyclePolicyRequest,
) -> Result<GetLifecyclePolicyResponse, ApiError> {
    let arn = input.lifecycle_policy_arn.unwrap_or_default();
    let policy: Policy = get_exact(tx, ctx, KIND, &arn, "lifecyclePolicyArn")?;
    Ok(GetLifecyclePolicyResponse {
        lifecycle_policy: Some(to_wire(tx, &policy)?),
    })
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListLifecyclePoliciesRequest,
) -> Result<ListLifecyclePoliciesResponse, ApiError> {
    const OP: &str = "ListLifecyclePolicies";
    let filters = Filters::parse(input.filters.as_ref(), &["name", "resourceType", "status"])?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let all: Vec<Policy> = list_own(tx, ctx, KIND, None, after)?;
    let matching = all.into_iter().filter(|p| {
        filters.accept(|filter| match filter {
            "name" => Some(p.name.clone()),
            "resourceType" => Some(resource_type_name(p.resource_type).to_string()),
            "status" => Some(status_name(p.status).to_string()),
            _ => None,
        })
    });
    let page = svc
        .pager
        .page(OP, ctx, matching, input.max_results, |p| p.arn.to_string());
    let mut summaries = Vec::with_capacity(page.items.len());
    for p in &page.items {
        let arn = p.arn.to_string();
        summaries.push(LifecyclePolicySummary {
            arn: Some(arn.clone()),
            name: Some(p.name.clone()),
            description: p.description.clone(),
            status: Some(status_to_wire(p.status)),
            execution_role: Some(p.execution_role.clone()),
            resource_type: Some(resource_type_to_wire(p.resource_type)),
            date_created: Some(seconds(p.date_created)),
            date_updated: p.date_updated.map(seconds),
            date_last_run: p.date_last_run.map(seconds),
            tags: response_tags(tx, &arn)?,
        });
    }
    Ok(ListLifecyclePoliciesResponse {
        lifecycle_policy_summary_list: Some(summaries),
        next_token: page.next_token,
    })
}

pub fn update(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: UpdateLifecyclePolicyRequest,
) -> Result<UpdateLifecyclePolicyResponse, ApiError> {
    let arn = input.lifecycle_policy_arn.unwrap_or_default();
    let mut policy: Policy = get_exact(tx, ctx, KIND, &arn, "lifecyclePolicyArn")?;
    if let Some(given) = input.resource_type.map(resource_type_from_wire) {
        if given != policy.resource_type {
            return Err(ApiError::invalid_request(format!(
                "resourceType: the policy governs {}; a policy's resource type cannot change (create another policy for {})",
                resource_type_name(policy.resource_type),
                resource_type_name(given)
            )));
        }
    }
    let rules = rules_from_wire(policy.resource_type, input.policy_details)?;
    let selection = selection_from_wire(input.resource_selection)?;
    // A full replace: what the request leaves out goes back to its default.
    policy.rules = rules;
    policy.selection = selection;
    policy.description = input.description;
    if let Some(role) = input.execution_role {
        policy.execution_role = role;
    }
    let status = status_from_wire(input.status);
    set_status(&mut policy, status, ctx.now_millis);
    policy.date_updated = Some(ctx.now_millis);
    tx.put(&policy).api()?;
    if status == PolicyStatus::Disabled {
        cancel_executions(tx, ctx, &arn, "The lifecycle policy was disabled.")?;
    }
    Ok(UpdateLifecyclePolicyResponse {
        lifecycle_policy_arn: Some(arn),
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteLifecyclePolicyRequest,
) -> Result<DeleteLifecyclePolicyResponse, ApiError> {
    let arn = input.lifecycle_policy_arn.unwrap_or_default();
    let _: Policy = get_exact(tx, ctx, KIND, &arn, "lifecyclePolicyArn")?;
    tx.delete_row(&arn).api()?;
    cancel_executions(tx, ctx, &arn, "The lifecycle policy was deleted.")?;
    Ok(DeleteLifecyclePolicyResponse {
        lifecycle_policy_arn: Some(arn),
    })
}
