//! StartResourceStateUpdate (contract §4.5): an image's state changed by hand.
//!
//! The request is checked here, rule by rule (each refusal names the member at fault). A
//! change with no underlying resources and no `updateAt` is applied at once in this
//! transaction (no `lifecycleExecutionId`); otherwise a lifecycle execution is started
//! (`kiln_core::lifecycle::start::start_state_update`) that the worker's lifecycle thread
//! runs, and whose rows ListLifecycleExecutionResources answers. Deprecated or disabled images
//! become AVAILABLE again only here.

use super::images::get_visible;
use super::lifecycle_convert::{missing, unit_from_wire};
use crate::convert::StoreResultExt;
use crate::service::Service;
use kiln_core::lifecycle::start::{image_busy, start_state_update, StateUpdate};
use kiln_domain::resources::image::{ImageStatus as Status, ImageType};
use kiln_domain::resources::lifecycle::{
    AmiExclusions, IncludeResources, LastLaunched, ResourceAction,
};
use kiln_store::{Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

fn combination(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidParameterCombinationException, message)
}

fn exclusions_from_wire(
    a: LifecyclePolicyDetailExclusionRulesAmis,
) -> Result<AmiExclusions, ApiError> {
    let last_launched = match a.last_launched {
        None => None,
        Some(l) => {
            let path = "exclusionRules.amis.lastLaunched";
            let value = l.value.ok_or_else(|| missing(format!("{path}.value")))?;
            let unit = l.unit.ok_or_else(|| missing(format!("{path}.unit")))?;
            Some(LastLaunched {
                value: u32::try_from(value).map_err(|_| {
                    ApiError::new(
                        ErrorKind::InvalidParameterValueException,
                        format!("{path}.value: must be between 1 and 365"),
                    )
                })?,
                unit: unit_from_wire(unit),
            })
        }
    };
    Ok(AmiExclusions {
        is_public: a.is_public.unwrap_or(false),
        regions: a.regions.unwrap_or_default(),
        shared_accounts: a.shared_accounts.unwrap_or_default(),
        last_launched,
        tag_map: a.tag_map.unwrap_or_default(),
    })
}

/// Whether the manual transition `from` → `to` is allowed (§4.3's table).
fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    match to {
        Deprecated => from == Available,
        Disabled => matches!(from, Available | Deprecated),
        Available => matches!(from, Deprecated | Disabled),
        Deleted => matches!(from, Available | Deprecated | Disabled | Failed | Cancelled),
        _ => false,
    }
}

