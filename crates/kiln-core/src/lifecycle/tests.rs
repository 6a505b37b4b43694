//! The engine on a real (SQLite) store: a policy run applied image by image, a cancel between
//! two images, one execution per policy at a time, the compare-and-set claim of a due run.

use super::run::{step, Registries, Step};
use super::start::{claim_policy_run, start_policy_run};
use crate::lifecycle_records;
use crate::Core;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::lifecycle::{
    ActionType, ExecutionStatus, Filter, FilterType, IncludeResources, LifecycleExecution,
    LifecyclePolicy, PolicyResourceType, PolicyRule, PolicyStatus, RecipeSelection,
    ResourceSelection, DAY_MILLIS,
};
use kiln_store::TxnExt;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const NOW: i64 = 1_000 * DAY_MILLIS;

struct NoRegistries;

impl Registries for NoRegistries {
    fn delete(&self, _: &str, _: &[String]) -> Result<(), String> {
        Ok(())
    }
}

fn image(build: u32, age_days: i64) -> Image {
    let arn = Arn::new(REGION, ACCOUNT, ResourceKind::Image, "web")
        .with_version("1.0.0")
        .with_build(build);
    Image {
        status: ImageStatus::Available,
        recipe_arn: "r".into(),
        infrastructure_configuration_arn: "i".into(),
        image_tests_enabled: false,
        date_created: NOW - age_days * DAY_MILLIS,
        build_id: format!("build{build}"),
        ..Image::blank(arn)
    }
}

fn policy() -> LifecyclePolicy {
    LifecyclePolicy {
        arn: Arn::new(REGION, ACCOUNT, ResourceKind::LifecyclePolicy, "p"),
        name: "p".into(),
        description: None,
        status: PolicyStatus::Enabled,
        execution_role: "r".into(),
        resource_type: PolicyResourceType::AmiImage,
        rules: vec![PolicyRule {
            action: ActionType::Deprecate,
            include: IncludeResources::default(),
            filter: Filter {
                kind: FilterType::Age,
                value: 10,
                unit: None,
                retain_at_least: None,
            },
            exclusions: None,
        }],
        selection: ResourceSelection::Recipes(vec![RecipeSelection {
            name: "web".into(),
            semantic_version: "1.x.x".into(),
        }]),
        date_created: 0,
        date_updated: None,
        date_last_run: None,
        next_run: Some(NOW),
    }
}

fn setup() -> (tempfile::TempDir, Core) {
    let dir = tempfile::tempdir().unwrap();
    let core = Core::open(&dir.path().join("data"), kiln_store::sqlite::Sync::Normal).unwrap();
    core.store
        .write(|tx| {
            for b in 1..=4 {
                tx.put(&image(b, 20 + i64::from(b)))?;
            }
            tx.put(&image(5, 1))?;
            tx.put(&policy())
        })
        .unwrap()
        .unwrap();
    (dir, core)
}

fn execution(core: &Core, id: &str) -> LifecycleExecution {
    core.store
        .read(|tx| lifecycle_records::get(tx, ACCOUNT, REGION, id))
        .unwrap()
        .unwrap()
        .unwrap()
}

fn status_of(core: &Core, build: u32) -> ImageStatus {
    let arn = image(build, 0).arn.to_string();
    core.store
        .read(|tx| tx.get::<Image>(&arn))
        .unwrap()
        .unwrap()
        .unwrap()
        .status
}

#[test]
fn a_run_applies_its_plan_one_image_per_step() {
    let (_dir, core) = setup();
    let id = core
        .store
        .write(|tx| start_policy_run(tx, &policy(), NOW))
        .unwrap()
        .unwrap();
    let key = LifecycleExecution::key(REGION, ACCOUNT, &id).to_string();
    // Four images are old enough (newest first: 1, 2, 3, 4); image 5 is not.
    assert_eq!(execution(&core, &id).plan.len(), 4);
    assert_eq!(
        step(&core.store, &key, &NoRegistries, NOW).unwrap(),
        Step::Progressed
    );
    assert_eq!(execution(&core, &id).resources.len(), 1);
    assert_eq!(status_of(&core, 1), ImageStatus::Deprecated);
    assert_eq!(status_of(&core, 2), ImageStatus::Available);
    while step(&core.store, &key, &NoRegistries, NOW).unwrap() == Step::Progressed {}
    let done = execution(&core, &id);
    assert_eq!(done.status, ExecutionStatus::Success);
    assert_eq!(done.resources.len(), 4);
    for b in 1..=4 {
        assert_eq!(status_of(&core, b), ImageStatus::Deprecated);
    }
    assert_eq!(status_of(&core, 5), ImageStatus::Available);
}

