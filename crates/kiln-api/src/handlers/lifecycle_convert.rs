//! Wire ↔ domain conversions of lifecycle policies and executions.
//!
//! Requests become [`kiln_domain::resources::lifecycle`] values, then the pure rules of
//! `lifecycle::validate` check them; responses are built from the stored records. Timestamps
//! are the model's `timestamp` members: epoch seconds, as JSON numbers.

use kiln_domain::resources::lifecycle::validate::{self, PolicyError};
use kiln_domain::resources::lifecycle::{
    self as domain, ActionType, AmiExclusions, ExclusionRules, ExecutionResource, ExecutionStatus,
    Filter, FilterType, IncludeResources, LastLaunched, PolicyResourceType, PolicyRule,
    PolicyStatus, RecipeSelection, ResourceAction, ResourceSelection, ResourceStatus, TimeUnit,
};
use kiln_domain::resources::Millis;
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind};

/// Epoch seconds, as the model's `timestamp` members are written in JSON.
pub fn seconds(millis: Millis) -> f64 {
    millis as f64 / 1000.0
}

pub fn policy_error(e: PolicyError) -> ApiError {
    let kind = match e {
        PolicyError::Combination { .. } => ErrorKind::InvalidParameterCombinationException,
        PolicyError::Value { .. } => ErrorKind::InvalidParameterValueException,
    };
    ApiError::new(kind, e.to_string())
}

pub fn missing(path: String) -> ApiError {
    ApiError::invalid_request(format!("{path}: this member is required"))
}

fn count(path: String, value: Option<i32>) -> Result<u32, ApiError> {
    let value = value.ok_or_else(|| missing(path.clone()))?;
    u32::try_from(value).map_err(|_| {
        ApiError::new(
            ErrorKind::InvalidParameterValueException,
            format!("{path}: {value} is not a positive number"),
        )
    })
}

pub fn resource_type_from_wire(t: LifecyclePolicyResourceType) -> PolicyResourceType {
    match t {
        LifecyclePolicyResourceType::AmiImage => PolicyResourceType::AmiImage,
        LifecyclePolicyResourceType::ContainerImage => PolicyResourceType::ContainerImage,
    }
}

pub fn resource_type_to_wire(t: PolicyResourceType) -> LifecyclePolicyResourceType {
    match t {
        PolicyResourceType::AmiImage => LifecyclePolicyResourceType::AmiImage,
        PolicyResourceType::ContainerImage => LifecyclePolicyResourceType::ContainerImage,
    }
}

pub fn status_from_wire(s: Option<LifecyclePolicyStatus>) -> PolicyStatus {
    // Documented default, for Create and Update alike: an omitted status is ENABLED.
    match s {
        Some(LifecyclePolicyStatus::Disabled) => PolicyStatus::Disabled,
        Some(LifecyclePolicyStatus::Enabled) | None => PolicyStatus::Enabled,
    }
}

pub fn status_to_wire(s: PolicyStatus) -> LifecyclePolicyStatus {
    match s {
        PolicyStatus::Enabled => LifecyclePolicyStatus::Enabled,
        PolicyStatus::Disabled => LifecyclePolicyStatus::Disabled,
    }
}

pub fn unit_from_wire(u: LifecyclePolicyTimeUnit) -> TimeUnit {
    match u {
        LifecyclePolicyTimeUnit::Days => TimeUnit::Days,
        LifecyclePolicyTimeUnit::Weeks => TimeUnit::Weeks,
        LifecyclePolicyTimeUnit::Months => TimeUnit::Months,
        LifecyclePolicyTimeUnit::Years => TimeUnit::Years,
    }
}

fn unit_to_wire(u: TimeUnit) -> LifecyclePolicyTimeUnit {
    match u {
        TimeUnit::Days => LifecyclePolicyTimeUnit::Days,
        TimeUnit::Weeks => LifecyclePolicyTimeUnit::Weeks,
        TimeUnit::Months => LifecyclePolicyTimeUnit::Months,
        TimeUnit::Years => LifecyclePolicyTimeUnit::Years,
    }
}

