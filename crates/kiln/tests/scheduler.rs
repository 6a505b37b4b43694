//! The scheduler on a real service (SQLite file, the API's handlers, so it lives beside the
//! binary that joins them) and a clock the tests set:
//! firings, start conditions, auto-disable, restarts and racing schedulers, without waiting for
//! real minutes. Builds do not run here (no worker); a test ends them the way the worker does
//! ([`finish`]). `tests/python/test_schedules.py` runs the same through `kiln serve` with real
//! builds.

use kiln_api::Service;
use kiln_core::clock::{Clock, ManualClock};
use kiln_core::images::sync_pipeline_status;
use kiln_core::scheduled::fire;
use kiln_domain::resources::image::{BuildType, Image, ImageStatus};
use kiln_domain::resources::pipeline::ImagePipeline;
use kiln_domain::resources::scheduled_run::ScheduleOutcome;
use kiln_scheduler::{Fired, Scheduler};
use kiln_store::TxnExt;
use kiln_wire::{Operation, RequestContext};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

fn at(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

struct Kiln {
    service: Arc<Service>,
    clock: Arc<ManualClock>,
    scheduler: Arc<Scheduler>,
}

impl Kiln {
    fn open(data: &Path, now: i64) -> Kiln {
        let clock = Arc::new(ManualClock::at(now));
        let service = Arc::new(
            Service::open(data, kiln_store::sqlite::Sync::Normal)
                .unwrap()
                .with_clock(clock.clone()),
        );
        let scheduler = Scheduler::new(service.core.clone());
        Kiln {
            service,
            clock,
            scheduler,
        }
    }

    fn call(&self, op: Operation, input: Value) -> Value {
        let ctx = RequestContext {
            request_id: "r".into(),
            account_id: ACCOUNT.into(),
            region: REGION.into(),
            now_millis: self.clock.now_millis(),
            valid_until: Default::default(),
            ..Default::default()
        };
        match self.service.call(op, &ctx, input) {
            Ok(out) => serde_json::from_str(&out).unwrap(),
            Err(e) => panic!("{op:?}: {} {}", e.kind.code(), e.message),
        }
    }

    fn run_due(&self) -> Vec<Fired> {
        self.scheduler.run_due().unwrap()
    }

    fn pipeline(&self, arn: &str) -> ImagePipeline {
        self.service
            .store
            .read(|tx| tx.get::<ImagePipeline>(arn))
            .unwrap()
            .unwrap()
            .unwrap()
    }

    fn image(&self, arn: &str) -> Image {
        self.service
            .store
            .read(|tx| tx.get::<Image>(arn))
            .unwrap()
            .unwrap()
            .unwrap()
    }

    /// Ends a build as the worker does: the image's status, then the pipeline's bookkeeping.
    fn finish(&self, image_arn: &str, status: ImageStatus) {
        let now = self.clock.now_millis();
        self.service
            .store
            .write(|tx| -> Result<(), kiln_store::StoreError> {
                let mut image: Image = tx.get(image_arn)?.unwrap();
                image.advance(status, None, now).unwrap();
                tx.put(&image)?;
                sync_pipeline_status(tx, &image, now).unwrap();
                Ok(())
            })
            .unwrap()
            .unwrap();
    }

    fn component(&self, version: &str) -> String {
        self.call(
            Operation::CreateComponent,
            json!({"name": "comp", "semanticVersion": version, "platform": "Linux",
                   "clientToken": format!("c-{version}"),
                   "data": "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: S, action: ExecuteBash, inputs: {commands: ['true']}}\n"}),
        )["componentBuildVersionArn"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A recipe whose component is `comp/x.x.x`, and an infrastructure configuration.
    fn recipe_and_infra(&self) -> (String, String) {
        self.component("1.0.0");
        let recipe = self.call(
            Operation::CreateImageRecipe,
            json!({"name": "rcp", "semanticVersion": "1.0.0", "clientToken": "r",
                   "parentImage": "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
                   "components": [{"componentArn": format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:component/comp/x.x.x")}]}),
        )["imageRecipeArn"]
            .as_str()
            .unwrap()
            .to_string();
        let infra = self.call(
            Operation::CreateInfrastructureConfiguration,
            json!({"name": "infra", "instanceProfileName": "p", "clientToken": "i"}),
        )["infrastructureConfigurationArn"]
            .as_str()
            .unwrap()
            .to_string();
        (recipe, infra)
    }

    fn create_pipeline(&self, name: &str, schedule: Value, extra: Value) -> String {
        let (recipe, infra) = match self.service.store.read(|tx| {
            tx.get_row(&format!(
                "arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image-recipe/rcp/1.0.0"
            ))
        }) {
            Ok(Ok(Some(_))) => (
                format!("arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image-recipe/rcp/1.0.0"),
                format!(
                    "arn:aws:imagebuilder:{REGION}:{ACCOUNT}:infrastructure-configuration/infra"
                ),
            ),
            _ => self.recipe_and_infra(),
        };
        let mut input = json!({"name": name, "clientToken": format!("p-{name}"),
                               "imageRecipeArn": recipe, "infrastructureConfigurationArn": infra,
                               "schedule": schedule});
        for (k, v) in extra.as_object().into_iter().flatten() {
            input[k] = v.clone();
        }
        self.call(Operation::CreateImagePipeline, input)["imagePipelineArn"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn get_pipeline(&self, arn: &str) -> Value {
        self.call(
            Operation::GetImagePipeline,
            json!({"imagePipelineArn": arn}),
        )["imagePipeline"]
            .clone()
    }
}

fn date_next_run(pipeline: &Value) -> Option<i64> {
    pipeline.get("dateNextRun").and_then(Value::as_str).map(at)
}

fn started(fired: &[Fired]) -> Vec<String> {
    fired
        .iter()
        .filter(|f| f.event.outcome == ScheduleOutcome::Started)
        .filter_map(|f| f.event.image_arn.clone())
        .collect()
}

#[test]
fn a_due_pipeline_starts_one_scheduled_build_with_its_image_tags() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::open(dir.path(), at("2030-01-01T09:59:30Z"));
    let arn = kiln.create_pipeline(
        "daily",
        json!({"scheduleExpression": "cron(0 10 * * ? *)",
               "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"}),
        json!({"imageTags": {"team": "platform"}}),
    );
    assert_eq!(
        date_next_run(&kiln.get_pipeline(&arn)),
        Some(at("2030-01-01T10:00:00Z"))
    );
    assert!(kiln.run_due().is_empty(), "not due yet");

    kiln.clock.set(at("2030-01-01T10:00:00Z"));
    let fired = kiln.run_due();
    let images = started(&fired);
    assert_eq!(images.len(), 1, "{fired:?}");
    assert!(kiln.run_due().is_empty(), "a due time fires once");

    let image = kiln.image(&images[0]);
    assert_eq!(image.build_type, BuildType::Scheduled);
    assert_eq!(image.pipeline_arn.as_deref(), Some(arn.as_str()));
    let got = kiln.call(
        Operation::GetImage,
        json!({"imageBuildVersionArn": images[0]}),
    );
    assert_eq!(got["image"]["buildType"], "SCHEDULED");
    assert_eq!(got["image"]["tags"]["team"], "platform");

    let pipeline = kiln.get_pipeline(&arn);
    assert_eq!(date_next_run(&pipeline), Some(at("2030-01-02T10:00:00Z")));
    assert_eq!(pipeline["lastRunStatus"], "PENDING");
    assert_eq!(
        pipeline["dateLastRun"].as_str().map(at),
        Some(at("2030-01-01T10:00:00Z"))
    );
}

#[test]
fn disabled_pipelines_never_fire_but_start_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::open(dir.path(), at("2030-01-01T09:00:00Z"));
    let arn = kiln.create_pipeline(
        "off",
        json!({"scheduleExpression": "cron(* * * * ? *)",
               "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"}),
        json!({"status": "DISABLED"}),
    );
    assert_eq!(date_next_run(&kiln.get_pipeline(&arn)), None);
    kiln.clock.advance(DAY);
    assert!(kiln.run_due().is_empty());
    let manual = kiln.call(
        Operation::StartImagePipelineExecution,
        json!({"imagePipelineArn": arn, "clientToken": "m"}),
    );
    assert!(manual["imageBuildVersionArn"].is_string());
    // Enabling it schedules it from now.
    let got = kiln.get_pipeline(&arn);
    kiln.call(
        Operation::UpdateImagePipeline,
        json!({"imagePipelineArn": arn, "clientToken": "u", "status": "ENABLED",
               "imageRecipeArn": got["imageRecipeArn"],
               "infrastructureConfigurationArn": got["infrastructureConfigurationArn"],
               "schedule": got["schedule"]}),
    );
    assert_eq!(
        date_next_run(&kiln.get_pipeline(&arn)),
        Some(kiln.clock.now_millis() / MINUTE * MINUTE + MINUTE)
    );
}

#[test]
fn a_restart_does_not_fire_again_and_missed_firings_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let arn;
    {
        let kiln = Kiln::open(dir.path(), at("2030-01-01T10:00:00Z"));
        arn = kiln.create_pipeline(
            "daily",
            json!({"scheduleExpression": "cron(0 10 * * ? *)",
                   "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"}),
            json!({}),
        );
        kiln.clock.set(at("2030-01-02T10:00:00Z"));
        assert_eq!(started(&kiln.run_due()).len(), 1);
    }
    // Kiln restarts at the same instant: the firing is already claimed.
    {
        let kiln = Kiln::open(dir.path(), at("2030-01-02T10:00:00Z"));
        assert!(kiln.run_due().is_empty(), "no second build after a restart");
    }
    // Kiln was down from the 2nd to the 6th at noon: four firings were missed.
    let kiln = Kiln::open(dir.path(), at("2030-01-06T12:00:00Z"));
    let fired = kiln.run_due();
    assert_eq!(
        started(&fired).len(),
        1,
        "missed firings run once: {fired:?}"
    );
    assert_eq!(fired[0].event.due, at("2030-01-03T10:00:00Z"));
    assert!(kiln.run_due().is_empty());
    assert_eq!(
        date_next_run(&kiln.get_pipeline(&arn)),
        Some(at("2030-01-07T10:00:00Z")),
        "then the schedule goes on from now"
    );
    let images = kiln.call(
        Operation::ListImagePipelineImages,
        json!({"imagePipelineArn": arn}),
    );
    assert_eq!(images["imageSummaryList"].as_array().unwrap().len(), 2);
}

#[test]
fn racing_schedulers_fire_each_due_time_once() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::open(dir.path(), at("2030-01-01T09:00:00Z"));
    let mut pipelines = Vec::new();
    for i in 0..40 {
        pipelines.push(kiln.create_pipeline(
            &format!("pipe-{i}"),
            json!({"scheduleExpression": "cron(0 10 * * ? *)",
                   "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"}),
            json!({}),
        ));
    }
    // The claim itself: a second firing of the same due time is refused.
    let due = at("2030-01-01T10:00:00Z");
    let claim = |now: i64| {
        kiln.service
            .store
            .write(|tx| fire(tx, &pipelines[0], due, now))
            .unwrap()
            .unwrap()
    };
    assert!(claim(due).is_some());
    assert!(claim(due).is_none());

    // Four schedulers on one database, all at the due time.
    kiln.clock.set(due);
    let schedulers: Vec<_> = (0..4)
        .map(|_| Scheduler::new(kiln.service.core.clone()))
        .collect();
    let fired: Vec<Fired> = std::thread::scope(|scope| {
        let handles: Vec<_> = schedulers
            .iter()
            .map(|s| scope.spawn(move || s.run_due().unwrap()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut images = started(&fired);
    assert_eq!(images.len(), 39, "{fired:?}");
    images.sort();
    images.dedup();
    assert_eq!(images.len(), 39);
    for p in &pipelines {
        assert_eq!(kiln.pipeline(p).date_next_run, Some(due + DAY));
    }
}

#[test]
fn dependency_updates_decide_whether_a_firing_builds() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::open(dir.path(), at("2030-01-01T09:00:00Z"));
    // The default start condition.
    let arn = kiln.create_pipeline(
        "updates",
        json!({"scheduleExpression": "cron(0 10 * * ? *)"}),
        json!({}),
    );
    let fire_next = |kiln: &Kiln| -> Fired {
        let next = kiln.pipeline(&arn).date_next_run.unwrap();
        kiln.clock.set(next);
        let mut fired = kiln.run_due();
        assert_eq!(fired.len(), 1, "{fired:?}");
        fired.remove(0)
    };

    let first = fire_next(&kiln);
    assert_eq!(first.event.outcome, ScheduleOutcome::Started);
    assert!(first.event.reason.contains("has not built an image yet"));
    let first_image = first.event.image_arn.clone().unwrap();
    kiln.finish(&first_image, ImageStatus::Available);

    let second = fire_next(&kiln);
    assert_eq!(second.event.outcome, ScheduleOutcome::Skipped, "{second:?}");
    assert!(second.event.reason.contains("no dependency updates"));
    assert!(second.event.reason.contains(&first_image));
    let recorded = kiln.pipeline(&arn).schedule_events;
    assert_eq!(recorded.last().unwrap().outcome, ScheduleOutcome::Skipped);
    assert_eq!(recorded.last().unwrap().reason, second.event.reason);

    // A newer version matching the recipe's comp/x.x.x filter.
    let newer = kiln.component("1.0.1");
    let third = fire_next(&kiln);
    assert_eq!(third.event.outcome, ScheduleOutcome::Started, "{third:?}");
    assert!(
        third.event.reason.contains(&newer),
        "{}",
        third.event.reason
    );
    let third_image = kiln.image(third.event.image_arn.as_deref().unwrap());
    let components: Vec<_> = third_image
        .snapshot
        .as_ref()
        .unwrap()
        .components
        .iter()
        .map(|c| c.arn.clone())
        .collect();
    assert_eq!(components, vec![newer.clone()]);
    assert_eq!(
        third_image.resolved_parent.as_deref(),
        Some("arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/1.0.0/1")
    );

    // That build failed: it did not deliver the update, so the next firing tries again.
    kiln.finish(&third_image.arn.to_string(), ImageStatus::Failed);
    let fourth = fire_next(&kiln);
    assert_eq!(fourth.event.outcome, ScheduleOutcome::Started, "{fourth:?}");
    kiln.finish(
        fourth.event.image_arn.as_deref().unwrap(),
        ImageStatus::Available,
    );
    assert_eq!(fire_next(&kiln).event.outcome, ScheduleOutcome::Skipped);
}

#[test]
fn consecutive_scheduled_failures_disable_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::open(dir.path(), at("2030-01-01T09:00:00Z"));
    let arn = kiln.create_pipeline(
        "flaky",
        json!({"scheduleExpression": "rate(1 hour)",
               "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY",
               "autoDisablePolicy": {"failureCount": 2}}),
        json!({}),
    );
    let fire_and_end = |status: ImageStatus| {
        kiln.clock.set(kiln.pipeline(&arn).date_next_run.unwrap());
        let images = started(&kiln.run_due());
        assert_eq!(images.len(), 1);
        kiln.finish(&images[0], status);
    };
    fire_and_end(ImageStatus::Failed);
    assert_eq!(kiln.get_pipeline(&arn)["consecutiveFailures"], 1);
    // A failed manual run leaves the count as it is.
    let manual = kiln.call(
        Operation::StartImagePipelineExecution,
        json!({"imagePipelineArn": arn, "clientToken": "m1"}),
    )["imageBuildVersionArn"]
        .as_str()
        .unwrap()
        .to_string();
    kiln.finish(&manual, ImageStatus::Failed);
    assert_eq!(kiln.get_pipeline(&arn)["consecutiveFailures"], 1);
    // A success resets it.
    fire_and_end(ImageStatus::Available);
    assert_eq!(
        kiln.get_pipeline(&arn).get("consecutiveFailures"),
        None,
        "zero failures: the member is absent, as AWS answers"
    );
    fire_and_end(ImageStatus::Failed);
    fire_and_end(ImageStatus::Failed);

    let pipeline = kiln.get_pipeline(&arn);
    assert_eq!(pipeline["status"], "DISABLED");
    assert_eq!(pipeline["consecutiveFailures"], 2);
    assert!(pipeline.get("dateNextRun").is_none(), "{pipeline}");
    let event = kiln.pipeline(&arn).schedule_events.pop().unwrap();
    assert_eq!(event.outcome, ScheduleOutcome::Disabled);
    assert!(
        event
            .reason
            .contains("2 consecutive failed scheduled builds"),
        "{}",
        event.reason
    );
    kiln.clock.advance(DAY);
    assert!(
        kiln.run_due().is_empty(),
        "a disabled pipeline does not fire"
    );
    assert_eq!(
        kiln.service
            .store
            .read(|tx| tx.earliest_run())
            .unwrap()
            .unwrap(),
        None
    );
}

#[test]
fn the_scheduler_thread_fires_on_time_and_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::open(dir.path(), at("2030-01-01T09:59:00Z"));
    let arn = kiln.create_pipeline(
        "every-minute",
        json!({"scheduleExpression": "cron(* * * * ? *)",
               "pipelineExecutionStartCondition": "EXPRESSION_MATCH_ONLY"}),
        json!({}),
    );
    kiln.scheduler.start().unwrap();
    kiln.clock.set(at("2030-01-01T10:00:00Z"));
    let began = Instant::now();
    while kiln.pipeline(&arn).date_last_run.is_none() {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the scheduler did not fire"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopping = Instant::now();
    kiln.scheduler.stop();
    assert!(stopping.elapsed() < Duration::from_secs(2));
    assert_eq!(
        kiln.pipeline(&arn).date_next_run,
        Some(at("2030-01-01T10:01:00Z"))
    );
}

#[test]
fn pipelines_stored_before_schedules_were_kept_get_their_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = Kiln::open(dir.path(), at("2030-01-01T09:00:00Z"));
    let arn = kiln.create_pipeline(
        "legacy",
        json!({"scheduleExpression": "cron(0 10 * * ? *)"}),
        json!({}),
    );
    let off = kiln.create_pipeline(
        "legacy-off",
        json!({"scheduleExpression": "cron(0 10 * * ? *)"}),
        json!({"status": "DISABLED"}),
    );
    // What a record written by an earlier Kiln looks like: no next run, not in the due set.
    kiln.service
        .store
        .write(|tx| -> Result<(), kiln_store::StoreError> {
            let mut pipeline: ImagePipeline = tx.get(&arn)?.unwrap();
            pipeline.date_next_run = None;
            tx.put(&pipeline)?;
            tx.set_next_run(&arn, None)
        })
        .unwrap()
        .unwrap();
    assert_eq!(kiln.scheduler.index_once().unwrap(), 2);
    assert_eq!(
        kiln.pipeline(&arn).date_next_run,
        Some(at("2030-01-01T10:00:00Z"))
    );
    assert_eq!(kiln.pipeline(&off).date_next_run, None);
    assert_eq!(kiln.scheduler.index_once().unwrap(), 0, "once per database");
    kiln.clock.set(at("2030-01-01T10:00:00Z"));
    assert_eq!(started(&kiln.run_due()).len(), 1);
}
