//! How one run of a lifecycle policy decides what happens to each image (contract §4.3, §4.6).
//!
//! The input is the policy's rules, the images it selected (as [`Candidate`] facts: status,
//! creation date, recipe version, tags, output AMIs) and the time of the run; the output is one
//! [`Decision`] per image, newest first. Nothing here reads the store or acts: the engine in
//! `kiln_core::lifecycle` gathers the facts and applies the decisions, one image at a time.
//!
//! The rules, in the order they are applied:
//! - images are evaluated from the newest to the oldest (Image Builder creation date);
//! - an image whose build is in progress is left for a later run;
//! - DEPRECATE, then DISABLE, then DELETE: the first rule that acts is the only action the image
//!   gets in this run (a later run may escalate);
//! - DEPRECATE skips images already DEPRECATED, DISABLED, FAILED or CANCELLED; DISABLE skips
//!   DISABLED, FAILED and CANCELLED; DELETE considers any state;
//! - DEPRECATE and DISABLE: the AGE check, then the image-level tag exclusion;
//! - DELETE: FAILED and CANCELLED images qualify without taking a retention slot; a tag-excluded
//!   image is kept and takes no slot; the newest images of each recipe version fill the
//!   retention slots (`value` for COUNT, `retainAtLeast` for AGE) and stay; beyond them, COUNT
//!   deletes and AGE deletes what is old enough;
//! - the AMIs of an image that is acted on are checked against `exclusionRules.amis` in the
//!   order Region, isPublic, AMI tags, sharedAccounts, lastLaunched; the first match leaves
//!   the AMI alone (SKIPPED, with the reason naming it).
//!
//! Ages: a day is 24 h, a week 7 days, a month 30 days and a year 365 days (AWS does not say;
//! these are fixed lengths so that a policy means the same thing every month). An image is
//! "older than N units" when its age is strictly greater than N units. A retention slot that a
//! DEPRECATE or DISABLE action took the image for is not filled by it (as in §4.6: the image
//! never reached the DELETE rule in this run), so the DELETE rule keeps more, never fewer.

use super::{
    ActionType, AmiExclusions, FilterType, LastLaunched, PolicyRule, TimeUnit, DAY_MILLIS,
};
use crate::resources::image::ImageStatus;
use crate::resources::Millis;
use std::collections::{BTreeMap, HashMap};

/// EC2 records an AMI's last launch with up to this delay: a launch is seen only after it.
pub const LAST_LAUNCHED_DELAY: Millis = DAY_MILLIS;

/// What the engine knows of one output AMI of a candidate image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AmiFacts {
    pub image_id: String,
    pub region: String,
    pub account_id: String,
    pub public: bool,
    /// Accounts the AMI is shared with (launch permissions).
    pub shared_accounts: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// When the AMI was last launched, if ever recorded.
    pub last_launched: Option<Millis>,
}

/// What the engine knows of one image the policy selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub arn: String,
    /// The recipe name and version (`<name>/<x.y.z>`): COUNT and retention are per recipe
    /// version.
    pub recipe_version: String,
    pub status: ImageStatus,
    pub date_created: Millis,
    /// Tags on the Image Builder image.
    pub tags: BTreeMap<String, String>,
    pub amis: Vec<AmiFacts>,
}

/// What happens to one AMI of an image that is acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiDecision {
    pub image_id: String,
    pub region: String,
    pub account_id: String,
    /// `Some(reason)`: excluded, left alone and reported SKIPPED.
    pub skipped: Option<String>,
}

/// The outcome for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `action` is applied; `amis` lists the image's AMIs when the rule includes them.
    Act {
        action: ActionType,
        reason: String,
        amis: Vec<AmiDecision>,
    },
    /// A rule would act but the image-level tag exclusion keeps the image (reported SKIPPED).
    Excluded { action: ActionType, reason: String },
    /// No rule acts on the image in this run (not reported).
    Untouched { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub arn: String,
    pub outcome: Outcome,
}

/// The length of `value` `unit`s in milliseconds.
pub fn duration(value: u32, unit: TimeUnit) -> Millis {
    let days: Millis = match unit {
        TimeUnit::Days => 1,
        TimeUnit::Weeks => 7,
        TimeUnit::Months => 30,
        TimeUnit::Years => 365,
    };
    Millis::from(value) * days * DAY_MILLIS
}