fn rule_from_wire(i: usize, d: LifecyclePolicyDetail) -> Result<PolicyRule, ApiError> {
    let at = |member: &str| format!("policyDetails[{i}].{member}");
    let action = d.action.ok_or_else(|| missing(at("action")))?;
    let filter = d.filter.ok_or_else(|| missing(at("filter")))?;
    let include = action.include_resources.unwrap_or_default();
    Ok(PolicyRule {
        action: match action.r#type.ok_or_else(|| missing(at("action.type")))? {
            LifecyclePolicyDetailActionType::Deprecate => ActionType::Deprecate,
            LifecyclePolicyDetailActionType::Disable => ActionType::Disable,
            LifecyclePolicyDetailActionType::Delete => ActionType::Delete,
        },
        include: IncludeResources {
            amis: include.amis.unwrap_or(false),
            snapshots: include.snapshots.unwrap_or(false),
            containers: include.containers.unwrap_or(false),
        },
        filter: Filter {
            kind: match filter.r#type.ok_or_else(|| missing(at("filter.type")))? {
                LifecyclePolicyDetailFilterType::Age => FilterType::Age,
                LifecyclePolicyDetailFilterType::Count => FilterType::Count,
            },
            value: count(at("filter.value"), filter.value)?,
            unit: filter.unit.map(unit_from_wire),
            retain_at_least: filter
                .retain_at_least
                .map(|n| count(at("filter.retainAtLeast"), Some(n)))
                .transpose()?,
        },
        exclusions: d
            .exclusion_rules
            .map(|e| -> Result<ExclusionRules, ApiError> {
                Ok(ExclusionRules {
                    tag_map: e.tag_map.unwrap_or_default(),
                    amis: e
                        .amis
                        .map(|a| -> Result<AmiExclusions, ApiError> {
                            Ok(AmiExclusions {
                                is_public: a.is_public.unwrap_or(false),
                                regions: a.regions.unwrap_or_default(),
                                shared_accounts: a.shared_accounts.unwrap_or_default(),
                                last_launched: a
                                    .last_launched
                                    .map(|l| -> Result<LastLaunched, ApiError> {
                                        let path = at("exclusionRules.amis.lastLaunched");
                                        Ok(LastLaunched {
                                            value: count(format!("{path}.value"), l.value)?,
                                            unit: unit_from_wire(
                                                l.unit.ok_or_else(|| {
                                                    missing(format!("{path}.unit"))
                                                })?,
                                            ),
                                        })
                                    })
                                    .transpose()?,
                                tag_map: a.tag_map.unwrap_or_default(),
                            })
                        })
                        .transpose()?,
                })
            })
            .transpose()?,
    })
}

/// `policyDetails`, converted and checked against each other and the resource type.
pub fn rules_from_wire(
    resource_type: PolicyResourceType,
    details: Option<Vec<LifecyclePolicyDetail>>,
) -> Result<Vec<PolicyRule>, ApiError> {
    let details = details.ok_or_else(|| missing("policyDetails".to_string()))?;
    let rules = details
        .into_iter()
        .enumerate()
        .map(|(i, d)| rule_from_wire(i, d))
        .collect::<Result<Vec<_>, _>>()?;
    validate::check_rules(resource_type, &rules).map_err(policy_error)?;
    Ok(rules)
}

pub fn selection_from_wire(
    s: Option<LifecyclePolicyResourceSelection>,
) -> Result<ResourceSelection, ApiError> {
    let s = s.ok_or_else(|| missing("resourceSelection".to_string()))?;
    let recipes = s
        .recipes
        .map(|recipes| {
            recipes
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    let at = |m: &str| format!("resourceSelection.recipes[{i}].{m}");
                    Ok(RecipeSelection {
                        name: r.name.ok_or_else(|| missing(at("name")))?,
                        semantic_version: r
                            .semantic_version
                            .ok_or_else(|| missing(at("semanticVersion")))?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .transpose()?;
    validate::selection(recipes, s.tag_map).map_err(policy_error)
}

fn rule_to_wire(r: &PolicyRule) -> LifecyclePolicyDetail {
    LifecyclePolicyDetail {
        action: Some(LifecyclePolicyDetailAction {
            r#type: Some(match r.action {
                ActionType::Deprecate => LifecyclePolicyDetailActionType::Deprecate,
                ActionType::Disable => LifecyclePolicyDetailActionType::Disable,
                ActionType::Delete => LifecyclePolicyDetailActionType::Delete,
            }),
            // AWS answers the resources a rule includes, and nothing for those it does not
            // (get-lifecycle-policy.rst shows `{"amis": true, "snapshots": true}`).
            include_resources: (r.include != IncludeResources::default()).then(|| {
                LifecyclePolicyDetailActionIncludeResources {
                    amis: r.include.amis.then_some(true),
                    snapshots: r.include.snapshots.then_some(true),
                    containers: r.include.containers.then_some(true),
                }
            }),
        }),
        filter: Some(LifecyclePolicyDetailFilter {
            r#type: Some(match r.filter.kind {
                FilterType::Age => LifecyclePolicyDetailFilterType::Age,
                FilterType::Count => LifecyclePolicyDetailFilterType::Count,
            }),
            value: Some(r.filter.value as i32),
            unit: r.filter.unit.map(unit_to_wire),
            retain_at_least: r.filter.retain_at_least.map(|n| n as i32),
        }),
        exclusion_rules: r
            .exclusions
            .as_ref()
            .map(|e| LifecyclePolicyDetailExclusionRules {
                tag_map: (!e.tag_map.is_empty()).then(|| e.tag_map.clone()),
                amis: e
                    .amis
                    .as_ref()
                    .map(|a| LifecyclePolicyDetailExclusionRulesAmis {
                        is_public: a.is_public.then_some(true),
                        regions: (!a.regions.is_empty()).then(|| a.regions.clone()),
                        shared_accounts: (!a.shared_accounts.is_empty())
                            .then(|| a.shared_accounts.clone()),
                        last_launched: a.last_launched.as_ref().map(|l| {
                            LifecyclePolicyDetailExclusionRulesAmisLastLaunched {
                                value: Some(l.value as i32),
                                unit: Some(unit_to_wire(l.unit)),
                            }
                        }),
                        tag_map: (!a.tag_map.is_empty()).then(|| a.tag_map.clone()),
                    }),
            }),
    }
}

