//! Lifecycle policies and their executions (contract §4).
//!
//! A [`LifecyclePolicy`] says which images it governs (by recipe name and version pattern, or by
//! tags on the Image Builder image) and what happens to them when they are old enough or beyond
//! a count: DEPRECATE, DISABLE, DELETE, at most one rule per action. Kiln runs every ENABLED
//! policy once a day; each run, and each StartResourceStateUpdate that is not applied at once,
//! is a [`LifecycleExecution`] whose [`ExecutionResource`]s say what happened to every image and
//! to each image's AMIs or container URIs.
//!
//! These are records only: the validation of a request, the evaluation order and the actions
//! live in `lifecycle::rules` (pure) and in `kiln_core::lifecycle`.

pub mod evaluate;
pub mod validate;

use super::Millis;
use crate::arn::{Arn, ResourceKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `LifecyclePolicyStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyStatus {
    Enabled,
    Disabled,
}

/// `LifecyclePolicyResourceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyResourceType {
    AmiImage,
    ContainerImage,
}

/// `LifecyclePolicyDetailActionType`, in the order the service applies them: an image gets the
/// first rule that matches it (deprecate, then disable, then delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ActionType {
    Deprecate,
    Disable,
    Delete,
}

/// `LifecyclePolicyDetailActionIncludeResources`: the underlying resources an action also
/// acts on (AMIs and their snapshots, container images in their registries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncludeResources {
    pub amis: bool,
    pub snapshots: bool,
    pub containers: bool,
}

/// `LifecyclePolicyDetailFilterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterType {
    Age,
    Count,
}

/// `LifecyclePolicyTimeUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeUnit {
    Days,
    Weeks,
    Months,
    Years,
}

/// `LifecyclePolicyDetailFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub kind: FilterType,
    /// Images (COUNT) or `unit`s of age (AGE), 1-1000.
    pub value: u32,
    /// Required with AGE.
    pub unit: Option<TimeUnit>,
    /// AGE + DELETE only: the newest images kept whatever their age.
    pub retain_at_least: Option<u32>,
}

/// `LifecyclePolicyDetailExclusionRulesAmisLastLaunched`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastLaunched {
    pub value: u32,
    pub unit: TimeUnit,
}

/// `LifecyclePolicyDetailExclusionRulesAmis`: AMIs of an eligible image that are left alone
/// (reported SKIPPED with the condition that matched).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmiExclusions {
    pub is_public: bool,
    pub regions: Vec<String>,
    pub shared_accounts: Vec<String>,
    pub last_launched: Option<LastLaunched>,
    /// Tags on the AMI.
    pub tag_map: BTreeMap<String, String>,
}

/// `LifecyclePolicyDetailExclusionRules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionRules {
    /// Tags on the Image Builder image: a match keeps the image and its outputs.
    pub tag_map: BTreeMap<String, String>,
    pub amis: Option<AmiExclusions>,
}

/// `LifecyclePolicyDetail`: one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    pub action: ActionType,
    pub include: IncludeResources,
    pub filter: Filter,
    pub exclusions: Option<ExclusionRules>,
}

/// `LifecyclePolicyResourceSelectionRecipe`: a recipe name and a version pattern
/// (`1.x.x`, `x.x.x`, `1.2.3`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeSelection {
    pub name: String,
    pub semantic_version: String,
}

/// `LifecyclePolicyResourceSelection`: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceSelection {
    Recipes(Vec<RecipeSelection>),
    /// Tags on the Image Builder image, OR-ed across pairs.
    TagMap(BTreeMap<String, String>),
}

/// A lifecycle policy, stored at its ARN (`lifecycle-policy/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePolicy {
    pub arn: Arn,
    pub name: String,
    pub description: Option<String>,
    pub status: PolicyStatus,
    /// As given (a role name or ARN).
    pub execution_role: String,
    pub resource_type: PolicyResourceType,
    /// 1-3 rules, at most one per action, in the order given.
    pub rules: Vec<PolicyRule>,
    pub selection: ResourceSelection,
    pub date_created: Millis,
    pub date_updated: Option<Millis>,
    pub date_last_run: Option<Millis>,
    /// When the daily run is next due (ENABLED only); Kiln picks the time of day.
    #[serde(default)]
    pub next_run: Option<Millis>,
}

impl super::Resource for LifecyclePolicy {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// `LifecycleExecutionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    Pending,
    InProgress,
    Cancelling,
    Cancelled,
    Success,
    Failed,
}

impl ExecutionStatus {
    /// Whether the execution has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Cancelled | ExecutionStatus::Success | ExecutionStatus::Failed
        )
    }
}

/// `LifecycleExecutionResourceStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceStatus {
    InProgress,
    Skipped,
    Success,
    Failed,
}

/// `LifecycleExecutionResourceActionName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceAction {
    Available,
    Delete,
    Deprecate,
    Disable,
}

/// `LifecycleExecutionSnapshotResource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResource {
    pub snapshot_id: String,
    pub status: ResourceStatus,
    pub reason: Option<String>,
}

