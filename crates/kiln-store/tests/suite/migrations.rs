//! Schema versions: new databases get the newest, older ones are migrated, newer ones refused.

use crate::cases::{list_all, row};
use crate::Fixture;
use kiln_store::StoreError;

fn known(fixture: &Fixture) -> i64 {
    if fixture.is_postgres() {
        kiln_store::postgres::SCHEMA_VERSION
    } else {
        kiln_store::sqlite::SCHEMA_VERSION
    }
}

pub fn a_fresh_database_gets_the_newest_version(fixture: &Fixture) {
    drop(fixture.open());
    assert_eq!(fixture.version(), known(fixture));
    // Opening again migrates nothing and keeps the version.
    drop(fixture.open());
    assert_eq!(fixture.version(), known(fixture));
}

pub fn a_database_from_a_newer_kiln_is_refused(fixture: &Fixture) {
    let store = fixture.open();
    store.write(|tx| tx.put_row(&row("kept"))).unwrap().unwrap();
    drop(store);
    let newer = known(fixture) + 1;
    fixture.set_version(newer);
    let refused = kiln_store::Store::open(&fixture.database(), kiln_store::Sync::Normal);
    let Err(err) = refused else {
        panic!("a database of schema version {newer} must be refused");
    };
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, .. } if found == newer),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "written by a newer Kiln: schema version {newer}, this Kiln knows up to {}",
            known(fixture)
        )),
        "{message}"
    );
    // Refusing changed nothing: the version and the data are as the newer Kiln left them.
    assert_eq!(fixture.version(), newer);
    fixture.set_version(known(fixture));
    assert_eq!(list_all(&fixture.open()), vec!["kept".to_string()]);
}

/// Databases made before schema versions existed have `user_version` 0 and the tables of
/// version 1.
pub fn unversioned_sqlite_database_opens_unchanged(fixture: &Fixture) {
    let store = fixture.open();
    store.write(|tx| tx.put_row(&row("old"))).unwrap().unwrap();
    store
        .write(|tx| tx.enqueue_build("queued-before-leases", 1))
        .unwrap()
        .unwrap();
    drop(store);
    // Back to version 1's tables: what later migrations added goes.
    fixture.raw(
        "ALTER TABLE resources DROP COLUMN tag_json;
         DROP INDEX builds_by_lease;
         ALTER TABLE builds DROP COLUMN heartbeat_millis;
         ALTER TABLE builds DROP COLUMN lease_expires_millis;",
    );
    fixture.set_version(0);
    let store = fixture.open();
    assert_eq!(list_all(&store), vec!["old".to_string()]);
    let claimed = store
        .write(|tx| tx.claim_build("w", 10, 5))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.as_deref(), Some("queued-before-leases"));
    let expired = store.read(|tx| tx.expired_leases(16, 10)).unwrap().unwrap();
    assert_eq!(expired.len(), 1, "the migrated queue has leases");
    drop(store);
    assert_eq!(fixture.version(), kiln_store::sqlite::SCHEMA_VERSION);
}

/// Version 5 gives every resource a copy of its tags.
pub fn version_4_sqlite_rows_get_their_tags_beside_them(fixture: &Fixture) {
    let store = fixture.open();
    let names = ["one", "two", "three"];
    store
        .write(|tx| {
            for name in names {
                let r = row(name);
                tx.put_row(&r)?;
                tx.set_tags(&r.arn, &[("name".to_string(), name.to_string())].into())?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap()
        .unwrap();
    drop(store);
    // Back to version 4's tables.
    fixture.raw("ALTER TABLE resources DROP COLUMN tag_json;");
    fixture.set_version(4);
    let store = fixture.open();
    assert_eq!(fixture.version(), 5);
    for name in names {
        let arn = row(name).arn;
        assert_eq!(
            fixture.sqlite_tag_json(&arn),
            Some(format!("{{\"name\":\"{name}\"}}"))
        );
        let tags = store
            .read(|tx| {
                assert!(tx.get_row(&arn)?.is_some());
                tx.tags(&arn)
            })
            .unwrap()
            .unwrap();
        assert_eq!(tags, [("name".to_string(), name.to_string())].into());
    }
    assert_eq!(list_all(&store), vec!["one", "three", "two"]);
}