#[test]
fn a_cancel_between_images_leaves_the_rest_untouched() {
    let (_dir, core) = setup();
    let id = core
        .store
        .write(|tx| start_policy_run(tx, &policy(), NOW))
        .unwrap()
        .unwrap();
    let key = LifecycleExecution::key(REGION, ACCOUNT, &id).to_string();
    assert_eq!(
        step(&core.store, &key, &NoRegistries, NOW).unwrap(),
        Step::Progressed
    );
    core.store
        .write(|tx| {
            let mut e = lifecycle_records::get(tx, ACCOUNT, REGION, &id)?.unwrap();
            lifecycle_records::request_cancel(tx, &mut e, "asked", NOW)
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        step(&core.store, &key, &NoRegistries, NOW).unwrap(),
        Step::Finished
    );
    let cancelled = execution(&core, &id);
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    // The image processed before the cancel keeps its action; the others get no row.
    assert_eq!(cancelled.resources.len(), 1);
    assert_eq!(status_of(&core, 1), ImageStatus::Deprecated);
    for b in 2..=4 {
        assert_eq!(status_of(&core, b), ImageStatus::Available);
    }
}

#[test]
fn a_due_run_is_claimed_once_and_a_running_execution_is_resumed() {
    let (_dir, core) = setup();
    let arn = policy().arn.to_string();
    let first = core
        .store
        .write(|tx| claim_policy_run(tx, &arn, NOW, NOW + 5))
        .unwrap()
        .unwrap()
        .expect("claimed");
    // The same due time is claimed once (another worker's compare-and-set fails).
    let again = core
        .store
        .write(|tx| claim_policy_run(tx, &arn, NOW, NOW + 6))
        .unwrap()
        .unwrap();
    assert_eq!(again, None);
    let p: LifecyclePolicy = core
        .store
        .read(|tx| tx.get(&arn))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(p.next_run, Some(NOW + DAY_MILLIS));
    assert_eq!(p.date_last_run, Some(NOW + 5));
    // The next day's run, while the first has not ended, resumes it instead of a second one.
    let resumed = core
        .store
        .write(|tx| claim_policy_run(tx, &arn, NOW + DAY_MILLIS, NOW + DAY_MILLIS))
        .unwrap()
        .unwrap();
    assert_eq!(resumed.as_deref(), Some(first.as_str()));
    let all = core
        .store
        .read(|tx| lifecycle_records::list_of_policy(tx, ACCOUNT, REGION, &arn))
        .unwrap()
        .unwrap();
    assert_eq!(all.len(), 1);
}

#[test]
fn an_error_fails_the_row_and_the_execution_and_the_others_go_on() {
    let (_dir, core) = setup();
    let mut p = policy();
    p.rules[0].action = ActionType::Delete;
    let kept = image(2, 0).arn.to_string();
    core.store
        .write(|tx| {
            tx.put(&p)?;
            // Something refers to image 2: deleting it fails, as DeleteImage would refuse it.
            tx.set_references(
                "arn:aws:imagebuilder:us-east-1:123456789012:x/holder",
                &[kept],
            )
        })
        .unwrap()
        .unwrap();
    let id = core
        .store
        .write(|tx| start_policy_run(tx, &p, NOW))
        .unwrap()
        .unwrap();
    let key = LifecycleExecution::key(REGION, ACCOUNT, &id).to_string();
    while step(&core.store, &key, &NoRegistries, NOW).unwrap() == Step::Progressed {}
    let done = execution(&core, &id);
    assert_eq!(done.status, ExecutionStatus::Failed);
    let failed: Vec<_> = done
        .resources
        .iter()
        .filter(|r| r.status == kiln_domain::resources::lifecycle::ResourceStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("used by"));
    assert_eq!(status_of(&core, 2), ImageStatus::Available);
    for b in [1, 3, 4] {
        assert_eq!(status_of(&core, b), ImageStatus::Deleted);
    }
}
