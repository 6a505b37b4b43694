//! What a pipeline's schedule does when it fires, and what the end of its builds does to it.
//!
//! - The start condition ([`decide`]): `EXPRESSION_MATCH_ONLY` builds at every firing;
//!   `EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE` builds only when the recipe's version
//!   filters resolve to something new: a parent image or a component build that the pipeline's
//!   last build did not use ([`Dependencies`]). "Last build" is the newest image of the pipeline
//!   that did not fail and was not cancelled: a failed build did not deliver its dependencies,
//!   so the next firing tries again (and the failures count towards auto-disable).
//! - Auto-disable ([`ImagePipeline::build_ended`]): consecutive failed scheduled builds up to
//!   `autoDisablePolicy.failureCount` (5 when the schedule has no policy, as documented) disable
//!   the pipeline; a successful build of any kind resets the count, a failed manual one leaves it.
//! - Every firing and every automatic disable is recorded on the pipeline
//!   ([`ScheduleEvent`], the newest [`KEPT_EVENTS`]).
//!
//! No IO here: the API layer resolves the dependencies and stores the pipeline.

use super::image::{BuildType, Image, ImageStatus};
use super::pipeline::{ImagePipeline, PipelineStatus, StartCondition};
use super::Millis;
use serde::{Deserialize, Serialize};

/// "If the schedule doesn't include an auto-disable policy, Image Builder disables the pipeline
/// after 5 consecutive failed scheduled builds."
pub const DEFAULT_AUTO_DISABLE_FAILURES: i32 = 5;

/// How many schedule events a pipeline keeps.
pub const KEPT_EVENTS: usize = 20;

/// What a build is made of, as far as the start condition is concerned: the parent image and
/// the component builds the recipe's references resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependencies {
    /// The resolved Image Builder image ARN, or the recipe's parent text for other forms
    /// (registry references, archives) whose updates Kiln cannot see.
    pub parent: String,
    /// Component build ARNs in recipe order.
    pub components: Vec<String>,
}

impl Dependencies {
    /// What `image` was built from, if it records it.
    pub fn of_image(image: &Image) -> Option<Dependencies> {
        let snapshot = image.snapshot.as_ref()?;
        Some(Dependencies {
            parent: image
                .resolved_parent
                .clone()
                .unwrap_or_else(|| snapshot.parent_image().to_string()),
            components: snapshot.components.iter().map(|c| c.arn.clone()).collect(),
        })
    }

    /// The differences from `before`, one phrase each.
    pub fn changes_since(&self, before: &Dependencies) -> Vec<String> {
        let mut changes = Vec::new();
        if self.parent != before.parent {
            changes.push(format!(
                "parent image {} (was {})",
                self.parent, before.parent
            ));
        }
        for (i, component) in self.components.iter().enumerate() {
            match before.components.get(i) {
                Some(was) if was == component => {}
                Some(was) => changes.push(format!("component {component} (was {was})")),
                None => changes.push(format!("component {component} (new)")),
            }
        }
        for removed in before.components.iter().skip(self.components.len()) {
            changes.push(format!("component {removed} removed"));
        }
        changes
    }
}

/// What a firing does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Build { reason: String },
    Skip { reason: String },
}

/// The start condition's answer. `last_build` is the pipeline's newest image that did not fail
/// and was not cancelled, with what it was built from.
pub fn decide(
    condition: StartCondition,
    current: &Dependencies,
    last_build: Option<(&str, &Dependencies)>,
) -> Decision {
    if condition == StartCondition::ExpressionMatchOnly {
        return Decision::Build {
            reason: "the schedule matched (EXPRESSION_MATCH_ONLY)".to_string(),
        };
    }
    let Some((image, built)) = last_build else {
        return Decision::Build {
            reason: "the pipeline has not built an image yet".to_string(),
        };
    };
    let changes = current.changes_since(built);
    if changes.is_empty() {
        Decision::Skip {
            reason: format!(
                "no dependency updates since {image}: the parent image and components resolve \
                 as they did for it (EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE)"
            ),
        }
    } else {
        Decision::Build {
            reason: format!("dependency updates since {image}: {}", changes.join(", ")),
        }
    }
}

