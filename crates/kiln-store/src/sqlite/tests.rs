//! The SQLite backend on real files: group commit, rollback of one call, persistence.
use super::*;
use crate::txn::{ListQuery, Row, TokenKey, TokenRecord};
use kiln_domain::arn::ResourceKind;
use std::sync::Arc;

fn row(name: &str) -> Row {
    Row {
        arn: format!(
            "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/{name}"
        ),
        kind: ResourceKind::InfrastructureConfiguration,
        account: "123456789012".into(),
        region: "us-east-1".into(),
        name: name.into(),
        version: None,
        build: None,
        body: "{}".into(),
    }
}

fn list_all(store: &SqliteStore) -> Vec<String> {
    store
        .read(|tx| {
            tx.list_rows(&ListQuery {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                kind: ResourceKind::InfrastructureConfiguration,
                name: None,
                after: None,
            })
        })
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn concurrent_writes_all_commit_and_failures_roll_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("k.db"), Sync::Normal).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let name = format!("t{t}-{i}");
                    let fail = i % 10 == 0;
                    let result = store
                        .write(|tx| {
                            tx.put_row(&row(&name))?;
                            if fail {
                                return Err(StoreError::Corrupt {
                                    arn: name.clone(),
                                    message: "refused".into(),
                                });
                            }
                            Ok(())
                        })
                        .unwrap();
                    assert_eq!(result.is_err(), fail);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let names = list_all(&store);
    assert_eq!(names.len(), 16 * 45);
    assert!(!names
        .iter()
        .any(|n| n.ends_with("-0") || n.ends_with("-10")));
}

#[test]
fn a_panicking_call_does_not_wedge_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("k.db"), Sync::Normal).unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _ = store.write(|tx| -> Result<(), StoreError> {
            tx.put_row(&row("doomed"))?;
            panic!("handler bug");
        });
    }));
    assert!(panicked.is_err());
    store
        .write(|tx| tx.put_row(&row("after")))
        .unwrap()
        .unwrap();
    assert_eq!(list_all(&store), vec!["after".to_string()]);
}

#[test]
fn committed_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    {
        let store = SqliteStore::open(&path, Sync::Normal).unwrap();
        store.write(|tx| tx.put_row(&row("kept"))).unwrap().unwrap();
        let key = TokenKey {
            account: "a".into(),
            region: "r".into(),
            operation: "Op".into(),
            token: "t".into(),
        };
        let record = TokenRecord {
            params_hash: "h".into(),
            response: "{}".into(),
            created_millis: 5,
        };
        store
            .write(|tx| tx.put_token(&key, &record))
            .unwrap()
            .unwrap();
    }
    let store = SqliteStore::open(&path, Sync::Full).unwrap();
    assert_eq!(list_all(&store), vec!["kept".to_string()]);
    let key = TokenKey {
        account: "a".into(),
        region: "r".into(),
        operation: "Op".into(),
        token: "t".into(),
    };
    let token = store.read(|tx| tx.get_token(&key)).unwrap().unwrap();
    assert_eq!(token.map(|t| t.created_millis), Some(5));
    assert_eq!(store.purge_tokens(10).unwrap(), 1);
}

#[test]
fn upsert_keeps_one_row_per_arn() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("k.db"), Sync::Normal).unwrap();
    store.write(|tx| tx.put_row(&row("x"))).unwrap().unwrap();
    let mut changed = row("x");
    changed.body = "{\"a\":1}".into();
    store.write(|tx| tx.put_row(&changed)).unwrap().unwrap();
    let got = store.read(|tx| tx.get_row(&changed.arn)).unwrap().unwrap();
    assert_eq!(got.map(|r| r.body), Some("{\"a\":1}".to_string()));
    assert_eq!(list_all(&store).len(), 1);
}

#[test]
fn one_process_per_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let first = SqliteStore::open(&path, Sync::Normal).unwrap();
    let second = SqliteStore::open(&path, Sync::Normal);
    assert!(
        matches!(second, Err(StoreError::Open { .. })),
        "a second store on the same file must be refused"
    );
    drop(first);
    SqliteStore::open(&path, Sync::Normal).unwrap();
}

