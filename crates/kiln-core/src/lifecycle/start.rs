//! Creating lifecycle executions: a policy's daily run and a StartResourceStateUpdate.
//!
//! An execution is created with its whole plan (the images to act on, newest first, with the
//! action, the reason and each AMI's fate), decided by the pure evaluation at its start; the
//! engine then applies the plan one image per transaction ([`super::run`]).

use super::select;
use crate::error::{CoreError, CoreResult};
use crate::lifecycle_records;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::image::Image;
use kiln_domain::resources::lifecycle::evaluate::{self, ami_exclusion, Outcome};
use kiln_domain::resources::lifecycle::{
    ActionType, AmiExclusions, ExecutionStatus, IncludeResources, LifecycleExecution,
    LifecyclePolicy, PlannedAmi, PlannedImage, PolicyStatus, ResourceAction,
};
use kiln_domain::resources::Millis;
use kiln_store::{Txn, TxnExt};

/// A new execution id: `lce-<uuid>`.
pub fn new_execution_id() -> String {
    format!("lce-{}", uuid::Uuid::new_v4())
}

pub fn resource_action(action: ActionType) -> ResourceAction {
    match action {
        ActionType::Deprecate => ResourceAction::Deprecate,
        ActionType::Disable => ResourceAction::Disable,
        ActionType::Delete => ResourceAction::Delete,
    }
}

/// The plan of a policy run: what the evaluation decided for each selected image.
pub fn plan_policy(
    policy: &LifecyclePolicy,
    candidates: &[evaluate::Candidate],
    now: Millis,
) -> Vec<PlannedImage> {
    let include_of = |action: ActionType| {
        policy
            .rules
            .iter()
            .find(|r| r.action == action)
            .map(|r| r.include)
            .unwrap_or_default()
    };
    evaluate::evaluate(&policy.rules, candidates, now)
        .into_iter()
        .filter_map(|d| match d.outcome {
            Outcome::Act {
                action,
                reason,
                amis,
            } => Some(PlannedImage {
                image_arn: d.arn,
                action: resource_action(action),
                reason,
                include: include_of(action),
                skipped: None,
                amis: amis
                    .into_iter()
                    .map(|a| PlannedAmi {
                        image_id: a.image_id,
                        region: a.region,
                        account_id: a.account_id,
                        skipped: a.skipped,
                    })
                    .collect(),
            }),
            Outcome::Excluded { action, reason } => Some(PlannedImage {
                image_arn: d.arn,
                action: resource_action(action),
                reason: reason.clone(),
                include: IncludeResources::default(),
                skipped: Some(reason),
                amis: Vec::new(),
            }),
            Outcome::Untouched { .. } => None,
        })
        .collect()
}

fn new_execution(
    account: &str,
    region: &str,
    policy_arn: Option<String>,
    image_arn: Option<String>,
    plan: Vec<PlannedImage>,
    now: Millis,
) -> LifecycleExecution {
    let id = new_execution_id();
    LifecycleExecution {
        arn: LifecycleExecution::key(region, account, &id),
        id,
        policy_arn,
        image_arn,
        status: ExecutionStatus::InProgress,
        reason: None,
        start_time: now,
        end_time: None,
        resources: Vec::new(),
        cancel_requested: None,
        plan,
        done: 0,
        not_before: None,
    }
}

/// The policy's execution that has not ended, if any.
pub fn running_of_policy(
    tx: &mut dyn Txn,
    policy: &LifecyclePolicy,
) -> CoreResult<Option<LifecycleExecution>> {
    let arn = policy.arn.to_string();
    Ok(lifecycle_records::unfinished(tx)?
        .into_iter()
        .find(|e| e.policy_arn.as_deref() == Some(arn.as_str())))
}

/// Starts the daily run of the policy `policy_arn` if it is ENABLED and its `next_run` is
/// still `due` (another worker may have claimed it: compare-and-set). The next run becomes
/// [`LifecyclePolicy::run_after`]; an execution of the policy that has not ended is resumed
/// instead of a new one. Answers the execution's id, or `None` when nothing was claimed.
pub fn claim_policy_run(
    tx: &mut dyn Txn,
    policy_arn: &str,
    due: Millis,
    now: Millis,
) -> CoreResult<Option<String>> {
    let Some(mut policy) = tx.get::<LifecyclePolicy>(policy_arn)? else {
        return Ok(None);
    };
    if policy.status != PolicyStatus::Enabled || policy.next_run != Some(due) {
        return Ok(None);
    }
    policy.next_run = Some(LifecyclePolicy::run_after(due, now));
    policy.date_last_run = Some(now);
    tx.put(&policy)?;
    if let Some(running) = running_of_policy(tx, &policy)? {
        return Ok(Some(running.id));
    }
    Ok(Some(start_policy_run(tx, &policy, now)?))
}

