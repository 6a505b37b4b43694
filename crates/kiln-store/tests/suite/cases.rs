//! What every backend must do the same way: transactions, upserts, queues, schedules, lists.

use crate::Fixture;
use kiln_domain::arn::ResourceKind;
use kiln_store::{Lease, ListQuery, Row, Store, StoreError, TokenKey, TokenRecord};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

pub const ACCOUNT: &str = "123456789012";

pub fn row(name: &str) -> Row {
    Row {
        arn: format!(
            "arn:aws:imagebuilder:us-east-1:{ACCOUNT}:infrastructure-configuration/{name}"
        ),
        kind: ResourceKind::InfrastructureConfiguration,
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        name: name.into(),
        version: None,
        build: None,
        body: "{}".into(),
    }
}

fn query(after: Option<&str>) -> ListQuery {
    ListQuery {
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        kind: ResourceKind::InfrastructureConfiguration,
        name: None,
        after: after.map(str::to_string),
    }
}

pub fn list_all(store: &Store) -> Vec<String> {
    store
        .read(|tx| tx.list_rows(&query(None)))
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

fn token_key() -> TokenKey {
    TokenKey {
        account: "a".into(),
        region: "r".into(),
        operation: "Op".into(),
        token: "t".into(),
    }
}

pub fn concurrent_writes_all_commit_and_failures_roll_back_alone(fixture: &Fixture) {
    let store = Arc::new(fixture.open());
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

pub fn a_panicking_call_does_not_wedge_the_writer(fixture: &Fixture) {
    let store = fixture.open();
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

pub fn committed_writes_survive_reopening(fixture: &Fixture) {
    {
        let store = fixture.open();
        store.write(|tx| tx.put_row(&row("kept"))).unwrap().unwrap();
        let record = TokenRecord {
            params_hash: "h".into(),
            response: "{}".into(),
            created_millis: 5,
        };
        store
            .write(|tx| tx.put_token(&token_key(), &record))
            .unwrap()
            .unwrap();
    }
    let store = kiln_store::Store::open(&fixture.database(), kiln_store::Sync::Full).unwrap();
    assert_eq!(list_all(&store), vec!["kept".to_string()]);
    let token = store
        .read(|tx| tx.get_token(&token_key()))
        .unwrap()
        .unwrap();
    assert_eq!(token.map(|t| t.created_millis), Some(5));
    assert_eq!(store.purge_tokens(10).unwrap(), 1);
    assert_eq!(
        store
            .read(|tx| tx.get_token(&token_key()))
            .unwrap()
            .unwrap(),
        None
    );
}

pub fn upsert_keeps_one_row_per_arn(fixture: &Fixture) {
    let store = fixture.open();
    store.write(|tx| tx.put_row(&row("x"))).unwrap().unwrap();
    let mut changed = row("x");
    changed.body = "{\"a\":1}".into();
    changed.build = Some(u32::MAX);
    store.write(|tx| tx.put_row(&changed)).unwrap().unwrap();
    let got = store.read(|tx| tx.get_row(&changed.arn)).unwrap().unwrap();
    assert_eq!(got, Some(changed));
    assert_eq!(list_all(&store).len(), 1);
}

pub fn builds_are_claimed_once_in_queue_order(fixture: &Fixture) {
    let store = fixture.open();
    store
        .write(|tx| {
            tx.enqueue_build("b", 2)?;
            tx.enqueue_build("a", 1)?;
            tx.enqueue_build("a", 3) // queued already: ignored
        })
        .unwrap()
        .unwrap();
    let claim = |w: &str| store.write(|tx| tx.claim_build(w, 0, 1)).unwrap().unwrap();
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

pub fn leases_are_renewed_and_expire(fixture: &Fixture) {
    let store = fixture.open();
    store
        .write(|tx| {
            tx.enqueue_build("a", 1)?;
            tx.enqueue_build("b", 2)?;
            tx.enqueue_build("c", 3)
        })
        .unwrap()
        .unwrap();
    let claim = |w: &str, now: i64| {
        store
            .write(|tx| tx.claim_build(w, now, 100))
            .unwrap()
            .unwrap()
    };
    let expired = |now: i64| {
        store
            .read(|tx| tx.expired_leases(now, 10))
            .unwrap()
            .unwrap()
    };
    let take = |lease: &Lease, now: i64| {
        store
            .write(|tx| tx.take_expired(lease, now))
            .unwrap()
            .unwrap()
    };
    assert_eq!(claim("w1", 1000).as_deref(), Some("a"));
    assert_eq!(claim("w2", 1000).as_deref(), Some("b"));
    assert_eq!(expired(1100), vec![], "a lease lasts until its end");
    // w1's heartbeat extends its lease; w2 stays silent.
    let renewed = store
        .write(|tx| tx.renew_leases("w1", 1090, 1190))
        .unwrap()
        .unwrap();
    assert_eq!(renewed, 1);
    let lost = expired(1150);
    assert_eq!(
        lost,
        vec![Lease {
            arn: "b".into(),
            worker: "w2".into(),
            heartbeat_millis: Some(1000),
            expires_millis: Some(1100),
        }]
    );
    // w2 comes back just before anyone takes the build: its renewal keeps it.
    store
        .write(|tx| tx.renew_leases("w2", 1160, 1260))
        .unwrap()
        .unwrap();
    assert!(!take(&lost[0], 1170), "a renewed lease is not taken");
    assert!(take(&lost[0], 1300), "an expired lease is taken");
    assert!(!take(&lost[0], 1300), "once");
    assert_eq!(
        store
            .write(|tx| tx.renew_leases("w2", 1310, 1410))
            .unwrap()
            .unwrap(),
        0,
        "a worker whose build was taken renews nothing"
    );
    // Taken builds are out of the queue; the unclaimed one is never expired.
    let queued = store.read(|tx| tx.queued_builds()).unwrap().unwrap();
    assert_eq!(
        queued,
        vec![
            ("a".to_string(), Some("w1".to_string())),
            ("c".to_string(), None)
        ]
    );
    assert_eq!(expired(1_000_000).len(), 1, "only a, claimed, can expire");
    drop(store);
    // A claim made before leases existed has none: it counts as expired.
    fixture.raw("UPDATE builds SET heartbeat_millis = NULL, lease_expires_millis = NULL");
    let store = fixture.open();
    let legacy = store.read(|tx| tx.expired_leases(0, 10)).unwrap().unwrap();
    assert_eq!(legacy.len(), 1);
    assert_eq!(
        (legacy[0].heartbeat_millis, legacy[0].expires_millis),
        (None, None)
    );
    assert!(store
        .write(|tx| tx.take_expired(&legacy[0], 0))
        .unwrap()
        .unwrap());
}

pub fn schedules_are_due_in_time_order_and_claimed_once(fixture: &Fixture) {
    let store = fixture.open();
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
    let store = fixture.open();
    assert_eq!(
        store.read(|tx| tx.earliest_run()).unwrap().unwrap(),
        Some(300)
    );
    store
        .write(|tx| {
            tx.set_next_run("p1", None)?;
            tx.set_next_run("p3", None)
        })
        .unwrap()
        .unwrap();
    assert_eq!(store.read(|tx| tx.earliest_run()).unwrap().unwrap(), None);
}

pub fn count_rows_counts_one_kind_of_one_account_and_region(fixture: &Fixture) {
    let store = fixture.open();
    let mut elsewhere = row("other-account");
    elsewhere.arn = elsewhere.arn.replace(ACCOUNT, "111122223333");
    elsewhere.account = "111122223333".into();
    store
        .write(|tx| {
            tx.put_row(&row("a"))?;
            tx.put_row(&row("b"))?;
            tx.put_row(&elsewhere)?;
            // Inside the transaction, its own writes count.
            tx.count_rows(
                ACCOUNT,
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
    assert_eq!(count(ACCOUNT, ResourceKind::Component), 0);
}

/// Pagination cursors are ARNs compared as bytes: a backend that sorted by a locale's rules
/// (case-insensitive, punctuation ignored) would skip or repeat rows between pages.
pub fn lists_are_in_byte_order_and_resume_after_a_cursor(fixture: &Fixture) {
    let store = fixture.open();
    let names = ["b", "B", "a-z", "a_z", "aZ", "a.z", "A", "_", "0x", "z"];
    store
        .write(|tx| {
            for name in names {
                tx.put_row(&row(name))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted.sort();
    assert_eq!(list_all(&store), sorted);

    let cursor = row(&sorted[3]).arn;
    let rest: Vec<String> = store
        .read(|tx| tx.list_rows(&query(Some(&cursor))))
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(rest, sorted[4..]);

    let by_name = store
        .read(|tx| {
            tx.list_rows(&ListQuery {
                name: Some("aZ".into()),
                ..query(None)
            })
        })
        .unwrap()
        .unwrap();
    assert_eq!(by_name.len(), 1);

    let page = store
        .read(|tx| tx.rows_of_kind(ResourceKind::InfrastructureConfiguration, Some(&cursor), 2))
        .unwrap()
        .unwrap();
    assert_eq!(
        page.into_iter().map(|r| r.name).collect::<Vec<_>>(),
        sorted[4..6]
    );
}

pub fn tags_references_and_settings(fixture: &Fixture) {
    let store = fixture.open();
    store
        .write(|tx| {
            let tags = [("k1", "v1"), ("k2", "v2")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            tx.set_tags("x", &tags)?;
            tx.set_tags("x", &[("k1".to_string(), "v1b".to_string())].into())?;
            tx.remove_tags("x", &["k2".to_string(), "missing".to_string()])?;
            tx.set_references("from-b", &["to".into(), "to".into(), "other".into()])?;
            tx.set_references("from-a", &["to".into()])?;
            tx.set_references("from-b", &["to".into()])?;
            tx.put_setting("key", "one")?;
            tx.put_setting("key", "two")
        })
        .unwrap()
        .unwrap();
    store
        .read(|tx| {
            assert_eq!(
                tx.tags("x")?,
                [("k1".to_string(), "v1b".to_string())].into()
            );
            assert_eq!(tx.referrers("to")?, vec!["from-a", "from-b"]);
            assert_eq!(tx.referrers("other")?, Vec::<String>::new());
            assert_eq!(tx.get_setting("key")?.as_deref(), Some("two"));
            assert_eq!(tx.get_setting("none")?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
}

fn tag_map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Get reads a row and then its tags; SQLite answers the second read from a copy of the tags
/// beside the row. Whatever was written in between, and in whichever order, the answer is the
/// tags table's.
pub fn a_row_read_then_its_tags_gives_the_tags_stored_now(fixture: &Fixture) {
    let store = fixture.open();
    let (early, late, other) = (row("early"), row("late"), row("other"));
    let odd = tag_map(&[
        ("quote\"d", "back\\slash"),
        ("ünï", "{\"json\": 1}"),
        ("e", ""),
    ]);
    store
        .write(|tx| {
            // Tags stored before the row they belong to, as an import may.
            tx.set_tags(&early.arn, &odd)?;
            tx.put_row(&early)?;
            tx.put_row(&late)?;
            tx.put_row(&other)?;
            tx.set_tags(&late.arn, &tag_map(&[("a", "1"), ("b", "2")]))?;
            tx.set_tags(&other.arn, &tag_map(&[("o", "x")]))
        })
        .unwrap()
        .unwrap();
    let read = |arn: &str| {
        store
            .read(|tx| {
                tx.get_row(arn)?.expect("the row");
                tx.tags(arn)
            })
            .unwrap()
            .unwrap()
    };
    assert_eq!(read(&early.arn), odd);
    assert_eq!(read(&late.arn), tag_map(&[("a", "1"), ("b", "2")]));
    store
        .write(|tx| {
            tx.get_row(&late.arn)?;
            tx.set_tags(&late.arn, &tag_map(&[("a", "changed")]))?;
            assert_eq!(
                tx.tags(&late.arn)?,
                tag_map(&[("a", "changed"), ("b", "2")])
            );
            tx.get_row(&late.arn)?;
            tx.remove_tags(&late.arn, &["b".to_string()])?;
            assert_eq!(tx.tags(&late.arn)?, tag_map(&[("a", "changed")]));
            // Another resource's row read last: the tags asked for are still the ARN's own.
            tx.get_row(&other.arn)?;
            assert_eq!(tx.tags(&late.arn)?, tag_map(&[("a", "changed")]));
            // Replacing the row keeps its tags.
            tx.put_row(&Row {
                body: "{\"v\": 2}".into(),
                ..late.clone()
            })?;
            assert_eq!(
                tx.get_row(&late.arn)?.map(|r| r.body).as_deref(),
                Some("{\"v\": 2}")
            );
            assert_eq!(tx.tags(&late.arn)?, tag_map(&[("a", "changed")]));
            tx.get_row(&other.arn)?;
            tx.delete_row(&other.arn)?;
            assert_eq!(tx.tags(&other.arn)?, tag_map(&[]));
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(read(&late.arn), tag_map(&[("a", "changed")]));
    assert_eq!(
        store.read(|tx| tx.get_row(&other.arn)).unwrap().unwrap(),
        None
    );
    // A row stored again after it was deleted starts with no tags.
    store.write(|tx| tx.put_row(&other)).unwrap().unwrap();
    assert_eq!(read(&other.arn), tag_map(&[]));
}

/// A create stores a resource and its tags in one write (`put_row_tagged`): read back, the
/// resource has exactly the tags the table holds, whether it is new, was tagged before it was
/// stored, or is stored again. On SQLite the row's copy is then the table's, or null (read
/// the table), never anything else.
pub fn rows_stored_with_their_tags_have_them(fixture: &Fixture) {
    let store = fixture.open();
    let (fresh, pretagged, again, bare) =
        (row("fresh"), row("pretagged"), row("again"), row("bare"));
    let check = |r: &Row, want: &[(&str, &str)]| {
        let want = tag_map(want);
        let got = store
            .read(|tx| {
                tx.get_row(&r.arn)?.expect("the row");
                tx.tags(&r.arn)
            })
            .unwrap()
            .unwrap();
        assert_eq!(got, want, "{}", r.name);
        if !fixture.is_postgres() {
            if let Some(copy) = fixture.sqlite_tag_json(&r.arn) {
                let copy: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(&copy).unwrap();
                assert_eq!(copy, want, "the copy beside {}", r.name);
            }
        }
    };
    store
        .write(|tx| {
            tx.put_row_tagged(&fresh, &tag_map(&[("a", "1"), ("b", "2")]))?;
            tx.set_tags(&pretagged.arn, &tag_map(&[("before", "yes")]))?;
            tx.put_row_tagged(&pretagged, &tag_map(&[("with", "yes")]))?;
            tx.put_row_tagged(&again, &tag_map(&[("first", "1")]))?;
            tx.put_row_tagged(&bare, &tag_map(&[]))
        })
        .unwrap()
        .unwrap();
    check(&fresh, &[("a", "1"), ("b", "2")]);
    check(&pretagged, &[("before", "yes"), ("with", "yes")]);
    check(&again, &[("first", "1")]);
    check(&bare, &[]);
    if !fixture.is_postgres() {
        // The common case takes the fast path: the copy is there.
        assert_eq!(
            fixture.sqlite_tag_json(&fresh.arn).as_deref(),
            Some(r#"{"a":"1","b":"2"}"#)
        );
        assert_eq!(fixture.sqlite_tag_json(&bare.arn).as_deref(), Some("{}"));
    }
    store
        .write(|tx| {
            tx.put_row_tagged(&again, &tag_map(&[("first", "one"), ("second", "2")]))?;
            tx.put_row_tagged(&fresh, &tag_map(&[]))?;
            tx.set_tags(&pretagged.arn, &tag_map(&[("after", "yes")]))
        })
        .unwrap()
        .unwrap();
    check(&again, &[("first", "one"), ("second", "2")]);
    check(&fresh, &[("a", "1"), ("b", "2")]);
    if !fixture.is_postgres() {
        // Stored again without tags, a row keeps its copy.
        assert_eq!(
            fixture.sqlite_tag_json(&fresh.arn).as_deref(),
            Some(r#"{"a":"1","b":"2"}"#)
        );
    }
    check(
        &pretagged,
        &[("after", "yes"), ("before", "yes"), ("with", "yes")],
    );
    if !fixture.is_postgres() {
        // Writing tags again restores the copy a row stored after its tags went without.
        assert!(fixture.sqlite_tag_json(&pretagged.arn).is_some());
    }
}

pub fn deleting_a_row_removes_its_tags_and_references(fixture: &Fixture) {
    let store = fixture.open();
    let r = row("doomed");
    store
        .write(|tx| {
            tx.put_row(&r)?;
            tx.set_tags(&r.arn, &[("k".to_string(), "v".to_string())].into())?;
            tx.set_references(&r.arn, &["target".into()])
        })
        .unwrap()
        .unwrap();
    let deleted = store.write(|tx| tx.delete_row(&r.arn)).unwrap().unwrap();
    assert!(deleted);
    let again = store.write(|tx| tx.delete_row(&r.arn)).unwrap().unwrap();
    assert!(!again);
    store
        .read(|tx| {
            assert_eq!(tx.get_row(&r.arn)?, None);
            assert!(tx.tags(&r.arn)?.is_empty());
            assert!(tx.referrers("target")?.is_empty());
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
}

/// Callers may send any string (a tag, a clientToken, an ARN to look up), NUL included; every
/// backend stores and finds it as it came.
pub fn any_string_is_stored_as_it_came(fixture: &Fixture) {
    let store = fixture.open();
    let odd = "a\0b\u{1}c\u{1}0";
    let key = TokenKey {
        token: odd.into(),
        ..token_key()
    };
    let mut r = row("odd");
    r.body = format!("{{\"v\":{}}}", serde_json::Value::String(odd.into()));
    store_and_read_back(&store, &r, &key, odd);
    store
        .read(|tx| {
            assert_eq!(tx.get_row(&format!("{}\0", r.arn))?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
}

/// Stores `r`, `odd` as a tag key and value, a reference, a setting's name and value, and a
/// token under `key` whose record is `odd`, in one write; then checks each reads back as it went.
pub fn store_and_read_back(store: &Store, r: &Row, key: &TokenKey, odd: &str) {
    store
        .write(|tx| {
            tx.put_row(r)?;
            tx.set_tags(&r.arn, &[(odd.to_string(), odd.to_string())].into())?;
            tx.set_references(&r.arn, &[odd.to_string()])?;
            tx.put_setting(odd, odd)?;
            tx.put_token(
                key,
                &TokenRecord {
                    params_hash: odd.into(),
                    response: odd.into(),
                    created_millis: 7,
                },
            )
        })
        .unwrap()
        .unwrap();
    store
        .read(|tx| {
            assert_eq!(tx.get_row(&r.arn)?.as_ref(), Some(r));
            assert_eq!(
                tx.tags(&r.arn)?,
                [(odd.to_string(), odd.to_string())].into()
            );
            assert_eq!(tx.referrers(odd)?, vec![r.arn.clone()]);
            assert_eq!(tx.get_setting(odd)?.as_deref(), Some(odd));
            let token = tx.get_token(key)?.expect("the token");
            assert_eq!(
                (
                    token.params_hash.as_str(),
                    token.response.as_str(),
                    token.created_millis
                ),
                (odd, odd, 7)
            );
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
}
