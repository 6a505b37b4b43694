//! Many writers at once. On PostgreSQL every thread has a store of its own, as separate
//! processes would; SQLite allows one store per database, so its threads share one.

use crate::cases::{list_all, row, ACCOUNT};
use crate::Fixture;
use kiln_domain::arn::ResourceKind;
use kiln_store::{ListQuery, Row, Store, StoreError, TokenKey, TokenRecord};
use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const WRITERS: usize = 6;

fn stores(fixture: &Fixture) -> Vec<Arc<Store>> {
    if fixture.is_postgres() {
        (0..WRITERS).map(|_| Arc::new(fixture.open())).collect()
    } else {
        let shared = Arc::new(fixture.open());
        (0..WRITERS).map(|_| shared.clone()).collect()
    }
}

/// Runs `f(i, store)` on one thread per store, all starting together; returns their results.
fn race<T: Send + 'static>(
    stores: &[Arc<Store>],
    f: impl Fn(usize, &Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(stores.len()));
    let threads: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let (store, f, start) = (store.clone(), f.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                f(i, &store)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn image(build: u32) -> Row {
    Row {
        arn: format!("arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image/img/1.0.0/{build}"),
        kind: ResourceKind::Image,
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        name: "img".into(),
        version: Some("1.0.0".into()),
        build: Some(build),
        body: "{}".into(),
    }
}

/// The API's way of numbering builds: the highest so far plus one, read and written in one
/// write transaction.
fn create_next_build(store: &Store) -> u32 {
    store
        .write(|tx| {
            let existing = tx.list_rows(&ListQuery {
                account: ACCOUNT.into(),
                region: "us-east-1".into(),
                kind: ResourceKind::Image,
                name: Some("img".into()),
                after: None,
            })?;
            let next = existing.iter().filter_map(|r| r.build).max().unwrap_or(0) + 1;
            if tx.get_row(&image(next).arn)?.is_some() {
                return Err(StoreError::Corrupt {
                    arn: image(next).arn,
                    message: "would overwrite".into(),
                });
            }
            tx.put_row(&image(next))?;
            Ok(next)
        })
        .unwrap()
        .unwrap()
}

pub fn creates_of_one_name_never_share_a_build_number(fixture: &Fixture) {
    const EACH: usize = 25;
    let stores = stores(fixture);
    let numbers: Vec<u32> = race(&stores, |_, store| {
        (0..EACH)
            .map(|_| create_next_build(store))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    let distinct: BTreeSet<u32> = numbers.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        numbers.len(),
        "a build number was handed out twice"
    );
    let expected: BTreeSet<u32> = (1..=u32::try_from(WRITERS * EACH).unwrap()).collect();
    assert_eq!(distinct, expected);
}

pub fn one_client_token_creates_one_resource(fixture: &Fixture) {
    let stores = stores(fixture);
    let key = TokenKey {
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        operation: "CreateInfrastructureConfiguration".into(),
        token: "same-token".into(),
    };
    let answers = race(&stores, move |i, store| {
        store
            .write(|tx| {
                if let Some(previous) = tx.get_token(&key)? {
                    return Ok::<_, StoreError>(previous.response);
                }
                tx.put_row(&row(&format!("made-by-{i}")))?;
                let response = format!("made-by-{i}");
                tx.put_token(
                    &key,
                    &TokenRecord {
                        params_hash: "h".into(),
                        response: response.clone(),
                        created_millis: 1,
                    },
                )?;
                Ok(response)
            })
            .unwrap()
            .unwrap()
    });
    let made = list_all(&stores[0]);
    assert_eq!(made.len(), 1, "one token made {made:?}");
    assert!(answers.iter().all(|a| *a == made[0]), "{answers:?}");
}

pub fn builds_are_never_claimed_twice(fixture: &Fixture) {
    const BUILDS: usize = 300;
    let stores = stores(fixture);
    stores[0]
        .write(|tx| {
            for i in 0..BUILDS {
                tx.enqueue_build(&format!("build-{i:04}"), i64::try_from(i).unwrap_or(0))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
    let claims: Vec<(usize, String)> = race(&stores, |i, store| {
        let worker = format!("worker-{i}");
        let mut mine = Vec::new();
        while let Some(arn) = store
            .write(|tx| tx.claim_build(&worker, 0, 60_000))
            .unwrap()
            .unwrap()
        {
            mine.push((i, arn));
        }
        mine
    })
    .into_iter()
    .flatten()
    .collect();
    let distinct: BTreeSet<&str> = claims.iter().map(|(_, arn)| arn.as_str()).collect();
    assert_eq!(distinct.len(), claims.len(), "a build was claimed twice");
    assert_eq!(distinct.len(), BUILDS);
    let queued = stores[0].read(|tx| tx.queued_builds()).unwrap().unwrap();
    for (i, arn) in &claims {
        let owner = queued
            .iter()
            .find(|(a, _)| a == arn)
            .and_then(|(_, w)| w.clone());
        assert_eq!(owner, Some(format!("worker-{i}")));
    }
}

pub fn a_due_run_is_claimed_once(fixture: &Fixture) {
    const ROUNDS: i64 = 20;
    let stores = stores(fixture);
    stores[0]
        .write(|tx| tx.set_next_run("pipeline", Some(100)))
        .unwrap()
        .unwrap();
    let between = Arc::new(Barrier::new(stores.len()));
    let wins: Vec<Vec<i64>> = race(&stores, move |_, store| {
        let mut won = Vec::new();
        for round in 1..=ROUNDS {
            let due = round * 100;
            let next = (round < ROUNDS).then_some(due + 100);
            if store
                .write(|tx| tx.claim_run("pipeline", due, next))
                .unwrap()
                .unwrap()
            {
                won.push(round);
            }
            between.wait();
        }
        won
    });
    let mut rounds: Vec<i64> = wins.into_iter().flatten().collect();
    rounds.sort_unstable();
    assert_eq!(
        rounds,
        (1..=ROUNDS).collect::<Vec<_>>(),
        "each run fires once"
    );
    let left = stores[0].read(|tx| tx.earliest_run()).unwrap().unwrap();
    assert_eq!(left, None);
}

pub fn writes_are_seen_by_every_store_at_once(fixture: &Fixture) {
    let stores = stores(fixture);
    for (i, store) in stores.iter().enumerate() {
        let before = stores[(i + 1) % WRITERS].generation();
        store
            .write(|tx| tx.put_row(&row(&format!("r{i}"))))
            .unwrap()
            .unwrap();
        let other = &stores[(i + 1) % WRITERS];
        assert_eq!(list_all(other).len(), i + 1);
        assert_ne!(
            other.generation(),
            before,
            "a cached answer would hide the write"
        );
    }
}

pub fn stores_opening_at_once_migrate_once(fixture: &Fixture) {
    if !fixture.is_postgres() {
        drop(fixture.open());
        return;
    }
    let database = fixture.database();
    let start = Arc::new(Barrier::new(WRITERS));
    let opened: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (database, start) = (database.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                Store::open(&database, kiln_store::Sync::Normal).map(|_| ())
            })
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
    assert_eq!(fixture.version(), kiln_store::postgres::SCHEMA_VERSION);
}

/// Connections the server ends (a restart, an administrator) are replaced, not reused.
pub fn closed_connections_are_replaced(fixture: &Fixture) {
    let store = fixture.open();
    store
        .write(|tx| tx.put_row(&row("before")))
        .unwrap()
        .unwrap();
    fixture.end_connections();
    assert_eq!(list_all(&store), vec!["before".to_string()]);
    store
        .write(|tx| tx.put_row(&row("after")))
        .unwrap()
        .unwrap();
    assert_eq!(list_all(&store).len(), 2);
}

pub fn committed_notifications_wake_listeners_across_reconnects(fixture: &Fixture) {
    if !fixture.is_postgres() {
        let store = fixture.open();
        assert!(
            store.listen(|| {}).unwrap().is_none(),
            "SQLite has no listener"
        );
        return;
    }
    let (listening, other) = (fixture.open(), fixture.open());
    let (tx, wakes) = std::sync::mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    let Some(listener) = listening
        .listen(move || {
            let _ = tx.lock().unwrap().send(());
        })
        .unwrap()
    else {
        panic!("PostgreSQL listens");
    };
    let wait = Duration::from_secs(10);
    wakes.recv_timeout(wait).expect("a wake-up once listening");
    let quiet = |what: &str| {
        std::thread::sleep(Duration::from_millis(300));
        assert!(wakes.try_recv().is_err(), "{what} woke the listener");
    };
    let notifies = |what: &str, f: &dyn Fn(&mut dyn kiln_store::Txn) -> Result<(), StoreError>| {
        other.write(|tx| f(tx)).unwrap().unwrap();
        wakes
            .recv_timeout(wait)
            .unwrap_or_else(|_| panic!("{what} did not wake the listener"));
        while wakes.try_recv().is_ok() {}
    };
    notifies("a queued build", &|tx| tx.enqueue_build("b1", 1));
    notifies("a schedule", &|tx| tx.set_next_run("p", Some(5)));
    notifies("new vulnerability data", &|tx| tx.notify_workers());
    // Neither a claim (every idle worker makes them) nor a rolled-back write wakes anyone.
    other
        .write(|tx| tx.claim_build("w", 0, 1_000).map(drop))
        .unwrap()
        .unwrap();
    quiet("a claim");
    let _ = other
        .write(|tx| {
            tx.enqueue_build("b2", 2)?;
            Err::<(), _>(StoreError::BatchFailed {
                reason: "no".into(),
            })
        })
        .unwrap();
    quiet("a rolled-back write");
    // The server drops every connection: the listener reconnects and hears later writes.
    fixture.end_connections();
    wakes
        .recv_timeout(wait)
        .expect("a wake-up after reconnecting");
    notifies("a build queued after the reconnection", &|tx| {
        tx.enqueue_build("b3", 3)
    });
    drop(listener);
}