/// Creates a run of `policy` at `now` with its plan (whatever its schedule says).
pub fn start_policy_run(
    tx: &mut dyn Txn,
    policy: &LifecyclePolicy,
    now: Millis,
) -> CoreResult<String> {
    let candidates = select::candidates(tx, policy)?;
    let plan = plan_policy(policy, &candidates, now);
    let execution = new_execution(
        &policy.arn.account,
        &policy.arn.region,
        Some(policy.arn.to_string()),
        None,
        plan,
        now,
    );
    lifecycle_records::put(tx, &execution)?;
    Ok(execution.id)
}

/// What a StartResourceStateUpdate asks for, checked by the API.
#[derive(Debug, Clone)]
pub struct StateUpdate {
    pub target: ResourceAction,
    pub include: IncludeResources,
    pub exclusions: Option<AmiExclusions>,
    /// DEPRECATED only: when the image becomes DEPRECATED (the AMIs get it at once).
    pub update_at: Option<Millis>,
}

/// Starts the execution of a StartResourceStateUpdate on `image` (already checked: no build
/// running, no execution running on it). With `update_at`, the included AMIs get their
/// deprecation time now and the execution waits (IN_PROGRESS, no rows) until then.
pub fn start_state_update(
    tx: &mut dyn Txn,
    image: &Image,
    update: &StateUpdate,
    now: Millis,
) -> CoreResult<String> {
    let facts = select::candidate(tx, image)?;
    let amis: Vec<PlannedAmi> = if update.include.amis {
        facts
            .amis
            .iter()
            .map(|a| PlannedAmi {
                image_id: a.image_id.clone(),
                region: a.region.clone(),
                account_id: a.account_id.clone(),
                skipped: update
                    .exclusions
                    .as_ref()
                    .and_then(|ex| ami_exclusion(ex, a, now)),
            })
            .collect()
    } else {
        Vec::new()
    };
    let planned = PlannedImage {
        image_arn: image.arn.to_string(),
        action: update.target,
        reason: "StartResourceStateUpdate".to_string(),
        include: update.include,
        skipped: None,
        amis,
    };
    let mut execution = new_execution(
        &image.arn.account,
        &image.arn.region,
        None,
        Some(image.arn.to_string()),
        vec![planned.clone()],
        now,
    );
    if let Some(at) = update.update_at {
        if at <= now {
            return Err(CoreError::Invalid(
                "updateAt: the time must be in the future".to_string(),
            ));
        }
        // IN_PROGRESS with no resources while it waits, as AWS shows a scheduled update
        // (list-lifecycle-execution-resources.rst: "For a scheduled resource state update that
        // hasn't started to apply changes yet, the resources list is empty", IN_PROGRESS).
        execution.not_before = Some(at);
        super::apply::deprecate_amis_at(tx, &planned, at)?;
        let mut image = image.clone();
        image.deprecation_time = Some(at);
        tx.put(&image)?;
    }
    lifecycle_records::put(tx, &execution)?;
    Ok(execution.id)
}

/// Whether `image` has an execution that has not ended (StartResourceStateUpdate refuses it).
pub fn image_busy(tx: &mut dyn Txn, image: &Image) -> CoreResult<Option<String>> {
    let arn = image.arn.to_string();
    let unfinished = lifecycle_records::unfinished(tx)?;
    Ok(unfinished
        .into_iter()
        .find(|e| {
            e.image_arn.as_deref() == Some(arn.as_str())
                || e.plan[e.done.min(e.plan.len())..]
                    .iter()
                    .any(|p| p.image_arn == arn)
        })
        .map(|e| e.id))
}

/// The ENABLED policies whose next run is due at `now`, with that due time.
pub fn due_policies(tx: &mut dyn Txn, now: Millis) -> CoreResult<Vec<(String, Millis)>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let rows = tx.rows_of_kind(ResourceKind::LifecyclePolicy, after.as_deref(), 512)?;
        let full = rows.len() == 512;
        after = rows.last().map(|r| r.arn.clone());
        for row in &rows {
            let p: LifecyclePolicy = crate::lookup::decode_row(row)?;
            if p.status != PolicyStatus::Enabled {
                continue;
            }
            if let Some(due) = p.next_run.filter(|t| *t <= now) {
                out.push((p.arn.to_string(), due));
            }
        }
        if !full {
            return Ok(out);
        }
    }
}
