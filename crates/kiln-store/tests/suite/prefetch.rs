//! Reads named ahead (`Txn::prefetch`) answer exactly what the reads themselves answer: the
//! same rows, tags and tokens for any stored string, the call's own writes included, and
//! nothing left over for the next call.

use crate::cases::{row, ACCOUNT};
use crate::Fixture;
use kiln_domain::arn::ResourceKind;
use kiln_store::{ListQuery, Read, Row, Store, StoreError, TokenKey, TokenRecord, Txn};
use std::collections::BTreeMap;

/// Quotes, backslashes, NUL, the escape character, a placeholder and non-ASCII.
const ODD: &str = "it's \\'x\\\\'; -- $1 $$ E'y' \0 \u{1}0 é\n";

fn versioned(name: &str, version: &str, build: u32, body: &str) -> Row {
    Row {
        arn: format!("arn:aws:imagebuilder:us-east-1:{ACCOUNT}:component/{name}/{version}/{build}"),
        kind: ResourceKind::Component,
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        name: name.into(),
        version: Some(version.into()),
        build: Some(build),
        body: body.into(),
    }
}

fn components(name: &str, after: Option<&str>) -> ListQuery {
    ListQuery {
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        kind: ResourceKind::Component,
        name: Some(name.into()),
        after: after.map(str::to_string),
    }
}

fn token(token: &str) -> TokenKey {
    TokenKey {
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        operation: "CreateComponent".into(),
        token: token.into(),
    }
}

/// Everything a read can answer, for comparing.
#[derive(Debug, PartialEq)]
enum Answer {
    Row(Option<Row>),
    Rows(Vec<Row>),
    Tags(BTreeMap<String, String>),
    Token(Option<(String, String, i64)>),
}

fn make(tx: &mut dyn Txn, read: &Read) -> Result<Answer, StoreError> {
    Ok(match read {
        Read::Row(arn) => Answer::Row(tx.get_row(arn)?),
        Read::List(q) => Answer::Rows(tx.list_rows(q)?),
        Read::Tags(arn) => Answer::Tags(tx.tags(arn)?),
        Read::Token(key) => Answer::Token(
            tx.get_token(key)?
                .map(|t| (t.params_hash, t.response, t.created_millis)),
        ),
    })
}

fn seed(store: &Store) -> (Vec<Read>, Row) {
    let mut odd = row("odd");
    odd.body = ODD.into();
    let first = versioned("comp", "1.0.0", 1, ODD);
    let second = versioned("comp", "1.0.0", 2, "{}");
    let third = versioned("comp", "2.0.0", 1, "{\"x\":1}");
    store
        .write(|tx| {
            for r in [&odd, &first, &second, &third] {
                tx.put_row(r)?;
            }
            tx.set_tags(&odd.arn, &[(ODD.to_string(), ODD.to_string())].into())?;
            tx.put_token(
                &token(ODD),
                &TokenRecord {
                    params_hash: ODD.into(),
                    response: ODD.into(),
                    created_millis: 1_234_567_890_123,
                },
            )
        })
        .unwrap()
        .unwrap();
    let reads = vec![
        Read::Row(odd.arn.clone()),
        Read::Row(first.arn.clone()),
        Read::Row(format!("{}{ODD}", odd.arn)),
        Read::List(components("comp", None)),
        Read::List(components("comp", Some(&first.arn))),
        Read::List(components(ODD, None)),
        Read::Tags(odd.arn.clone()),
        Read::Tags(first.arn.clone()),
        Read::Token(token(ODD)),
        Read::Token(token("absent")),
    ];
    (reads, odd)
}

fn plain(tx: &mut dyn Txn, reads: &[Read]) -> Result<Vec<Answer>, StoreError> {
    reads.iter().map(|r| make(tx, r)).collect()
}

fn ahead(tx: &mut dyn Txn, reads: &[Read]) -> Result<Vec<Answer>, StoreError> {
    tx.prefetch(reads)?;
    // In another order than named, and one read twice (the second is a read of its own).
    let mut answers: Vec<_> = reads
        .iter()
        .rev()
        .map(|r| make(tx, r))
        .collect::<Result<_, _>>()?;
    answers.reverse();
    assert_eq!(make(tx, &reads[0])?, answers[0]);
    Ok(answers)
}

