//! The lease keeper's decisions on a real service and a clock the test sets: a lost worker's
//! build ends FAILED naming the worker and when it was last seen, with its pipeline's last run
//! kept in step; a renewed lease is kept; a deletion a lost worker had claimed is queued again;
//! a build that ended before its worker was lost only leaves the queue. Runs without root
//! (the recording fake) and on SQLite: the keeper's rules do not depend on the backend (the
//! store suite checks the leases themselves on both).

use kiln_api::Service;
use kiln_core::clock::ManualClock;
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::pipeline::ImagePipeline;
use kiln_instance::RecordingPrivileged;
use kiln_store::TxnExt;
use kiln_wire::{Operation, RequestContext};
use kiln_worker::{Worker, WorkerConfig};
use serde_json::{json, Value};
use std::sync::Arc;

const NOW: i64 = 1_893_492_000_000; // 2030-01-01T10:00:00Z

fn call(svc: &Service, op: Operation, input: Value) -> Value {
    let ctx = RequestContext {
        request_id: "r".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        now_millis: NOW,
        valid_until: Default::default(),
        ..Default::default()
    };
    let out = svc.call(op, &ctx, input).expect("call succeeds");
    serde_json::from_str(&out).expect("JSON")
}

fn image(svc: &Service, arn: &str) -> Option<Image> {
    svc.store.read(|tx| tx.get::<Image>(arn)).unwrap().unwrap()
}

#[test]
fn the_builds_of_a_lost_worker_end_failed_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(NOW));
    let svc = Arc::new(
        Service::open(&dir.path().join("data"), kiln_store::sqlite::Sync::Normal)
            .unwrap()
            .with_clock(clock.clone()),
    );
    let component = call(
        &svc,
        Operation::CreateComponent,
        json!({"name": "comp", "semanticVersion": "1.0.0", "platform": "Linux", "clientToken": "c",
               "data": "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: S, action: ExecuteBash, inputs: {commands: ['true']}}\n"}),
    )["componentBuildVersionArn"]
        .clone();
    let recipe = call(
        &svc,
        Operation::CreateImageRecipe,
        json!({"name": "rcp", "semanticVersion": "1.0.0", "clientToken": "r",
               "parentImage": "arn:aws:imagebuilder:us-east-1:aws:image/busybox-x86/x.x.x",
               "components": [{"componentArn": component}]}),
    )["imageRecipeArn"]
        .clone();
    let infra = call(
        &svc,
        Operation::CreateInfrastructureConfiguration,
        json!({"name": "infra", "instanceProfileName": "p", "clientToken": "i"}),
    )["infrastructureConfigurationArn"]
        .clone();
    let pipeline = call(
        &svc,
        Operation::CreateImagePipeline,
        json!({"name": "pipe", "clientToken": "p", "imageRecipeArn": recipe,
               "infrastructureConfigurationArn": infra}),
    )["imagePipelineArn"]
        .as_str()
        .unwrap()
        .to_string();
    let start = |token: &str| {
        call(
            &svc,
            Operation::StartImagePipelineExecution,
            json!({"imagePipelineArn": pipeline, "clientToken": token}),
        )["imageBuildVersionArn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // This process's worker (nothing to recover yet), with no build threads: the test claims.
    let worker = Worker::open(
        svc.core.clone(),
        WorkerConfig::new(&dir.path().join("data")),
        Arc::new(RecordingPrivileged::new()),
    )
    .unwrap();
    let (lost, renewed, deleted, ended) = (start("a"), start("b"), start("c"), start("d"));
    let (dead, alive) = ("machine-x/pid-1", "machine-y/pid-2");
    svc.store
        .write(|tx| -> Result<(), kiln_store::StoreError> {
            for (arn, who) in [
                (&lost, dead),
                (&renewed, alive),
                (&deleted, dead),
                (&ended, dead),
            ] {
                assert_eq!(
                    tx.claim_build(who, NOW, 3_000)?.as_deref(),
                    Some(arn.as_str())
                );
            }
            let mut building: Image = tx.get(&lost)?.unwrap();
            building.advance(ImageStatus::Building, None, NOW).unwrap();
            tx.put(&building)?;
            let mut gone: Image = tx.get(&deleted)?.unwrap();
            gone.status = ImageStatus::Available;
            gone.advance(ImageStatus::Deleted, None, NOW).unwrap();
            tx.put(&gone)?;
            let mut done: Image = tx.get(&ended)?.unwrap();
            done.status = ImageStatus::Available;
            tx.put(&done)?;
            Ok(())
        })
        .unwrap()
        .unwrap();

    // Within the lease nothing happens.
    clock.set(NOW + 2_000);
    kiln_worker::lease::end_lost(worker.shared());
    assert_eq!(image(&svc, &lost).unwrap().status, ImageStatus::Building);
    // One worker renews; the other is silent past its lease.
    svc.store
        .write(|tx| tx.renew_leases(alive, NOW + 2_000, NOW + 5_000))
        .unwrap()
        .unwrap();
    clock.set(NOW + 4_000);
    kiln_worker::lease::end_lost(worker.shared());

    let failed = image(&svc, &lost).unwrap();
    assert_eq!(failed.status, ImageStatus::Failed);
    assert_eq!(
        failed.reason.as_deref(),
        Some(
            "the build worker machine-x/pid-1 stopped renewing its lease \
             (last seen 2030-01-01T10:00:00.000Z); the build was abandoned"
        )
    );
    // The lost worker never closed the build's log in the database: its end is written for it.
    let log = svc
        .store
        .read(|tx| tx.read_build_log(&failed.build_id, 0, 1 << 20))
        .unwrap()
        .unwrap();
    assert!(log.complete, "the log is closed");
    assert!(
        String::from_utf8_lossy(&log.data).ends_with(
            "FAILED: the build worker machine-x/pid-1 stopped renewing its lease \
             (last seen 2030-01-01T10:00:00.000Z); the build was abandoned\n"
        ),
        "{:?}",
        String::from_utf8_lossy(&log.data)
    );
    assert_eq!(
        image(&svc, &renewed).unwrap().status,
        ImageStatus::Pending,
        "a renewed lease is kept"
    );
    assert_eq!(image(&svc, &ended).unwrap().status, ImageStatus::Available);
    let queued = svc.store.read(|tx| tx.queued_builds()).unwrap().unwrap();
    assert_eq!(
        queued,
        vec![
            (renewed.clone(), Some(alive.to_string())),
            (deleted.clone(), None),
        ],
        "the lost build and the ended one left the queue; the deletion waits for a worker"
    );
    // The pipeline's last run says what became of the lost build, as the worker would have.
    let pipe: ImagePipeline = svc
        .store
        .read(|tx| tx.get(&pipeline))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pipe.last_run_status.as_deref(), Some("FAILED"));
    drop(worker);
}
