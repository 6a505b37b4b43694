//! Scheduled runs of pipelines: what happens when a pipeline's schedule fires.
//!
//! The store keeps the due set: one row per pipeline that will run on its schedule, with the
//! time of its next run (`dateNextRun`). Create and Update set it ([`reschedule`]), Delete and
//! disabling remove it. The scheduler (`kiln-scheduler`) reads what is due and calls [`fire`]
//! for each, in a write transaction.
//!
//! [`fire`] claims the firing by moving the pipeline's next run from the due time to the next
//! one, compare-and-set, in the same transaction that starts the build and records the event.
//! So each due time starts at most one build: a second scheduler on the same database finds the
//! due time gone, and a crash either loses the whole firing (it is still due after the restart)
//! or commits all of it (it is not due again).
//!
//! The next run is computed from the time of firing, not from the due time: a pipeline whose
//! firings were missed while Kiln was down runs once when Kiln is back, then keeps its schedule.

use crate::caller::Caller;
use crate::error::CoreResult;
use crate::images::{resolve_recipe, start_pipeline_build};
use crate::lookup::{decode_row, list_own};
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::image::{BuildType, Image, ImageStatus};
use kiln_domain::resources::pipeline::{
    next_runs, ImagePipeline, PipelineStatus, PipelineTiming, StartCondition,
};
use kiln_domain::resources::scheduled_run::{
    decide, last_build, Decision, ScheduleEvent, ScheduleOutcome,
};
use kiln_store::{Txn, TxnExt};
use std::collections::HashMap;

/// Sets `pipeline`'s next run from `now` (none while disabled or without a schedule), in the
/// record and in the due set.
pub fn reschedule(tx: &mut dyn Txn, pipeline: &mut ImagePipeline, now: i64) -> CoreResult<()> {
    pipeline.date_next_run = pipeline.next_run(now);
    Ok(tx.set_next_run(&pipeline.arn.to_string(), pipeline.date_next_run)?)
}

/// The setting that says the due set has been built from the pipeline records.
pub const INDEXED_SETTING: &str = "schedules_indexed";

/// Builds the due set from the pipeline records once per database (a database written before
/// Kiln kept next runs has pipelines without one). Answers how many pipelines it read (0 when
/// the database was indexed already).
pub fn index_once(tx: &mut dyn Txn, now: i64) -> CoreResult<usize> {
    if tx.get_setting(INDEXED_SETTING)?.is_some() {
        return Ok(0);
    }
    let read = reindex(tx, now)?;
    tx.put_setting(INDEXED_SETTING, "1")?;
    Ok(read)
}

/// Computes every pipeline's next run and brings the records and the due set in line with it,
/// writing only what differs. A next run already due is kept (a firing not yet done, such as
/// one missed while Kiln was down); any other is computed from `now`. Answers how many
/// pipelines it read.
pub fn reindex(tx: &mut dyn Txn, now: i64) -> CoreResult<usize> {
    // Only when each pipeline runs is kept from the records (a few strings each), so that all
    // next runs are computed in one batch, each distinct schedule parsed once.
    let mut pipelines: Vec<(String, PipelineTiming)> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let rows = tx.rows_of_kind(ResourceKind::ImagePipeline, after.as_deref(), 4096)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(last.arn.clone());
        for row in rows {
            let timing: PipelineTiming = decode_row(&row)?;
            pipelines.push((row.arn, timing));
        }
    }
    let timings: Vec<_> = pipelines.iter().map(|(_, t)| t.timing()).collect();
    let computed = next_runs(&timings, now);
    let due_set: HashMap<String, i64> = tx.due_runs(i64::MAX, usize::MAX)?.into_iter().collect();
    for ((arn, timing), computed) in pipelines.iter().zip(computed) {
        let next = match timing.date_next_run {
            Some(pending) if pending <= now => Some(pending),
            _ => computed,
        };
        if next != timing.date_next_run {
            if let Some(mut pipeline) = tx.get::<ImagePipeline>(arn)? {
                pipeline.date_next_run = next;
                tx.put(&pipeline)?;
            }
        }
        if due_set.get(arn).copied() != next {
            tx.set_next_run(arn, next)?;
        }
    }
    Ok(pipelines.len())
}