#[test]
fn builds_are_claimed_once_in_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("k.db"), Sync::Normal).unwrap();
    store
        .write(|tx| {
            tx.enqueue_build("b", 2)?;
            tx.enqueue_build("a", 1)?;
            tx.enqueue_build("a", 3) // queued already: ignored
        })
        .unwrap()
        .unwrap();
    let claim = |w: &str| store.write(|tx| tx.claim_build(w)).unwrap().unwrap();
    assert_eq!(claim("w1").as_deref(), Some("a"));
    assert_eq!(claim("w2").as_deref(), Some("b"));
    assert_eq!(claim("w1"), None);
    let queued = store.read(|tx| tx.queued_builds()).unwrap().unwrap();
    assert_eq!(
        queued,
        vec![
            ("a".to_string(), Some("w1".to_string())),
            ("b".to_string(), Some("w2".to_string()))
        ]
    );
    store.write(|tx| tx.finish_build("a")).unwrap().unwrap();
    let queued = store.read(|tx| tx.queued_builds()).unwrap().unwrap();
    assert_eq!(queued.len(), 1);
}

#[test]
fn schedules_are_due_in_time_order_and_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("k.db"), Sync::Normal).unwrap();
    store
        .write(|tx| {
            tx.set_next_run("p3", Some(300))?;
            tx.set_next_run("p1", Some(100))?;
            tx.set_next_run("p2", Some(200))?;
            tx.set_next_run("gone", Some(50))?;
            tx.set_next_run("gone", None)
        })
        .unwrap()
        .unwrap();
    let read = |now: i64| store.read(|tx| tx.due_runs(now, 10)).unwrap().unwrap();
    assert_eq!(read(99), vec![]);
    assert_eq!(
        read(200),
        vec![("p1".to_string(), 100), ("p2".to_string(), 200)]
    );
    assert_eq!(
        store
            .read(|tx| tx.due_runs(1000, 1))
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.read(|tx| tx.earliest_run()).unwrap().unwrap(),
        Some(100)
    );

    let claim = |arn: &str, due: i64, next: Option<i64>| {
        store
            .write(|tx| tx.claim_run(arn, due, next))
            .unwrap()
            .unwrap()
    };
    assert!(claim("p1", 100, Some(400)));
    assert!(!claim("p1", 100, Some(500)), "a run is claimed once");
    assert!(
        !claim("p2", 150, Some(500)),
        "a stale due time claims nothing"
    );
    assert!(claim("p2", 200, None));
    assert!(!claim("p2", 200, None));
    assert_eq!(
        read(1000),
        vec![("p3".to_string(), 300), ("p1".to_string(), 400)]
    );
    drop(store);
    let store = SqliteStore::open(&dir.path().join("k.db"), Sync::Normal).unwrap();
    assert_eq!(
        store.read(|tx| tx.earliest_run()).unwrap().unwrap(),
        Some(300)
    );
}

#[test]
fn count_rows_counts_one_kind_of_one_account_and_region() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("k.db"), Sync::Normal).unwrap();
    let mut elsewhere = row("other-account");
    elsewhere.arn = elsewhere.arn.replace("123456789012", "111122223333");
    elsewhere.account = "111122223333".into();
    store
        .write(|tx| {
            tx.put_row(&row("a"))?;
            tx.put_row(&row("b"))?;
            tx.put_row(&elsewhere)?;
            // Inside the transaction, its own writes count.
            tx.count_rows(
                "123456789012",
                "us-east-1",
                ResourceKind::InfrastructureConfiguration,
            )
        })
        .unwrap()
        .map(|n| assert_eq!(n, 2))
        .unwrap();
    let count = |account: &str, kind| {
        store
            .read(|tx| tx.count_rows(account, "us-east-1", kind))
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        count("111122223333", ResourceKind::InfrastructureConfiguration),
        1
    );
    assert_eq!(count("123456789012", ResourceKind::Component), 0);
}