/// The newest image of `images` (all of one pipeline) that counts as its last build for
/// [`decide`], with what it was built from.
pub fn last_build(images: &[Image]) -> Option<(&Image, Dependencies)> {
    images
        .iter()
        .filter(|i| {
            !matches!(
                i.status,
                ImageStatus::Failed | ImageStatus::Cancelled | ImageStatus::Deleted
            )
        })
        .filter_map(|i| Some((i, Dependencies::of_image(i)?)))
        .max_by_key(|(i, _)| (i.date_created, i.arn.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleOutcome {
    /// A build started.
    Started,
    /// The start condition did not hold.
    Skipped,
    /// The build could not be created (for example a resource it needs is gone); counts as a
    /// failed scheduled build.
    FailedToStart,
    /// Consecutive failures disabled the pipeline.
    Disabled,
}

impl ScheduleOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleOutcome::Started => "STARTED",
            ScheduleOutcome::Skipped => "SKIPPED",
            ScheduleOutcome::FailedToStart => "FAILED_TO_START",
            ScheduleOutcome::Disabled => "DISABLED",
        }
    }
}

/// One thing the schedule did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleEvent {
    /// When it happened.
    pub at: Millis,
    /// The firing time it belongs to (for [`ScheduleOutcome::Disabled`], the time of the
    /// failure that disabled the pipeline).
    pub due: Millis,
    pub outcome: ScheduleOutcome,
    pub image_arn: Option<String>,
    pub reason: String,
}

impl ImagePipeline {
    /// How many consecutive failed scheduled builds disable the pipeline.
    pub fn auto_disable_limit(&self) -> i32 {
        self.definition
            .schedule
            .as_ref()
            .and_then(|s| s.auto_disable_failure_count)
            .unwrap_or(DEFAULT_AUTO_DISABLE_FAILURES)
    }

    /// Records a schedule event, keeping the newest [`KEPT_EVENTS`].
    pub fn record(&mut self, event: ScheduleEvent) {
        self.schedule_events.push(event);
        let excess = self.schedule_events.len().saturating_sub(KEPT_EVENTS);
        self.schedule_events.drain(..excess);
    }