/// Fires the run of `pipeline_arn` due at `due`, at time `now`. `Ok(None)` when the run was not
/// this caller's to fire: another scheduler claimed it, or the pipeline changed since it was
/// read as due.
pub fn fire(
    tx: &mut dyn Txn,
    pipeline_arn: &str,
    due: i64,
    now: i64,
) -> CoreResult<Option<ScheduleEvent>> {
    let Some(mut pipeline) = tx.get::<ImagePipeline>(pipeline_arn)? else {
        // The pipeline is gone; so is its run.
        tx.claim_run(pipeline_arn, due, None)?;
        return Ok(None);
    };
    let next = pipeline.next_run(now);
    if !tx.claim_run(pipeline_arn, due, next)? {
        return Ok(None);
    }
    pipeline.date_next_run = next;
    let Some(schedule) = pipeline.definition.schedule.clone() else {
        tx.put(&pipeline)?;
        return Ok(None);
    };
    if pipeline.definition.status != PipelineStatus::Enabled {
        tx.put(&pipeline)?;
        return Ok(None);
    }
    // The run acts for the pipeline's owner.
    let owner = pipeline.arn.clone();
    let caller = Caller {
        account_id: &owner.account,
        region: &owner.region,
        now_millis: now,
    };
    let decision = match schedule.start_condition {
        StartCondition::ExpressionMatchOnly => {
            decide(schedule.start_condition, &Default::default(), None)
        }
        StartCondition::ExpressionMatchAndDependencyUpdatesAvailable => {
            match dependency_decision(tx, caller, &pipeline) {
                Ok(decision) => decision,
                // Starting the build reports the same problem, as a failed run.
                Err(e) => Decision::Build {
                    reason: format!("the dependencies could not be resolved: {e}"),
                },
            }
        }
    };
    let event = match decision {
        Decision::Skip { reason } => ScheduleEvent {
            at: now,
            due,
            outcome: ScheduleOutcome::Skipped,
            image_arn: None,
            reason,
        },
        Decision::Build { reason } => {
            let tags = pipeline.definition.image_tags.clone();
            match start_pipeline_build(tx, caller, &mut pipeline, BuildType::Scheduled, tags) {
                Ok(image) => ScheduleEvent {
                    at: now,
                    due,
                    outcome: ScheduleOutcome::Started,
                    image_arn: Some(image.arn.to_string()),
                    reason,
                },
                Err(e) => ScheduleEvent {
                    at: now,
                    due,
                    outcome: ScheduleOutcome::FailedToStart,
                    image_arn: None,
                    reason: format!("the scheduled build could not start: {e}"),
                },
            }
        }
    };
    log(pipeline_arn, &event);
    pipeline.record(event.clone());
    if event.outcome == ScheduleOutcome::FailedToStart {
        // It counts as a failed scheduled build, so a pipeline that can no longer build
        // disables itself instead of failing forever.
        count_build_end(
            tx,
            &mut pipeline,
            ImageStatus::Failed,
            BuildType::Scheduled,
            None,
            now,
        )?;
    }
    tx.put(&pipeline)?;
    Ok(Some(event))
}

/// Counts a finished build of `pipeline` towards auto-disable ([`ImagePipeline::build_ended`]);
/// when that disables the pipeline, logs it and removes it from the due set. The caller stores
/// the pipeline.
pub fn count_build_end(
    tx: &mut dyn Txn,
    pipeline: &mut ImagePipeline,
    status: ImageStatus,
    build_type: BuildType,
    image_arn: Option<&str>,
    now: i64,
) -> CoreResult<()> {
    if let Some(reason) = pipeline.build_ended(status, build_type, image_arn, now) {
        let arn = pipeline.arn.to_string();
        tracing::warn!(pipeline = %arn, image = image_arn.unwrap_or(""), %reason, "pipeline disabled");
        tx.set_next_run(&arn, None)?;
    }
    Ok(())
}

fn log(pipeline_arn: &str, event: &ScheduleEvent) {
    tracing::info!(
        pipeline = pipeline_arn,
        outcome = event.outcome.as_str(),
        image = event.image_arn.as_deref().unwrap_or(""),
        reason = %event.reason,
        "schedule fired"
    );
}

/// The start condition `EXPRESSION_MATCH_AND_DEPENDENCY_UPDATES_AVAILABLE`: resolve the recipe
/// now and compare with the pipeline's last build.
fn dependency_decision(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    pipeline: &ImagePipeline,
) -> CoreResult<Decision> {
    let recipe = &pipeline.definition.recipe;
    let current = resolve_recipe(tx, caller, recipe.kind, &recipe.arn)?;
    let pipeline_arn = pipeline.arn.to_string();
    // Images are named after their recipe, so the pipeline's images are among these.
    let images: Vec<Image> = list_own::<Image>(
        tx,
        caller,
        ResourceKind::Image,
        Some(&current.recipe.arn().name),
        None,
    )?
    .into_iter()
    .filter(|i| i.pipeline_arn.as_deref() == Some(pipeline_arn.as_str()))
    .collect();
    let last = last_build(&images).map(|(image, deps)| (image.arn.to_string(), deps));
    Ok(decide(
        StartCondition::ExpressionMatchAndDependencyUpdatesAvailable,
        &current.dependencies(),
        last.as_ref().map(|(arn, deps)| (arn.as_str(), deps)),
    ))
}