pub fn rules_to_wire(rules: &[PolicyRule]) -> Vec<LifecyclePolicyDetail> {
    rules.iter().map(rule_to_wire).collect()
}

pub fn selection_to_wire(s: &ResourceSelection) -> LifecyclePolicyResourceSelection {
    match s {
        ResourceSelection::Recipes(recipes) => LifecyclePolicyResourceSelection {
            recipes: Some(
                recipes
                    .iter()
                    .map(|r| LifecyclePolicyResourceSelectionRecipe {
                        name: Some(r.name.clone()),
                        semantic_version: Some(r.semantic_version.clone()),
                    })
                    .collect(),
            ),
            tag_map: None,
        },
        ResourceSelection::TagMap(tags) => LifecyclePolicyResourceSelection {
            recipes: None,
            tag_map: Some(tags.clone()),
        },
    }
}

pub fn execution_status_to_wire(s: ExecutionStatus) -> LifecycleExecutionStatus {
    match s {
        ExecutionStatus::Pending => LifecycleExecutionStatus::Pending,
        ExecutionStatus::InProgress => LifecycleExecutionStatus::InProgress,
        ExecutionStatus::Cancelling => LifecycleExecutionStatus::Cancelling,
        ExecutionStatus::Cancelled => LifecycleExecutionStatus::Cancelled,
        ExecutionStatus::Success => LifecycleExecutionStatus::Success,
        ExecutionStatus::Failed => LifecycleExecutionStatus::Failed,
    }
}

pub fn execution_state(e: &domain::LifecycleExecution) -> LifecycleExecutionState {
    LifecycleExecutionState {
        status: Some(execution_status_to_wire(e.status)),
        reason: e.reason.clone(),
    }
}

pub fn execution_to_wire(e: &domain::LifecycleExecution) -> LifecycleExecution {
    LifecycleExecution {
        lifecycle_execution_id: Some(e.id.clone()),
        lifecycle_policy_arn: e.policy_arn.clone(),
        resources_impacted_summary: Some(LifecycleExecutionResourcesImpactedSummary {
            has_impacted_resources: Some(e.has_impacted_resources()),
        }),
        state: Some(execution_state(e)),
        start_time: Some(seconds(e.start_time)),
        end_time: e.end_time.map(seconds),
    }
}

fn resource_state(
    status: ResourceStatus,
    reason: &Option<String>,
) -> LifecycleExecutionResourceState {
    LifecycleExecutionResourceState {
        status: Some(match status {
            ResourceStatus::InProgress => LifecycleExecutionResourceStatus::InProgress,
            ResourceStatus::Skipped => LifecycleExecutionResourceStatus::Skipped,
            ResourceStatus::Success => LifecycleExecutionResourceStatus::Success,
            ResourceStatus::Failed => LifecycleExecutionResourceStatus::Failed,
        }),
        reason: reason.clone(),
    }
}

pub fn execution_resource_to_wire(r: &ExecutionResource) -> LifecycleExecutionResource {
    LifecycleExecutionResource {
        account_id: Some(r.account_id.clone()),
        resource_id: Some(r.resource_id.clone()),
        region: Some(r.region.clone()),
        state: Some(resource_state(r.status, &r.reason)),
        action: Some(LifecycleExecutionResourceAction {
            name: Some(match r.action {
                ResourceAction::Available => LifecycleExecutionResourceActionName::Available,
                ResourceAction::Delete => LifecycleExecutionResourceActionName::Delete,
                ResourceAction::Deprecate => LifecycleExecutionResourceActionName::Deprecate,
                ResourceAction::Disable => LifecycleExecutionResourceActionName::Disable,
            }),
            reason: r.action_reason.clone(),
        }),
        snapshots: (!r.snapshots.is_empty()).then(|| {
            r.snapshots
                .iter()
                .map(|s| LifecycleExecutionSnapshotResource {
                    snapshot_id: Some(s.snapshot_id.clone()),
                    state: Some(resource_state(s.status, &s.reason)),
                })
                .collect()
        }),
        image_uris: (!r.image_uris.is_empty()).then(|| r.image_uris.clone()),
        start_time: r.start_time.map(seconds),
        end_time: r.end_time.map(seconds),
    }
}