pub fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Days => "DAYS",
        TimeUnit::Weeks => "WEEKS",
        TimeUnit::Months => "MONTHS",
        TimeUnit::Years => "YEARS",
    }
}

/// The first pair of `exclude` that `tags` carries with the same value.
fn tag_match<'a>(
    exclude: &'a BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
) -> Option<(&'a String, &'a String)> {
    exclude.iter().find(|(k, v)| tags.get(*k) == Some(*v))
}

/// Whether `rule`'s AGE filter finds the image old enough (a rule without AGE always does).
fn old_enough(rule: &PolicyRule, image: &Candidate, now: Millis) -> Option<String> {
    match (rule.filter.kind, rule.filter.unit) {
        (FilterType::Age, Some(unit)) => {
            let limit = duration(rule.filter.value, unit);
            (now - image.date_created > limit).then(|| {
                format!(
                    "the image is older than {} {}",
                    rule.filter.value,
                    unit_name(unit)
                )
            })
        }
        // COUNT is checked by the retention slots (DELETE only); an AGE filter without a unit
        // is refused when the policy is written, and read here as days.
        (FilterType::Age, None) => {
            let limit = duration(rule.filter.value, TimeUnit::Days);
            (now - image.date_created > limit)
                .then(|| format!("the image is older than {} DAYS", rule.filter.value))
        }
        (FilterType::Count, _) => Some(String::new()),
    }
}

/// Why the AMI is excluded by `ex`, the first condition that matches (§4.3 step 6).
pub fn ami_exclusion(ex: &AmiExclusions, ami: &AmiFacts, now: Millis) -> Option<String> {
    if ex.regions.iter().any(|r| r == &ami.region) {
        return Some(format!("Region excluded: {}", ami.region));
    }
    if ex.is_public && ami.public {
        return Some("Public AMI excluded (isPublic)".to_string());
    }
    if let Some((k, v)) = tag_match(&ex.tag_map, &ami.tags) {
        return Some(format!("AMI tag excluded: {k}={v}"));
    }
    if let Some(account) = ami
        .shared_accounts
        .iter()
        .find(|a| ex.shared_accounts.contains(a))
    {
        return Some(format!("AMI shared with excluded account {account}"));
    }
    if let (Some(LastLaunched { value, unit }), Some(at)) = (&ex.last_launched, ami.last_launched) {
        // EC2 shows a launch only a day after it; an AMI with no launch EC2 shows is not
        // excluded.
        let seen = now - at >= LAST_LAUNCHED_DELAY;
        if seen && now - at <= duration(*value, *unit) {
            return Some(format!(
                "AMI launched within the last {value} {} (lastLaunched)",
                unit_name(*unit)
            ));
        }
    }
    None
}

fn ami_decisions(rule: &PolicyRule, image: &Candidate, now: Millis) -> Vec<AmiDecision> {
    if !rule.include.amis {
        return Vec::new();
    }
    let exclusions = rule.exclusions.as_ref().and_then(|e| e.amis.as_ref());
    image
        .amis
        .iter()
        .map(|ami| AmiDecision {
            image_id: ami.image_id.clone(),
            region: ami.region.clone(),
            account_id: ami.account_id.clone(),
            skipped: exclusions.and_then(|ex| ami_exclusion(ex, ami, now)),
        })
        .collect()
}

fn image_tag_exclusion(rule: &PolicyRule, image: &Candidate) -> Option<String> {
    let exclude = &rule.exclusions.as_ref()?.tag_map;
    tag_match(exclude, &image.tags).map(|(k, v)| format!("Image tag excluded: {k}={v}"))
}

fn action_name(action: ActionType) -> &'static str {
    match action {
        ActionType::Deprecate => "DEPRECATE",
        ActionType::Disable => "DISABLE",
        ActionType::Delete => "DELETE",
    }
}