    /// Counts a finished build of this pipeline. A success resets the consecutive failures;
    /// a failed scheduled build (or a firing that could not start one) adds one, and reaching
    /// the limit disables an enabled pipeline: then the reason is returned (and recorded).
    pub fn build_ended(
        &mut self,
        status: ImageStatus,
        build_type: BuildType,
        image_arn: Option<&str>,
        now: Millis,
    ) -> Option<String> {
        match (status, build_type) {
            (ImageStatus::Available, _) => self.consecutive_failures = 0,
            (ImageStatus::Failed, BuildType::Scheduled) => self.consecutive_failures += 1,
            _ => return None,
        }
        let limit = self.auto_disable_limit();
        if status != ImageStatus::Failed
            || self.definition.status != PipelineStatus::Enabled
            || self.consecutive_failures < limit
        {
            return None;
        }
        let reason = format!(
            "disabled after {} consecutive failed scheduled builds (autoDisablePolicy.failureCount {limit})",
            self.consecutive_failures
        );
        self.definition.status = PipelineStatus::Disabled;
        self.date_next_run = None;
        self.record(ScheduleEvent {
            at: now,
            due: now,
            outcome: ScheduleOutcome::Disabled,
            image_arn: image_arn.map(str::to_string),
            reason: reason.clone(),
        });
        Some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(parent: &str, components: &[&str]) -> Dependencies {
        Dependencies {
            parent: parent.into(),
            components: components.iter().map(|c| c.to_string()).collect(),
        }
    }

    const MATCH_ONLY: StartCondition = StartCondition::ExpressionMatchOnly;
    const UPDATES: StartCondition = StartCondition::ExpressionMatchAndDependencyUpdatesAvailable;

    #[test]
    #[rustfmt::skip] // one row per line reads as a table
    fn start_conditions() {
        let a = deps("image/base/1.0.0/1", &["component/c/1.0.0/1"]);
        let newer_component = deps("image/base/1.0.0/1", &["component/c/1.0.1/1"]);
        let newer_parent = deps("image/base/1.1.0/1", &["component/c/1.0.0/1"]);
        let extra = deps("image/base/1.0.0/1", &["component/c/1.0.0/1", "component/d/1.0.0/1"]);
        let fewer = deps("image/base/1.0.0/1", &[]);
        let rows: &[(StartCondition, &Dependencies, Option<&Dependencies>, bool, &str)] = &[
            (MATCH_ONLY, &a, Some(&a), true, "EXPRESSION_MATCH_ONLY"),
            (MATCH_ONLY, &a, None, true, "EXPRESSION_MATCH_ONLY"),
            (UPDATES, &a, None, true, "has not built an image yet"),
            (UPDATES, &a, Some(&a), false, "no dependency updates since img"),
            (UPDATES, &newer_component, Some(&a), true, "component component/c/1.0.1/1 (was component/c/1.0.0/1)"),
            (UPDATES, &newer_parent, Some(&a), true, "parent image image/base/1.1.0/1 (was image/base/1.0.0/1)"),
            (UPDATES, &extra, Some(&a), true, "component component/d/1.0.0/1 (new)"),
            (UPDATES, &fewer, Some(&a), true, "component component/c/1.0.0/1 removed"),
        ];
        for (i, &(condition, current, last, builds, fragment)) in rows.iter().enumerate() {
            let decision = decide(condition, current, last.map(|d| ("img", d)));
            let (built, reason) = match &decision {
                Decision::Build { reason } => (true, reason),
                Decision::Skip { reason } => (false, reason),
            };
            assert_eq!(built, builds, "row {i}: {decision:?}");
            assert!(reason.contains(fragment), "row {i}: {reason:?} lacks {fragment:?}");
        }
    }

    /// Runs builds that end with `outcomes` through a pipeline whose policy allows `limit`
    /// failures (`None`: no policy), and answers the consecutive-failure count after each and
    /// when it was disabled.
    fn run(limit: Option<i32>, outcomes: &[(ImageStatus, BuildType)]) -> (Vec<i32>, Option<usize>) {
        let mut schedule = super::super::pipeline::tests::schedule("cron(0 10 * * ? *)", "UTC");
        if let Some(s) = &mut schedule {
            s.auto_disable_failure_count = limit;
        }
        let mut pipeline = super::super::pipeline::tests::pipeline(schedule);
        pipeline.date_next_run = Some(1);
        let mut counts = Vec::new();
        let mut disabled_at = None;
        for (i, &(status, build_type)) in outcomes.iter().enumerate() {
            if let Some(reason) = pipeline.build_ended(status, build_type, Some("img"), i as i64) {
                assert!(disabled_at.is_none(), "disabled twice");
                assert!(
                    reason.contains("consecutive failed scheduled builds"),
                    "{reason}"
                );
                assert_eq!(pipeline.definition.status, PipelineStatus::Disabled);
                assert_eq!(pipeline.date_next_run, None);
                let event = pipeline.schedule_events.last().unwrap();
                assert_eq!(event.outcome, ScheduleOutcome::Disabled);
                assert_eq!(event.reason, reason);
                disabled_at = Some(i);
            }
            counts.push(pipeline.consecutive_failures);
        }
        (counts, disabled_at)
    }

    #[test]
    fn auto_disable_counts_consecutive_scheduled_failures() {
        use BuildType::{Scheduled as S, UserInitiated as M};
        use ImageStatus::{Available as OK, Cancelled as CANCEL, Failed as FAIL};
        // Three failures disable a pipeline whose policy says 3.
        assert_eq!(
            run(Some(3), &[(FAIL, S), (FAIL, S), (FAIL, S)]),
            (vec![1, 2, 3], Some(2))
        );
        // A success in between resets the count.
        assert_eq!(
            run(
                Some(3),
                &[(FAIL, S), (FAIL, S), (OK, S), (FAIL, S), (FAIL, S)]
            ),
            (vec![1, 2, 0, 1, 2], None)
        );
        // A successful manual run resets it too; a failed manual run leaves it unchanged.
        assert_eq!(
            run(Some(2), &[(FAIL, S), (OK, M), (FAIL, S)]),
            (vec![1, 0, 1], None)
        );
        assert_eq!(
            run(Some(2), &[(FAIL, S), (FAIL, M), (FAIL, M), (FAIL, S)]),
            (vec![1, 1, 1, 2], Some(3))
        );
        // A cancelled build is not a failure.
        assert_eq!(
            run(Some(2), &[(FAIL, S), (CANCEL, S), (FAIL, S)]),
            (vec![1, 1, 2], Some(2))
        );
        // Without a policy the documented default is 5.
        assert_eq!(run(None, &[(FAIL, S); 5]), (vec![1, 2, 3, 4, 5], Some(4)));
        assert_eq!(run(Some(1), &[(FAIL, S)]), (vec![1], Some(0)));
    }

    #[test]
    fn events_keep_the_newest() {
        let mut pipeline = super::super::pipeline::tests::pipeline(None);
        for i in 0..(KEPT_EVENTS as i64 + 5) {
            pipeline.record(ScheduleEvent {
                at: i,
                due: i,
                outcome: ScheduleOutcome::Skipped,
                image_arn: None,
                reason: String::new(),
            });
        }
        assert_eq!(pipeline.schedule_events.len(), KEPT_EVENTS);
        assert_eq!(pipeline.schedule_events[0].at, 5);
    }
}
