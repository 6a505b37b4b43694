//! Crash durability: a create the server acknowledged (HTTP 200 reached the client) survives
//! `kill -9` of the server, whatever it was doing at the time.
//!
//! Each cycle keeps eight writers creating infrastructure configurations as fast as they can,
//! kills the server with SIGKILL at an arbitrary moment a few hundred milliseconds in, restarts
//! it on the same data directory, and checks that every ARN acknowledged so far (in this cycle
//! and the earlier ones) can be read back. Requests in flight at the moment of the kill may or
//! may not have committed, so the stored count may exceed the acknowledged count, never fall
//! short of it.

mod common;

use aws_sdk_imagebuilder::Client;
use common::{list_all_infra, Server};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CYCLES: usize = 3;
const WRITERS: usize = 8;
/// Bounds each writer in case the kill never comes.
const WRITER_DEADLINE: Duration = Duration::from_secs(20);

/// 300 to 500 ms, varying from run to run so that the kill lands in different places.
fn kill_delay() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(300 + u64::from(nanos % 200))
}

/// Creates configurations until the server goes away; returns the acknowledged ARNs. A failure
/// before the kill is a real error and fails the test.
async fn writer(
    client: Client,
    cycle: usize,
    id: usize,
    killed: Arc<AtomicBool>,
) -> Result<Vec<String>, String> {
    let mut acknowledged = Vec::new();
    let started = Instant::now();
    for n in 0.. {
        if started.elapsed() > WRITER_DEADLINE {
            return Err(format!("writer {id}: the server was never killed"));
        }
        let result = client
            .create_infrastructure_configuration()
            .name(format!("cycle{cycle}-writer{id}-n{n}"))
            .instance_profile_name("profile")
            .send()
            .await;
        match result {
            Ok(output) => acknowledged.push(
                output
                    .infrastructure_configuration_arn
                    .ok_or_else(|| format!("writer {id}: a 200 without an ARN"))?,
            ),
            Err(_) if killed.load(Ordering::SeqCst) => break,
            Err(e) => return Err(format!("writer {id}: failed before the kill: {e:?}")),
        }
    }
    Ok(acknowledged)
}

async fn run_until_killed(server: &mut Server, cycle: usize) -> Vec<String> {
    let client = server.client();
    let killed = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(client.clone(), cycle, id, killed.clone())))
        .collect();
    tokio::time::sleep(kill_delay()).await;
    killed.store(true, Ordering::SeqCst);
    server.kill();
    let mut acknowledged = Vec::new();
    for writer in writers {
        match writer.await {
            Ok(Ok(arns)) => acknowledged.extend(arns),
            Ok(Err(message)) => panic!("cycle {cycle}: {message}"),
            Err(join_error) => panic!("cycle {cycle}: a writer panicked: {join_error}"),
        }
    }
    acknowledged
}

/// Gets every ARN, eight at a time; returns the ones that are missing.
async fn missing(client: &Client, arns: &[String]) -> Vec<String> {
    let chunk = arns.len().div_ceil(WRITERS).max(1);
    let readers: Vec<_> = arns
        .chunks(chunk)
        .map(|part| {
            let client = client.clone();
            let part = part.to_vec();
            tokio::spawn(async move {
                let mut missing = Vec::new();
                for arn in part {
                    let got = client
                        .get_infrastructure_configuration()
                        .infrastructure_configuration_arn(&arn)
                        .send()
                        .await;
                    let found = got
                        .ok()
                        .and_then(|o| o.infrastructure_configuration)
                        .is_some_and(|i| i.arn() == Some(arn.as_str()));
                    if !found {
                        missing.push(arn);
                    }
                }
                missing
            })
        })
        .collect();
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await.expect("a reader panicked"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9() {
    // The writers go as fast as they can, far beyond an account's default request rate and
    // quota; this test is about crashes, not limits.
    let mut server = Server::start_with_args(
        "",
        &[
            "--rate-limit",
            "0",
            "--quota",
            "infrastructure-configurations=unlimited",
        ],
    );
    let mut acknowledged: Vec<String> = Vec::new();
    for cycle in 0..CYCLES {
        let new = run_until_killed(&mut server, cycle).await;
        assert!(
            !new.is_empty(),
            "cycle {cycle}: no create was acknowledged before the kill"
        );
        let distinct: HashSet<&String> = new.iter().collect();
        assert_eq!(
            distinct.len(),
            new.len(),
            "cycle {cycle}: an ARN acknowledged twice"
        );
        acknowledged.extend(new);

        server.restart();
        let client = server.client();
        let lost = missing(&client, &acknowledged).await;
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} of {} acknowledged creates were lost, e.g. {:?}",
            lost.len(),
            acknowledged.len(),
            &lost[..lost.len().min(5)]
        );
        let stored = list_all_infra(&client).await;
        assert!(
            stored.len() >= acknowledged.len(),
            "cycle {cycle}: {} stored < {} acknowledged",
            stored.len(),
            acknowledged.len()
        );
        eprintln!(
            "cycle {cycle}: {} acknowledged in all, {} stored after the restart",
            acknowledged.len(),
            stored.len()
        );
        let stored: HashSet<String> = stored.into_iter().collect();
        assert!(
            acknowledged.iter().all(|a| stored.contains(a)),
            "cycle {cycle}: the list misses acknowledged ARNs"
        );
    }
}
