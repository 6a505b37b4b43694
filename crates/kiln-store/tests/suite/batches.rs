//! Group commit and the answer generation: many calls of one process share a transaction, yet
//! each stays all-or-nothing on its own, and a generation seen by a reader never hides a write
//! another store acknowledged.

use crate::cases::{list_all, row, store_and_read_back};
use crate::Fixture;
use kiln_store::{Read, Store, StoreError};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

const THREADS: usize = 16;
const CALLS: usize = 40;

/// What call `i` of a thread does.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Commits,
    ReturnsErr,
    Panics,
    /// Swallows a failed statement and returns `Ok`: PostgreSQL must not answer it as
    /// committed; SQLite rolls back only the statement, so there it commits (without the row).
    SwallowsFailure,
}

fn kind(i: usize) -> Kind {
    match i % 8 {
        3 => Kind::ReturnsErr,
        5 => Kind::Panics,
        6 => Kind::SwallowsFailure,
        _ => Kind::Commits,
    }
}

/// A row the database refuses, for `SwallowsFailure`.
const REFUSED: &str = "refused-by-the-database";

fn refuse_one_name(fixture: &Fixture) {
    if fixture.is_postgres() {
        fixture.raw(&format!(
            "ALTER TABLE resources ADD CONSTRAINT refused CHECK (name <> '{REFUSED}')"
        ));
    } else {
        fixture.raw(&format!(
            "CREATE TRIGGER refused BEFORE INSERT ON resources WHEN NEW.name = '{REFUSED}'
             BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ));
    }
}

pub fn each_call_of_a_batch_commits_or_rolls_back_alone(fixture: &Fixture) {
    let store = Arc::new(fixture.open());
    refuse_one_name(fixture);
    let before = store.generation();
    let postgres = fixture.is_postgres();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut kept = Vec::new();
                for i in 0..CALLS {
                    let name = format!("t{t}-{i}");
                    let kind = kind(i);
                    let call = || {
                        store.write(|tx| {
                            // A read named ahead: the previous call's end goes with it (or
                            // else on its own).
                            if i % 3 != 1 {
                                tx.prefetch(&[Read::Row(row(&name).arn)])?;
                                assert_eq!(tx.get_row(&row(&name).arn)?, None);
                            }
                            tx.put_row(&row(&name))?;
                            match kind {
                                Kind::Commits => {}
                                Kind::ReturnsErr => {
                                    return Err(StoreError::Corrupt {
                                        arn: name.clone(),
                                        message: "refused".into(),
                                    })
                                }
                                Kind::Panics => panic!("a handler bug in {name}"),
                                Kind::SwallowsFailure => {
                                    let _ = tx.put_row(&row(REFUSED));
                                }
                            }
                            Ok(())
                        })
                    };
                    match catch_unwind(AssertUnwindSafe(call)) {
                        Err(_) => assert_eq!(kind, Kind::Panics, "{name} panicked"),
                        // SQLite drops its transaction when a call panics, failing its batch.
                        Ok(Err(StoreError::BatchFailed { reason }))
                            if !postgres && reason.contains("panicked") => {}
                        Ok(Err(StoreError::BatchFailed { reason }))
                            if kind == Kind::SwallowsFailure =>
                        {
                            assert!(reason.contains("statement failed"), "{reason}");
                        }
                        Ok(Ok(Ok(()))) => {
                            assert!(
                                kind == Kind::Commits
                                    || (kind == Kind::SwallowsFailure && !postgres),
                                "{name} ({kind:?}) was answered as committed"
                            );
                            kept.push(name);
                        }
                        Ok(Ok(Err(_))) => assert_eq!(kind, Kind::ReturnsErr, "{name}"),
                        Ok(Err(e)) => panic!("{name} ({kind:?}) failed: {e}"),
                    }
                }
                kept
            })
        })
        .collect();
    let answered: BTreeSet<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let stored: BTreeSet<String> = list_all(&store).into_iter().collect();
    assert_eq!(
        stored, answered,
        "exactly the calls answered as committed are stored"
    );
    if postgres {
        let commits = (0..CALLS).filter(|&i| kind(i) == Kind::Commits).count();
        assert_eq!(
            answered.len(),
            THREADS * commits,
            "every sound call committed"
        );
        // One generation per committed transaction: fewer than the calls when calls shared one.
        let transactions = store.generation() - before;
        assert!(
            transactions < (THREADS * CALLS) as u64,
            "{transactions} transactions for {} calls: no group commit",
            THREADS * CALLS
        );
    }
}