pub fn prefetched_reads_answer_what_the_reads_answer(fixture: &Fixture) {
    let store = fixture.open();
    let (reads, _) = seed(&store);
    let expected = store.read(|tx| plain(tx, &reads)).unwrap().unwrap();
    assert!(matches!(&expected[0], Answer::Row(Some(r)) if r.body == ODD));
    assert!(matches!(&expected[3], Answer::Rows(rows) if rows.len() == 3));
    assert!(matches!(&expected[4], Answer::Rows(rows) if rows.len() == 2));
    assert!(matches!(&expected[8], Answer::Token(Some((h, _, 1_234_567_890_123))) if h == ODD));
    let in_read = store.read(|tx| ahead(tx, &reads)).unwrap().unwrap();
    assert_eq!(in_read, expected, "in a read");
    let in_write = store.write(|tx| ahead(tx, &reads)).unwrap().unwrap();
    assert_eq!(in_write, expected, "in a write");
    // Named with the read's `BEGIN`.
    let (with_begin, _) = store.read_at(&reads, |tx| plain(tx, &reads)).unwrap();
    assert_eq!(with_begin.unwrap(), expected, "with the begin");
}

pub fn prefetched_reads_see_the_call_s_own_writes(fixture: &Fixture) {
    let store = fixture.open();
    let (_, odd) = seed(&store);
    let changed = Row {
        body: "changed".into(),
        ..odd.clone()
    };
    let newer = versioned("comp", "3.0.0", 1, "{}");
    store
        .write(|tx| {
            // Written before the prefetch (a deferred write): the prefetch sees it. Writes
            // whose statements return rows (the schedule and the queue) go first, too.
            tx.put_row(&newer)?;
            tx.set_next_run(&odd.arn, Some(5))?;
            tx.enqueue_build(&newer.arn, 6)?;
            tx.prefetch(&[
                Read::List(components("comp", None)),
                Read::Row(odd.arn.clone()),
                Read::Tags(odd.arn.clone()),
            ])?;
            assert_eq!(tx.list_rows(&components("comp", None))?.len(), 4);
            // Written after it: the read answers the write, not the prefetched row.
            tx.put_row(&changed)?;
            tx.set_tags(&odd.arn, &[("k".to_string(), "v".to_string())].into())?;
            assert_eq!(tx.get_row(&odd.arn)?.as_ref(), Some(&changed));
            assert_eq!(tx.tags(&odd.arn)?.get("k").map(String::as_str), Some("v"));
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
    let queued = store.read(|tx| tx.queued_builds()).unwrap().unwrap();
    assert_eq!(queued, vec![(newer.arn.clone(), None)]);
    let due = store.read(|tx| tx.due_runs(10, 10)).unwrap().unwrap();
    assert_eq!(due, vec![(odd.arn.clone(), 5)]);
}

pub fn prefetched_answers_end_with_their_call(fixture: &Fixture) {
    let store = fixture.open();
    let (_, odd) = seed(&store);
    // Read ahead and never read, in a write and in reads (several, so that pooled
    // connections are reused).
    store
        .write(|tx| tx.prefetch(&[Read::Row(odd.arn.clone())]))
        .unwrap()
        .unwrap();
    for _ in 0..8 {
        store
            .read(|tx| tx.prefetch(&[Read::Row(odd.arn.clone())]))
            .unwrap()
            .unwrap();
    }
    let changed = Row {
        body: "changed later".into(),
        ..odd.clone()
    };
    store.write(|tx| tx.put_row(&changed)).unwrap().unwrap();
    assert_eq!(
        store.write(|tx| tx.get_row(&odd.arn)).unwrap().unwrap(),
        Some(changed.clone())
    );
    for _ in 0..8 {
        assert_eq!(
            store.read(|tx| tx.get_row(&odd.arn)).unwrap().unwrap(),
            Some(changed.clone())
        );
    }
}
