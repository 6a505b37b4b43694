//! Build workers as their own processes on one PostgreSQL database: `kiln serve
//! --build-concurrency 0` queues, a `kiln worker` (another data directory) builds; an idle
//! worker sleeps until a build is queued, and then claims it at once; a worker killed with
//! SIGKILL loses its lease and its build ends FAILED naming it while another worker goes on;
//! two servers' schedulers on one database and one test clock fire each minute once.
//!
//! Runs when `KILN_TEST_DATABASE_URL` names a server; fails instead of skipping when
//! `KILN_TEST_REQUIRE_POSTGRES=1`. Builds run real build instances (root).

mod common;

use aws_sdk_imagebuilder::types::{ImageStatus, PipelineExecutionStartCondition, Schedule};
use aws_sdk_imagebuilder::Client;
use common::worker::{cpu_time, is_empty, WorkerProcess};
use common::{Server, BUSYBOX};
use kiln_store::testing::TestDatabase;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A recipe of one component running `script` in its build phase, and an infrastructure
/// configuration: what an image needs.
async fn recipe(client: &Client, name: &str, script: &str) -> (String, String) {
    let recipe = common::bash_recipe(client, name, BUSYBOX, &[script]).await;
    (recipe, common::create_infra(client, name).await)
}

async fn create_image(client: &Client, (recipe, infra): &(String, String)) -> String {
    common::create_image(client, recipe, infra).await
}

async fn status(client: &Client, arn: &str) -> (ImageStatus, String) {
    let image = client
        .get_image()
        .image_build_version_arn(arn)
        .send()
        .await
        .expect("GetImage");
    let state = image.image().and_then(|i| i.state()).expect("a state");
    (
        state.status().cloned().expect("a status"),
        state.reason().unwrap_or_default().to_string(),
    )
}