pub fn a_cached_answer_never_hides_an_acknowledged_write(fixture: &Fixture) {
    let (writer, reader) = two(fixture);
    writer
        .write(|tx| tx.put_row(&row("watched")))
        .unwrap()
        .unwrap();
    // Alone, the reader's checks find no counter read in flight; then other readers keep one
    // in flight most of the time, so that the checks often find one sent before the write
    // returned (which must not answer them).
    watch(&writer, &reader, 0..100);
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let (reader, stop) = (reader.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::hint::black_box(reader.generation());
                }
            })
        })
        .collect();
    watch(&writer, &reader, 100..300);
    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        p.join().unwrap();
    }
}

/// Reads the row through `reader`, changes it through `writer`, and checks that the reader's
/// generation no longer matches the answer's.
fn watch(writer: &Store, reader: &Store, rounds: std::ops::Range<usize>) {
    for round in rounds {
        let body = format!("{{\"round\":{round}}}");
        let (seen, at) = reader
            .read_at(&[], |tx| tx.get_row(&row("watched").arn))
            .unwrap();
        let seen = seen.unwrap().expect("the row").body;
        let Some(at) = at else { continue };
        writer
            .write(|tx| {
                let mut changed = row("watched");
                changed.body = body.clone();
                tx.put_row(&changed)
            })
            .unwrap()
            .unwrap();
        let now = reader.generation();
        assert_ne!(
            now, at,
            "round {round}: the answer read at generation {at} ({seen}) would be served after \
             the write was acknowledged"
        );
        if let Store::Postgres(_) = reader {
            // And the cache stays useful: nothing else writes, so what is read now stays current.
            let (_, again) = reader
                .read_at(&[], |tx| tx.get_row(&row("watched").arn))
                .unwrap();
            assert_eq!(again, Some(now), "round {round}");
        }
    }
}

pub fn the_generation_holds_while_nothing_is_written(fixture: &Fixture) {
    if !fixture.is_postgres() {
        // SQLite's count also moves with checkpoints; its cache is tested in kiln-api.
        return;
    }
    let (first, second) = (fixture.open(), fixture.open());
    first.write(|tx| tx.put_row(&row("a"))).unwrap().unwrap();
    let (_, at) = second.read_at(&[], |tx| tx.get_row(&row("a").arn)).unwrap();
    let at = at.expect("PostgreSQL reads know their generation");
    assert_eq!(second.generation(), at, "an answer stays current");
    assert_eq!(first.generation(), at, "on every store");
    first.write(|tx| tx.put_row(&row("b"))).unwrap().unwrap();
    assert_eq!(second.generation(), at + 1, "one write, one generation");
    let refused = first
        .write(|tx| {
            tx.put_row(&row("c"))?;
            Err::<(), _>(StoreError::Corrupt {
                arn: "c".into(),
                message: "refused".into(),
            })
        })
        .unwrap();
    assert!(refused.is_err());
    assert_eq!(
        second.generation(),
        at + 1,
        "a rolled-back write changes nothing"
    );
}

/// Stores on one database, as separate processes would hold them (one on SQLite).
fn two(fixture: &Fixture) -> (Arc<Store>, Arc<Store>) {
    let first = Arc::new(fixture.open());
    let second = if fixture.is_postgres() {
        Arc::new(fixture.open())
    } else {
        first.clone()
    };
    (first, second)
}

/// Writes are sent as literals on PostgreSQL, several to a round trip: quotes, backslashes,
/// parameter markers and statement separators in a value must come back as they went in.
pub fn quoted_strings_survive_deferred_writes(fixture: &Fixture) {
    let store = fixture.open();
    let odd = "it's a \\'trap\\\\'; DROP TABLE resources; -- $1 $$ E'x' \\x00 \u{1}0 é\n";
    let mut r = row("quoted");
    r.version = Some(odd.into());
    r.body = odd.into();
    let key = kiln_store::TokenKey {
        account: odd.into(),
        region: "r".into(),
        operation: "Op".into(),
        token: odd.into(),
    };
    store_and_read_back(&store, &r, &key, odd);
    assert_eq!(list_all(&store), vec!["quoted".to_string()]);
}
