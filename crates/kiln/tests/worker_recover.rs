//! What a worker does at start with what a dead process left: claimed builds end FAILED
//! "interrupted", unclaimed ones stay queued, deletions finish, leftover instances are torn
//! down; on a shared database, builds other machines claimed are left alone. Runs without
//! root: the privileged calls go to the recording fake.

use kiln_api::Service;
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_instance::RecordingPrivileged;
use kiln_store::TxnExt;
use kiln_wire::{Operation, RequestContext};
use kiln_worker::{Worker, WorkerConfig};
use serde_json::{json, Value};
use std::sync::Arc;

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "r".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        now_millis: chrono::Utc::now().timestamp_millis(),
        valid_until: Default::default(),
        ..Default::default()
    }
}

fn call(svc: &Service, op: Operation, input: Value) -> Value {
    let out = svc.call(op, &ctx(), input).expect("call succeeds");
    serde_json::from_str(&out).expect("JSON")
}

fn status(svc: &Service, arn: &str) -> Option<(ImageStatus, Option<String>)> {
    svc.store
        .read(|tx| tx.get::<Image>(arn))
        .unwrap()
        .unwrap()
        .map(|i| (i.status, i.reason))
}

/// A component, recipe and infrastructure configuration; answers a function that creates an
/// image of them with the given client token.
fn image_maker(svc: &Service) -> impl Fn(&str) -> String + '_ {
    let component = call(
        svc,
        Operation::CreateComponent,
        json!({"name": "comp", "semanticVersion": "1.0.0", "platform": "Linux", "clientToken": "c",
               "data": "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: S, action: ExecuteBash, inputs: {commands: ['true']}}\n"}),
    )["componentBuildVersionArn"]
        .clone();
    let recipe = call(
        svc,
        Operation::CreateImageRecipe,
        json!({"name": "rcp", "semanticVersion": "1.0.0", "clientToken": "r",
               "parentImage": "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
               "components": [{"componentArn": component}]}),
    )["imageRecipeArn"]
        .clone();
    let infra = call(
        svc,
        Operation::CreateInfrastructureConfiguration,
        json!({"name": "infra", "instanceProfileName": "p", "clientToken": "i"}),
    )["infrastructureConfigurationArn"]
        .clone();
    move |token: &str| -> String {
        call(
            svc,
            Operation::CreateImage,
            json!({"imageRecipeArn": recipe, "infrastructureConfigurationArn": infra, "clientToken": token}),
        )["imageBuildVersionArn"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[test]
fn on_a_shared_database_a_worker_recovers_only_its_own_machine_s_builds() {
    let Some(db) = kiln_store::testing::TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = kiln_store::Database::parse(&db.url).unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let svc = Arc::new(
        Service::open_database(&data_a, Some(&database), kiln_store::sqlite::Sync::Normal).unwrap(),
    );
    let create = image_maker(&svc);
    let (theirs, mine) = (create("theirs"), create("mine"));
    std::fs::create_dir_all(&data_b).unwrap();
    let machine_a = kiln_worker::machine_id(&data_a).unwrap();
    let machine_b = kiln_worker::machine_id(&data_b).unwrap();
    assert_ne!(machine_a, machine_b);
    assert_eq!(
        kiln_worker::machine_id(&data_a).unwrap(),
        machine_a,
        "the id is kept"
    );
    let other_worker = format!("{machine_b}/pid-7");
    svc.store
        .write(|tx| -> Result<(), kiln_store::StoreError> {
            for (arn, worker) in [
                (&theirs, other_worker.clone()),
                (&mine, format!("{machine_a}/pid-8")),
            ] {
                assert_eq!(
                    tx.claim_build(&worker, 0, 60_000)?.as_deref(),
                    Some(arn.as_str())
                );
                let mut image: Image = tx.get(arn)?.unwrap();
                image.advance(ImageStatus::Building, None, 1).unwrap();
                tx.put(&image)?;
            }
            Ok(())
        })
        .unwrap()
        .unwrap();

    let fake = Arc::new(RecordingPrivileged::new());
    let worker = Worker::open(svc.core.clone(), WorkerConfig::new(&data_a), fake).unwrap();

    let (st, reason) = status(&svc, &mine).unwrap();
    assert_eq!(
        st,
        ImageStatus::Failed,
        "this machine's own interrupted build"
    );
    assert!(reason.unwrap().contains("interrupted"));
    assert_eq!(
        status(&svc, &theirs).unwrap().0,
        ImageStatus::Building,
        "another machine's build runs on"
    );
    let queued = svc.store.read(|tx| tx.queued_builds()).unwrap().unwrap();
    assert_eq!(queued, vec![(theirs.clone(), Some(other_worker))]);
    drop(worker);
}

#[test]
fn a_new_worker_finishes_what_a_dead_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Arc::new(Service::open(&data, kiln_store::sqlite::Sync::Normal).unwrap());
    let create = image_maker(&svc);
    let (claimed, waiting, finished) = (create("a"), create("b"), create("c"));
    assert!(claimed.ends_with("/1.0.0/1") && waiting.ends_with("/1.0.0/2"));
    // The dead process had claimed the first build and moved it to BUILDING.
    svc.store
        .write(|tx| -> Result<(), kiln_store::StoreError> {
            assert_eq!(
                tx.claim_build("dead", 0, 60_000)?.as_deref(),
                Some(claimed.as_str())
            );
            let mut image: Image = tx.get(&claimed)?.unwrap();
            image.advance(ImageStatus::Building, None, 1).unwrap();
            tx.put(&image)?;
            // The third was built and then deleted, but its removal never ran.
            tx.finish_build(&finished)?;
            let mut done: Image = tx.get(&finished)?.unwrap();
            done.status = ImageStatus::Available;
            done.advance(ImageStatus::Deleted, None, 2).unwrap();
            tx.put(&done)?;
            tx.enqueue_build(&finished, 3)
        })
        .unwrap()
        .unwrap();
    // An instance whose owner is gone.
    let leftover = data.join("instances/0123456789abcdef-build");
    std::fs::create_dir_all(leftover.join("upper")).unwrap();
    std::fs::write(
        leftover.join("instance.json"),
        r#"{"id":"0123456789abcdef-build","owner_pid":4294967,"owner_start":1,"cgroups":[],"hostname":"h","network":false}"#,
    )
    .unwrap();

    let fake = Arc::new(RecordingPrivileged::new());
    let worker = Worker::open(svc.core.clone(), WorkerConfig::new(&data), fake).unwrap();

    let (st, reason) = status(&svc, &claimed).unwrap();
    assert_eq!(st, ImageStatus::Failed);
    assert!(reason.unwrap().contains("interrupted"));
    assert_eq!(status(&svc, &waiting).unwrap().0, ImageStatus::Pending);
    assert_eq!(
        status(&svc, &finished),
        None,
        "the deleted image's record is gone"
    );
    let queued = svc.store.read(|tx| tx.queued_builds()).unwrap().unwrap();
    assert_eq!(
        queued,
        vec![(waiting.clone(), None)],
        "only the unclaimed build waits"
    );
    assert!(!leftover.exists(), "the leftover instance was reaped");
    drop(worker);
}