pub fn start(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: StartResourceStateUpdateRequest,
) -> Result<StartResourceStateUpdateResponse, ApiError> {
    let arn = input.resource_arn.unwrap_or_default();
    let target = input
        .state
        .and_then(|s| s.status)
        .ok_or_else(|| missing("state.status".to_string()))?;
    let (action, to) = match target {
        ResourceStatus::Available => (ResourceAction::Available, Status::Available),
        ResourceStatus::Deprecated => (ResourceAction::Deprecate, Status::Deprecated),
        ResourceStatus::Disabled => (ResourceAction::Disable, Status::Disabled),
        ResourceStatus::Deleted => (ResourceAction::Delete, Status::Deleted),
    };
    let mut image = get_visible(tx, ctx, &arn)?;
    if image.arn.build.is_none() {
        return Err(ApiError::new(
            ErrorKind::InvalidParameterValueException,
            format!("resourceArn: '{arn}' is not an image build version ARN"),
        ));
    }
    if input.execution_role.is_some() != input.include_resources.is_some() {
        return Err(combination(
            "executionRole and includeResources must be given together: neither is valid without the other",
        ));
    }
    let include = input.include_resources.map(|i| IncludeResources {
        amis: i.amis.unwrap_or(false),
        snapshots: i.snapshots.unwrap_or(false),
        containers: i.containers.unwrap_or(false),
    });
    let inc = include.unwrap_or_default();
    if to != Status::Deleted && (inc.snapshots || inc.containers) {
        return Err(combination(
            "includeResources: snapshots and containers can only be included when the state is DELETED",
        ));
    }
    if inc.snapshots && !inc.amis {
        return Err(combination(
            "includeResources.snapshots: snapshots can only be included together with amis",
        ));
    }
    if to == Status::Deleted && include.is_none() {
        return Err(combination(
            "includeResources: to set an image to DELETED you must include its underlying resources (executionRole and includeResources); to delete only the Image Builder image record, use DeleteImage",
        ));
    }
    match image.image_type {
        ImageType::Docker if to != Status::Deleted => {
            return Err(combination(format!(
                "state.status: a container image can only be set to DELETED, not {}",
                to.as_str()
            )))
        }
        ImageType::Docker if inc.amis => {
            return Err(combination(
                "includeResources.amis: a container image has no AMIs (include containers)",
            ))
        }
        ImageType::Ami if inc.containers => {
            return Err(combination(
                "includeResources.containers: an AMI image has no container images (include amis)",
            ))
        }
        _ => {}
    }
    let exclusions =
        match input.exclusion_rules.and_then(|e| e.amis) {
            None => None,
            Some(_) if !inc.amis => return Err(combination(
                "exclusionRules.amis: AMI exclusions apply only when includeResources.amis is true",
            )),
            Some(a) => Some(exclusions_from_wire(a)?),
        };
    let update_at = match input.update_at {
        None => None,
        Some(_) if to != Status::Deprecated => {
            return Err(combination(
                "updateAt: a scheduled update is only valid for the DEPRECATED state",
            ))
        }
        Some(seconds) => {
            let at = (seconds * 1000.0).round() as i64;
            if at <= ctx.now_millis {
                return Err(ApiError::new(
                    ErrorKind::InvalidParameterValueException,
                    "updateAt: the time must be in the future",
                ));
            }
            Some(at)
        }
    };
    if image.status.in_progress() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUseException,
            format!(
                "resourceArn: the image '{arn}' is {}: its build is in progress",
                image.status.as_str()
            ),
        ));
    }
    if matches!(image.status, Status::Failed | Status::Cancelled) && to != Status::Deleted {
        return Err(ApiError::invalid_request(format!(
            "state.status: a {} image can only be set to DELETED",
            image.status.as_str()
        )));
    }
    if !allowed(image.status, to) && image.status != to {
        return Err(ApiError::invalid_request(format!(
            "state.status: the image '{arn}' is {} and cannot be set to {}",
            image.status.as_str(),
            to.as_str()
        )));
    }
    if let Some(id) = image_busy(tx, &image).api()? {
        return Err(ApiError::new(
            ErrorKind::ResourceInUseException,
            format!("resourceArn: the image '{arn}' has a lifecycle execution in progress ({id})"),
        ));
    }
    let with_resources = inc.amis || inc.snapshots || inc.containers;
    if !with_resources && update_at.is_none() && to != Status::Deleted {
        // Applied at once: no execution.
        if image.status != to {
            image
                .advance(to, None, ctx.now_millis)
                .map_err(|e| ApiError::service(e.to_string()))?;
            match to {
                Status::Deprecated => image.deprecation_time = Some(ctx.now_millis),
                Status::Available => image.deprecation_time = None,
                _ => {}
            }
            tx.put(&image).api()?;
        }
        return Ok(StartResourceStateUpdateResponse {
            lifecycle_execution_id: None,
            resource_arn: Some(arn),
        });
    }
    let update = StateUpdate {
        target: action,
        include: inc,
        exclusions,
        update_at,
    };
    let id = start_state_update(tx, &image, &update, ctx.now_millis).api()?;
    Ok(StartResourceStateUpdateResponse {
        lifecycle_execution_id: Some(id),
        resource_arn: Some(arn),
    })
}
