//! Two `kiln serve` processes, each with its own data directory, on one PostgreSQL database
//! behave as one service: what one writes the other reads at once, a clientToken sent to both
//! at the same moment creates one resource, a name taken through one is refused through the
//! other, and pagination tokens of one are accepted by the other.
//!
//! Runs when `KILN_TEST_DATABASE_URL` names a server (each test creates and drops a database
//! of its own there); fails instead of skipping when `KILN_TEST_REQUIRE_POSTGRES=1`.

mod common;

use common::{error_code, list_all_infra, Server};
use kiln_store::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_are_one_service() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let a = Server::start_on_database(&db.url);
    let b = Server::start_on_database(&db.url);
    assert_ne!(a.data_dir(), b.data_dir());
    let (ca, cb) = (a.client(), b.client());

    // Written through A, read through B at once (no cache serves B an older answer).
    let arn = common::create_infra(&ca, "made-on-a").await;
    let got = cb
        .get_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .send()
        .await
        .expect("B reads what A wrote");
    assert_eq!(
        got.infrastructure_configuration().and_then(|c| c.name()),
        Some("made-on-a")
    );
    cb.update_infrastructure_configuration()
        .infrastructure_configuration_arn(&arn)
        .instance_profile_name("changed-on-b")
        .send()
        .await
        .expect("B updates it");
    for _ in 0..2 {
        let got = ca
            .get_infrastructure_configuration()
            .infrastructure_configuration_arn(&arn)
            .send()
            .await
            .expect("A reads it again");
        assert_eq!(
            got.infrastructure_configuration()
                .and_then(|c| c.instance_profile_name()),
            Some("changed-on-b")
        );
    }

    // A name taken through A is taken for B too.
    let clash = cb
        .create_infrastructure_configuration()
        .name("made-on-a")
        .instance_profile_name("p")
        .send()
        .await;
    assert_eq!(error_code(&clash), "ResourceAlreadyExistsException");

    // Pagination tokens signed by A are accepted by B (the key lives in the database).
    for i in 0..4 {
        common::create_infra(&cb, &format!("page-{i}")).await;
    }
    let first = ca
        .list_infrastructure_configurations()
        .max_results(2)
        .send()
        .await
        .expect("a first page from A");
    let token = first.next_token.clone().expect("more pages");
    let second = cb
        .list_infrastructure_configurations()
        .max_results(10)
        .next_token(token)
        .send()
        .await
        .expect("B continues A's listing");
    assert_eq!(
        first.infrastructure_configuration_summary_list().len()
            + second.infrastructure_configuration_summary_list().len(),
        5
    );
    assert_eq!(list_all_infra(&ca).await, list_all_infra(&cb).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_token_sent_to_both_servers_at_once_creates_one_resource() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let a = Server::start_on_database(&db.url);
    let b = Server::start_on_database(&db.url);
    let clients = [a.client(), b.client()];
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let client = clients[i % 2].clone();
            tokio::spawn(async move {
                client
                    .create_infrastructure_configuration()
                    .name("once")
                    .instance_profile_name("p")
                    .client_token("one-token")
                    .send()
                    .await
            })
        })
        .collect();
    let mut arns = Vec::new();
    for task in tasks {
        let output = task
            .await
            .expect("the task did not panic")
            .unwrap_or_else(|e| panic!("every retry succeeds: {e:?}"));
        arns.push(output.infrastructure_configuration_arn.expect("an ARN"));
    }
    assert!(arns.iter().all(|a| *a == arns[0]), "{arns:?}");
    assert_eq!(list_all_infra(&clients[0]).await, vec![arns[0].clone()]);
    assert_eq!(list_all_infra(&clients[1]).await, vec![arns[0].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_name_created_on_both_servers_at_once_is_created_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let a = Server::start_on_database(&db.url);
    let b = Server::start_on_database(&db.url);
    let clients = [a.client(), b.client()];
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let client = clients[i % 2].clone();
            tokio::spawn(async move {
                client
                    .create_infrastructure_configuration()
                    .name("contested")
                    .instance_profile_name(format!("p{i}"))
                    .send()
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let result = task.await.expect("the task did not panic");
        match &result {
            Ok(_) => created += 1,
            Err(_) => assert_eq!(error_code(&result), "ResourceAlreadyExistsException"),
        }
    }
    assert_eq!(created, 1);
}

#[test]
fn a_bad_database_url_is_refused_with_a_clear_message() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("data"))
        .arg("--database")
        .arg("mysql://root:hunter2@127.0.0.1/kiln")
        .env_remove("KILN_DATABASE")
        .output()
        .expect("running kiln");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a database URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is shown: {stderr}"
    );
}
