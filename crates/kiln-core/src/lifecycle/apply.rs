//! Applying one planned image of an execution, in the caller's write transaction.
//!
//! Order: the image's AMIs (or container images), then the image record; the rows come out in
//! the same order (the image's row first, then one per AMI or container with `parent` = the
//! image's ARN). A resource already gone, or already in the target state, is a SUCCESS; an
//! excluded one is SKIPPED; an error is FAILED. A DELETE that left anything behind (an AMI
//! excluded, a resource that failed) keeps the Image Builder image record, as §4.5 says of
//! StartResourceStateUpdate (Kiln does the same for policies).

use crate::amis;
use crate::error::CoreResult;
use kiln_domain::resources::ami::Ami;
use kiln_domain::resources::image::{ContainerOutput, Image, ImageStatus};
use kiln_domain::resources::lifecycle::{
    ExecutionResource, LifecycleExecution, PlannedAmi, PlannedImage, ResourceAction,
    ResourceStatus, SnapshotResource,
};
use kiln_domain::resources::Millis;
use kiln_store::{Txn, TxnExt};

/// The tag a DEPRECATE action puts on AMIs (and DISABLE or AVAILABLE takes off).
pub const DEPRECATED_BY_KEY: &str = "DeprecatedBy";
pub const DEPRECATED_BY_VALUE: &str = "EC2 Image Builder";

/// What deleting one Region's container image from its registry gave (done by the caller
/// before the transaction: kiln-core does no network IO).
#[derive(Debug, Clone)]
pub struct ContainerDeletion {
    pub region: String,
    pub image_uris: Vec<String>,
    pub outcome: Result<(), String>,
}

/// The container images a planned DELETE removes from their registries.
pub fn containers_to_delete(
    tx: &mut dyn Txn,
    planned: &PlannedImage,
) -> CoreResult<Vec<ContainerOutput>> {
    if planned.action != ResourceAction::Delete
        || !planned.include.containers
        || planned.skipped.is_some()
    {
        return Ok(Vec::new());
    }
    Ok(tx
        .get::<Image>(&planned.image_arn)?
        .map(|i| i.containers)
        .unwrap_or_default())
}

fn find_ami(tx: &mut dyn Txn, a: &PlannedAmi) -> CoreResult<Option<Ami>> {
    Ok(amis::find(tx, &a.region, &a.image_id)?.filter(|x| x.owner() == a.account_id))
}

/// Gives the planned image's included AMIs the deprecation time `at` and the DeprecatedBy tag
/// (StartResourceStateUpdate with `updateAt` does it at once).
pub fn deprecate_amis_at(tx: &mut dyn Txn, planned: &PlannedImage, at: Millis) -> CoreResult<()> {
    for a in planned.amis.iter().filter(|a| a.skipped.is_none()) {
        if let Some(mut ami) = find_ami(tx, a)? {
            ami.deprecation_time = Some(at);
            ami.tags
                .insert(DEPRECATED_BY_KEY.into(), DEPRECATED_BY_VALUE.into());
            amis::put(tx, &ami)?;
        }
    }
    Ok(())
}

fn row(
    planned: &PlannedImage,
    parent: Option<&str>,
    resource_id: &str,
    region: &str,
    account: &str,
    now: Millis,
) -> ExecutionResource {
    ExecutionResource {
        parent: parent.map(str::to_string),
        account_id: account.to_string(),
        resource_id: resource_id.to_string(),
        region: region.to_string(),
        status: ResourceStatus::Success,
        reason: None,
        action: planned.action,
        action_reason: Some(planned.reason.clone()),
        snapshots: Vec::new(),
        image_uris: Vec::new(),
        start_time: Some(now),
        end_time: Some(now),
    }
}

/// Applies the action to one AMI; `Ok(None)` is a success, `Ok(Some(reason))` a success with
/// a reason (already done), `Err(reason)` a failure.
fn act_on_ami(
    tx: &mut dyn Txn,
    action: ResourceAction,
    a: &PlannedAmi,
    now: Millis,
) -> CoreResult<Option<String>> {
    let Some(mut ami) = find_ami(tx, a)? else {
        return Ok(Some("the AMI no longer exists".to_string()));
    };
    match action {
        ResourceAction::Deprecate => {
            // A deprecation already set at or before now (updateAt) stands.
            if ami.deprecation_time.is_none_or(|t| t > now) {
                ami.deprecation_time = Some(now);
            }
            ami.tags
                .insert(DEPRECATED_BY_KEY.into(), DEPRECATED_BY_VALUE.into());
            amis::put(tx, &ami)?;
        }
        ResourceAction::Disable => {
            if ami.disabled {
                return Ok(Some("the AMI is already disabled".to_string()));
            }
            // Disabled AMIs are private: every launch permission goes.
            ami.disabled = true;
            ami.launch_permission = Default::default();
            ami.tags.remove(DEPRECATED_BY_KEY);
            amis::put(tx, &ami)?;
        }
        ResourceAction::Available => {
            ami.disabled = false;
            ami.deprecation_time = None;
            ami.tags.remove(DEPRECATED_BY_KEY);
            amis::put(tx, &ami)?;
        }
        ResourceAction::Delete => amis::remove(tx, &ami)?,
    }
    Ok(None)
}