/// Polls the image until `done` says so; answers the status, reason and time it took.
async fn wait_until(
    client: &Client,
    arn: &str,
    timeout: Duration,
    done: impl Fn(&ImageStatus) -> bool,
) -> (ImageStatus, String, Duration) {
    let began = Instant::now();
    loop {
        let (st, reason) = status(client, arn).await;
        if done(&st) {
            return (st, reason, began.elapsed());
        }
        assert!(
            began.elapsed() < timeout,
            "{arn} still {st:?} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_final(status: &ImageStatus) -> bool {
    matches!(
        status,
        ImageStatus::Available | ImageStatus::Failed | ImageStatus::Cancelled
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_separate_worker_builds_what_a_server_without_builds_queues() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let server = Server::start_with_args("", &["--database", &db.url, "--build-concurrency", "0"]);
    let worker = WorkerProcess::start(&db.url, &["--build-concurrency", "1"]);
    assert!(worker.id.contains("/pid-"), "{}", worker.id);
    let client = server.client();
    let parts = recipe(&client, "quick", "echo built by a worker").await;

    // Idle, the worker sleeps: no polling loop on the database.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, began) = (cpu_time(worker.pid()), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let used = cpu_time(worker.pid()) - before;
    let share = used.as_secs_f64() / began.elapsed().as_secs_f64();
    assert!(
        share < 0.01,
        "an idle worker used {:.2}% of a core ({used:?})",
        share * 100.0
    );

    // Queued through the server, claimed by the worker at once (woken, not polled).
    let arn = create_image(&client, &parts).await;
    let (_, _, claimed_in) = wait_until(&client, &arn, Duration::from_secs(10), |s| {
        *s != ImageStatus::Pending
    })
    .await;
    eprintln!(
        "idle: {used:?} of CPU in {:?}; claimed {claimed_in:?} after CreateImage",
        began.elapsed()
    );
    assert!(
        claimed_in < Duration::from_millis(2500),
        "the worker claimed the build after {claimed_in:?}"
    );
    let (st, reason, _) = wait_until(&client, &arn, Duration::from_secs(180), is_final).await;
    assert_eq!(st, ImageStatus::Available, "{reason}\n{}", worker.log());
    // Built on the worker's machine, not the server's.
    assert!(
        is_empty(&server.data_dir().join("logs")),
        "the server ran no build"
    );
    let built_here = std::fs::read_dir(worker.data_dir().join("logs")).map_or(0, |d| d.count());
    assert_eq!(built_here, 1, "the worker ran it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_s_build_fails_naming_it_and_another_worker_goes_on() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let lease = ["--lease-seconds", "3"];
    let server = server_without_builds(&db, &lease);
    let client = server.client();
    let mut lost = WorkerProcess::start(&db.url, &["--build-concurrency", "1", lease[0], lease[1]]);
    let slow = recipe(&client, "slow", "sleep 300").await;
    let arn = create_image(&client, &slow).await;
    wait_until(&client, &arn, Duration::from_secs(60), |s| {
        *s == ImageStatus::Building
    })
    .await;
    // The second worker starts once the first holds the slow build.
    let survivor = WorkerProcess::start(&db.url, &["--build-concurrency", "1", lease[0], lease[1]]);
    let instances = lost.data_dir().join("instances");
    let began = Instant::now();
    while is_empty(&instances) {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no build instance"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    lost.kill();
    let (st, reason, took) = wait_until(&client, &arn, Duration::from_secs(30), is_final).await;
    assert_eq!(st, ImageStatus::Failed, "{reason}");
    assert!(
        reason.contains(&lost.id) && reason.contains("stopped renewing its lease"),
        "the reason names the lost worker {}: {reason}",
        lost.id
    );
    eprintln!("FAILED {took:?} after the kill: {reason}");
    assert!(
        took < Duration::from_secs(3 + 6),
        "FAILED {took:?} after the kill, lease 3 s"
    );

    // The other worker builds on.
    let quick = recipe(&client, "after", "echo still building").await;
    let next = create_image(&client, &quick).await;
    let (st, why, _) = wait_until(&client, &next, Duration::from_secs(180), is_final).await;
    assert_eq!(st, ImageStatus::Available, "{why}\n{}", survivor.log());

    // The lost machine comes back: its start-up recovery reaps the instance it left, and the
    // build stays as the lease keeper ended it.
    assert!(!is_empty(&instances), "the killed worker left its instance");
    lost.restart();
    assert!(
        is_empty(&instances),
        "the instance was reaped:\n{}",
        lost.log()
    );
    let (st, again) = status(&client, &arn).await;
    assert_eq!((st, again), (ImageStatus::Failed, reason));
    lost.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_cut_off_past_its_lease_stops_the_build_it_lost() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let lease = ["--lease-seconds", "3"];
    let server = server_without_builds(&db, &lease);
    let client = server.client();
    let worker = WorkerProcess::start(&db.url, &["--build-concurrency", "1", lease[0], lease[1]]);
    let slow = recipe(&client, "slow", "sleep 300").await;
    let arn = create_image(&client, &slow).await;
    wait_until(&client, &arn, Duration::from_secs(60), |s| {
        *s == ImageStatus::Building
    })
    .await;
    let instances = worker.data_dir().join("instances");
    let began = Instant::now();
    while is_empty(&instances) {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no build instance"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Frozen, the worker neither renews its lease nor sees what happens meanwhile.
    worker.signal(libc::SIGSTOP);
    let (st, reason, _) = wait_until(&client, &arn, Duration::from_secs(30), is_final).await;
    assert_eq!(st, ImageStatus::Failed);
    assert!(reason.contains(&worker.id), "{reason}");
    worker.signal(libc::SIGCONT);
    // Back, it finds the build is no longer its own: it stops it and tears its instance down.
    let began = Instant::now();
    while !is_empty(&instances) {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the lost build's instance still runs:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status(&client, &arn).await,
        (ImageStatus::Failed, reason),
        "the worker did not overwrite the reason"
    );
    // And it goes on working.
    let quick = recipe(&client, "after", "echo back").await;
    let next = create_image(&client, &quick).await;
    let (st, why, _) = wait_until(&client, &next, Duration::from_secs(180), is_final).await;
    assert_eq!(st, ImageStatus::Available, "{why}\n{}", worker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stopped_with_sigterm_ends_its_builds_interrupted() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let server = Server::start_with_args("", &["--database", &db.url, "--build-concurrency", "0"]);
    let client = server.client();
    let mut worker = WorkerProcess::start(&db.url, &["--build-concurrency", "1"]);
    let slow = recipe(&client, "slow", "sleep 300").await;
    let arn = create_image(&client, &slow).await;
    wait_until(&client, &arn, Duration::from_secs(60), |s| {
        *s == ImageStatus::Building
    })
    .await;
    let began = Instant::now();
    worker.stop();
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        began.elapsed()
    );
    let (st, reason) = status(&client, &arn).await;
    assert_eq!(st, ImageStatus::Failed);
    assert!(reason.contains("interrupted"), "{reason}");
    assert!(is_empty(&worker.data_dir().join("instances")), "torn down");
    assert!(
        worker.log().contains("kiln worker stopped"),
        "{}",
        worker.log()
    );
}

fn set_clock(path: &std::path::Path, instant: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, instant).expect("writing the clock");
    std::fs::rename(&temp, path).expect("moving the clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_on_one_database_fire_each_minute_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = dir.path().join("clock");
    set_clock(&clock, "2030-01-01T10:00:30Z");
    let clock_arg = clock.to_str().expect("a UTF-8 path");
    let args = [
        "--database",
        &db.url,
        "--build-concurrency",
        "0",
        "--clock-file",
        clock_arg,
    ];
    let (a, b) = (
        Server::start_with_args("", &args),
        Server::start_with_args("", &args),
    );
    let (ca, cb) = (a.client(), b.client());
    let (recipe, infra) = recipe(&ca, "cron", "true").await;
    let pipeline = ca
        .create_image_pipeline()
        .name("every-minute")
        .image_recipe_arn(recipe)
        .infrastructure_configuration_arn(infra)
        .schedule(
            Schedule::builder()
                .schedule_expression("cron(* * * * ? *)")
                .pipeline_execution_start_condition(
                    PipelineExecutionStartCondition::ExpressionMatchOnly,
                )
                .build(),
        )
        .send()
        .await
        .expect("a pipeline")
        .image_pipeline_arn
        .expect("its ARN");
    let images = |client: Client| {
        let pipeline = pipeline.clone();
        async move {
            client
                .list_image_pipeline_images()
                .image_pipeline_arn(pipeline)
                .max_results(100)
                .send()
                .await
                .expect("ListImagePipelineImages")
                .image_summary_list()
                .iter()
                .map(|s| s.date_created().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    const MINUTES: usize = 5;
    for minute in 1..=MINUTES {
        set_clock(&clock, &format!("2030-01-01T10:0{minute}:00Z"));
        let began = Instant::now();
        loop {
            let seen = images(if minute % 2 == 0 {
                ca.clone()
            } else {
                cb.clone()
            })
            .await;
            if seen.len() >= minute {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "minute {minute}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Both schedulers look every 50 ms on a test clock: a second firing would show.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let seen = images(ca.clone()).await;
        assert_eq!(seen.len(), minute, "one image per minute: {seen:?}");
    }
    let created: BTreeSet<String> = images(cb.clone()).await.into_iter().collect();
    assert_eq!(
        created.len(),
        MINUTES,
        "each minute's own image: {created:?}"
    );
}

#[test]
fn a_worker_without_a_shared_database_is_refused() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["worker", "--data-dir"])
        .arg(data.path().join("data"))
        .env_remove("KILN_DATABASE")
        .output()
        .expect("running kiln worker");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kiln worker needs a shared database: --database postgres://"),
        "{stderr}"
    );
    assert!(
        !data.path().join("data").join("kiln.db").exists(),
        "no SQLite database was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_builds_queues_them_and_still_answers_its_own_endpoints() {
    let server = Server::start_with_args("", &["--build-concurrency", "0"]);
    let client = server.client();
    let parts = recipe(&client, "waits", "true").await;
    let arn = create_image(&client, &parts).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status(&client, &arn).await.0,
        ImageStatus::Pending,
        "nothing builds"
    );
    let path = format!(
        "/kiln/v1/logs?imageBuildVersionArn={}",
        percent_encoding::utf8_percent_encode(&arn, percent_encoding::NON_ALPHANUMERIC)
    );
    let answer = server.raw("GET", &path, b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("x-kiln-image-status"), Some("PENDING"));
}

/// An API server on `db` that runs no builds, with these lease flags.
fn server_without_builds(db: &TestDatabase, lease: &[&str]) -> Server {
    let mut args = vec!["--database", db.url.as_str(), "--build-concurrency", "0"];
    args.extend_from_slice(lease);
    Server::start_with_args("", &args)
}