/// `LifecycleExecutionResource`: what an execution did to one Image Builder image (no
/// `parent`), or to one AMI or container image of it (`parent` = the image's ARN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionResource {
    /// The image build version ARN this row is under; `None` for an image's own row.
    pub parent: Option<String>,
    pub account_id: String,
    /// The image's ARN, an `ami-` id, or a container image's URI.
    pub resource_id: String,
    pub region: String,
    pub status: ResourceStatus,
    pub reason: Option<String>,
    pub action: ResourceAction,
    pub action_reason: Option<String>,
    pub snapshots: Vec<SnapshotResource>,
    pub image_uris: Vec<String>,
    pub start_time: Option<Millis>,
    pub end_time: Option<Millis>,
}

/// One execution: a daily run of a lifecycle policy, or a StartResourceStateUpdate that runs
/// asynchronously. Stored at `lifecycle-execution/<id>` in the account and Region it ran for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleExecution {
    pub arn: Arn,
    /// `lce-<uuid>`.
    pub id: String,
    /// The policy that ran; `None` for a StartResourceStateUpdate.
    pub policy_arn: Option<String>,
    /// The image a StartResourceStateUpdate acts on (ListLifecycleExecutions by image ARN).
    pub image_arn: Option<String>,
    pub status: ExecutionStatus,
    pub reason: Option<String>,
    pub start_time: Millis,
    pub end_time: Option<Millis>,
    pub resources: Vec<ExecutionResource>,
    /// When a cancel was asked for (CancelLifecycleExecution, or the policy deleted or
    /// disabled); the engine ends the execution CANCELLED after the resource action at hand.
    #[serde(default)]
    pub cancel_requested: Option<Millis>,
    /// What the execution is to do, image by image, decided when it started (the engine in
    /// `kiln_core::lifecycle` applies one entry per write transaction, so a cancel can come
    /// between two images).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedImage>,
    /// How many entries of `plan` are done.
    #[serde(default)]
    pub done: usize,
    /// A StartResourceStateUpdate with `updateAt`: the execution stays PENDING until then.
    #[serde(default)]
    pub not_before: Option<Millis>,
}

/// One image an execution acts on (or reports SKIPPED), as decided when it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedImage {
    pub image_arn: String,
    pub action: ResourceAction,
    /// Why the action applies (the row's `action.reason`).
    pub reason: String,
    pub include: IncludeResources,
    /// An exclusion keeps the image: reported SKIPPED with this reason, nothing done.
    pub skipped: Option<String>,
    /// The image's AMIs when the action includes them.
    pub amis: Vec<PlannedAmi>,
}

/// One AMI of a [`PlannedImage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAmi {
    pub image_id: String,
    pub region: String,
    pub account_id: String,
    /// Excluded by `exclusionRules.amis`: reported SKIPPED with this reason.
    pub skipped: Option<String>,
}

impl LifecycleExecution {
    pub fn key(region: &str, owner: &str, id: &str) -> Arn {
        Arn::new(region, owner, ResourceKind::LifecycleExecution, id)
    }

    /// Marks a PENDING or IN_PROGRESS execution CANCELLING with `reason`; answers whether it
    /// did (an execution already cancelling, or ended, stays as it is).
    pub fn request_cancel(&mut self, reason: &str, now: Millis) -> bool {
        if !matches!(
            self.status,
            ExecutionStatus::Pending | ExecutionStatus::InProgress
        ) {
            return false;
        }
        self.status = ExecutionStatus::Cancelling;
        self.reason = Some(reason.to_string());
        self.cancel_requested = Some(now);
        true
    }

    /// `resourcesImpactedSummary.hasImpactedResources`: whether any action was taken.
    pub fn has_impacted_resources(&self) -> bool {
        self.resources
            .iter()
            .any(|r| r.status == ResourceStatus::Success)
    }
}

impl super::Resource for LifecycleExecution {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// A day in milliseconds: ENABLED policies run once a day.
pub const DAY_MILLIS: Millis = 24 * 60 * 60 * 1000;

impl LifecyclePolicy {
    /// When a policy created (or re-enabled) at `now` first runs: Kiln picks the time of day at
    /// which it was enabled, one day later, as AWS picks a time of its own.
    pub fn first_run(now: Millis) -> Millis {
        now + DAY_MILLIS
    }

    /// The run after the one due at `due`, as seen at `now`: one day later, and missed days
    /// collapse into the run just made (a server that was down runs a policy once, not once per
    /// missed day).
    pub fn run_after(due: Millis, now: Millis) -> Millis {
        let mut next = due + DAY_MILLIS;
        if next <= now {
            next += ((now - next) / DAY_MILLIS + 1) * DAY_MILLIS;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_runs_keep_their_time_of_day_and_collapse_missed_days() {
        let t0 = 1_000_000;
        assert_eq!(LifecyclePolicy::first_run(t0), t0 + DAY_MILLIS);
        let due = t0 + DAY_MILLIS;
        assert_eq!(LifecyclePolicy::run_after(due, due), due + DAY_MILLIS);
        assert_eq!(
            LifecyclePolicy::run_after(due, due + 3 * DAY_MILLIS + 5),
            due + 4 * DAY_MILLIS
        );
        assert_eq!(
            LifecyclePolicy::run_after(due, due + DAY_MILLIS),
            due + 2 * DAY_MILLIS
        );
    }
}