/// The outcome of the DELETE rule for one image; `used` is the retention slots its recipe
/// version has filled so far. `None`: the rule does not act (the image may have filled a slot).
fn delete_outcome(
    rule: &PolicyRule,
    image: &Candidate,
    used: &mut u32,
    now: Millis,
) -> Option<Outcome> {
    let failed = matches!(image.status, ImageStatus::Failed | ImageStatus::Cancelled);
    let excluded = image_tag_exclusion(rule, image);
    let reason = if failed {
        format!(
            "the image is {} (deleted without taking a retention slot)",
            image.status.as_str()
        )
    } else {
        let slots = match rule.filter.kind {
            FilterType::Count => rule.filter.value,
            FilterType::Age => rule.filter.retain_at_least.unwrap_or(0),
        };
        if *used < slots {
            // A tag-excluded image never fills a slot: the next image does.
            if excluded.is_none() {
                *used += 1;
            }
            return None;
        }
        match rule.filter.kind {
            FilterType::Count => format!(
                "the image is beyond the {} newest of its recipe version",
                rule.filter.value
            ),
            FilterType::Age => old_enough(rule, image, now)?,
        }
    };
    // Beyond retention (or FAILED/CANCELLED) and old enough: the tag exclusion keeps it.
    if let Some(why) = excluded {
        return Some(Outcome::Excluded {
            action: ActionType::Delete,
            reason: why,
        });
    }
    Some(Outcome::Act {
        action: ActionType::Delete,
        reason,
        amis: ami_decisions(rule, image, now),
    })
}

/// Decides every candidate's fate in one run at `now`. Decisions come newest first.
pub fn evaluate(rules: &[PolicyRule], candidates: &[Candidate], now: Millis) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    // Newest first; equal dates in ARN order, newest build number first.
    order.sort_by(|a, b| {
        b.date_created
            .cmp(&a.date_created)
            .then_with(|| b.arn.cmp(&a.arn))
    });
    let rule = |action: ActionType| rules.iter().find(|r| r.action == action);
    let mut slots: HashMap<&str, u32> = HashMap::new();
    order
        .into_iter()
        .map(|image| Decision {
            arn: image.arn.clone(),
            outcome: decide(image, &rule, &mut slots, now),
        })
        .collect()
}

fn decide<'a>(
    image: &'a Candidate,
    rule: &dyn Fn(ActionType) -> Option<&'a PolicyRule>,
    slots: &mut HashMap<&'a str, u32>,
    now: Millis,
) -> Outcome {
    use ImageStatus::*;
    if image.status.in_progress() {
        return Outcome::Untouched {
            reason: format!(
                "the image is {}: evaluated again next run",
                image.status.as_str()
            ),
        };
    }
    if image.status == Deleted {
        return Outcome::Untouched {
            reason: "the image is deleted".to_string(),
        };
    }
    let mut excluded: Option<Outcome> = None;
    for action in [ActionType::Deprecate, ActionType::Disable] {
        let Some(r) = rule(action) else { continue };
        let skip: &[ImageStatus] = match action {
            ActionType::Deprecate => &[Deprecated, Disabled, Failed, Cancelled],
            _ => &[Disabled, Failed, Cancelled],
        };
        if skip.contains(&image.status) {
            continue;
        }
        let Some(reason) = old_enough(r, image, now) else {
            continue;
        };
        if let Some(why) = image_tag_exclusion(r, image) {
            // This rule keeps the image; a later rule may still act on it.
            excluded.get_or_insert(Outcome::Excluded {
                action,
                reason: why,
            });
            continue;
        }
        return Outcome::Act {
            action,
            reason,
            amis: ami_decisions(r, image, now),
        };
    }
    if let Some(r) = rule(ActionType::Delete) {
        let used = slots.entry(image.recipe_version.as_str()).or_insert(0);
        match delete_outcome(r, image, used, now) {
            Some(outcome @ Outcome::Excluded { .. }) => {
                excluded.get_or_insert(outcome);
            }
            Some(outcome) => return outcome,
            None => {}
        }
    }
    if let Some(outcome) = excluded {
        return outcome;
    }
    let names: Vec<&str> = [
        ActionType::Deprecate,
        ActionType::Disable,
        ActionType::Delete,
    ]
    .into_iter()
    .filter(|a| rule(*a).is_some())
    .map(action_name)
    .collect();
    Outcome::Untouched {
        reason: format!("no rule matched ({})", names.join(", ")),
    }
}

#[cfg(test)]
mod tests;