fn target_status(action: ResourceAction) -> ImageStatus {
    match action {
        ResourceAction::Available => ImageStatus::Available,
        ResourceAction::Deprecate => ImageStatus::Deprecated,
        ResourceAction::Disable => ImageStatus::Disabled,
        ResourceAction::Delete => ImageStatus::Deleted,
    }
}

/// Applies `planned` and answers its rows (the image's first).
pub fn apply(
    tx: &mut dyn Txn,
    execution: &LifecycleExecution,
    planned: &PlannedImage,
    containers: &[ContainerDeletion],
    now: Millis,
) -> CoreResult<Vec<ExecutionResource>> {
    let account = execution.arn.account.clone();
    let region = execution.arn.region.clone();
    let mut image_row = row(planned, None, &planned.image_arn, &region, &account, now);
    if let Some(why) = &planned.skipped {
        image_row.status = ResourceStatus::Skipped;
        image_row.reason = Some(why.clone());
        return Ok(vec![image_row]);
    }
    let image = tx.get::<Image>(&planned.image_arn)?;
    let Some(mut image) = image.filter(|i| i.status != ImageStatus::Deleted) else {
        image_row.reason = Some("the image no longer exists".to_string());
        return Ok(vec![image_row]);
    };
    if image.status.in_progress() {
        image_row.status = ResourceStatus::Failed;
        image_row.reason = Some(format!(
            "the image is {}: its build is in progress",
            image.status.as_str()
        ));
        return Ok(vec![image_row]);
    }
    let mut children = Vec::new();
    let mut left_behind = 0;
    let mut failed = 0;
    for a in &planned.amis {
        let mut r = row(
            planned,
            Some(&planned.image_arn),
            &a.image_id,
            &a.region,
            &a.account_id,
            now,
        );
        let snapshot_of = |status: ResourceStatus| SnapshotResource {
            snapshot_id: amis::snapshot_id(&a.image_id),
            status,
            reason: None,
        };
        if let Some(why) = &a.skipped {
            r.status = ResourceStatus::Skipped;
            r.reason = Some(why.clone());
            left_behind += 1;
            if planned.include.snapshots {
                r.snapshots.push(snapshot_of(ResourceStatus::Skipped));
            }
        } else {
            match act_on_ami(tx, planned.action, a, now) {
                Ok(reason) => r.reason = reason,
                Err(e) => {
                    r.status = ResourceStatus::Failed;
                    r.reason = Some(e.to_string());
                    failed += 1;
                }
            }
            if planned.include.snapshots {
                r.snapshots.push(snapshot_of(r.status));
            }
        }
        children.push(r);
    }
    for c in containers {
        let id = c
            .image_uris
            .iter()
            .find(|u| u.contains("@sha256:"))
            .or(c.image_uris.first())
            .cloned()
            .unwrap_or_default();
        let mut r = row(
            planned,
            Some(&planned.image_arn),
            &id,
            &c.region,
            &account,
            now,
        );
        r.image_uris = c.image_uris.clone();
        if let Err(e) = &c.outcome {
            r.status = ResourceStatus::Failed;
            r.reason = Some(e.clone());
            failed += 1;
        }
        children.push(r);
    }

    let target = target_status(planned.action);
    if failed > 0 {
        image_row.status = ResourceStatus::Failed;
        image_row.reason = Some(format!(
            "{failed} underlying resource(s) failed; the image is left {}",
            image.status.as_str()
        ));
    } else if planned.action == ResourceAction::Delete && left_behind > 0 {
        image_row.status = ResourceStatus::Skipped;
        image_row.reason = Some(format!(
            "{left_behind} AMI(s) excluded: the Image Builder image record is kept"
        ));
    } else if image.status == target {
        image_row.reason = Some(format!("the image is already {}", target.as_str()));
    } else if planned.action == ResourceAction::Delete {
        let referrers = tx.referrers(&planned.image_arn)?;
        if referrers.is_empty() {
            image.lifecycle_execution_id = Some(execution.id.clone());
            crate::deletion::delete_image(tx, &mut image, now)?;
        } else {
            image_row.status = ResourceStatus::Failed;
            image_row.reason = Some(format!("the image is used by: {}", referrers.join(", ")));
        }
    } else {
        match image.advance(target, None, now) {
            Ok(()) => {
                match planned.action {
                    // A deprecation time already passed (updateAt) stands.
                    ResourceAction::Deprecate if image.deprecation_time.is_none_or(|t| t > now) => {
                        image.deprecation_time = Some(now);
                    }
                    ResourceAction::Available => image.deprecation_time = None,
                    _ => {}
                }
                image.lifecycle_execution_id = Some(execution.id.clone());
                tx.put(&image)?;
            }
            Err(e) => {
                image_row.status = ResourceStatus::Failed;
                image_row.reason = Some(e.to_string());
            }
        }
    }
    if image_row.status != ResourceStatus::Failed
        && image.status != ImageStatus::Deleted
        && image.lifecycle_execution_id.as_deref() != Some(execution.id.as_str())
    {
        image.lifecycle_execution_id = Some(execution.id.clone());
        tx.put(&image)?;
    }
    let mut rows = vec![image_row];
    rows.extend(children);
    Ok(rows)
}
