//! A fresh database of each backend per test: a SQLite file in a temporary directory, or a
//! PostgreSQL database created on the server `KILN_TEST_DATABASE_URL` names and dropped after.

use kiln_store::testing::TestDatabase;
use kiln_store::{Database, Store, Sync};

pub enum Fixture {
    Sqlite { dir: tempfile::TempDir },
    Postgres(TestDatabase),
}

impl Fixture {
    pub fn sqlite() -> Fixture {
        Fixture::Sqlite {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// `None` (the test is skipped) when no server is configured, unless
    /// `KILN_TEST_REQUIRE_POSTGRES=1` says one must be: then it fails, so that CI cannot skip.
    pub fn postgres() -> Option<Fixture> {
        TestDatabase::create().map(Fixture::Postgres)
    }

    pub fn database(&self) -> Database {
        match self {
            Fixture::Sqlite { dir } => Database::Sqlite(dir.path().join("k.db")),
            Fixture::Postgres(db) => Database::Postgres(db.url.clone()),
        }
    }

    pub fn open(&self) -> Store {
        Store::open(&self.database(), Sync::Normal).expect("opening the store")
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Fixture::Postgres(_))
    }

    /// Runs SQL on the database outside any store (to tamper with it).
    pub fn raw(&self, sql: &str) {
        match self {
            Fixture::Sqlite { dir } => {
                let conn = rusqlite::Connection::open(dir.path().join("k.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Fixture::Postgres(db) => {
                let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
                client.batch_execute(sql).unwrap();
            }
        }
    }
}

impl Fixture {
    /// The schema version the database records.
    pub fn version(&self) -> i64 {
        match self {
            Fixture::Sqlite { dir } => {
                let conn = rusqlite::Connection::open(dir.path().join("k.db")).unwrap();
                conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .unwrap()
            }
            Fixture::Postgres(db) => {
                let mut client = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
                client
                    .query_one("SELECT version FROM schema_version", &[])
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// The copy of its tags SQLite keeps beside the resource `arn`.
    pub fn sqlite_tag_json(&self, arn: &str) -> Option<String> {
        let Fixture::Sqlite { dir } = self else {
            panic!("tag_json is SQLite's");
        };
        let conn = rusqlite::Connection::open(dir.path().join("k.db")).unwrap();
        conn.query_row(
            "SELECT tag_json FROM resources WHERE arn = ?1",
            [arn],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Ends every other session on the database, as a server restart would (PostgreSQL only).
    pub fn end_connections(&self) {
        if let Fixture::Postgres(db) = self {
            let name = db.name();
            let mut client = postgres::Client::connect(db.admin_url(), postgres::NoTls).unwrap();
            client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .unwrap();
            // Terminating is a signal: wait until the sessions are gone.
            for _ in 0..500 {
                let left: i64 = client
                    .query_one(
                        "SELECT COUNT(*) FROM pg_stat_activity
                         WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&name],
                    )
                    .unwrap()
                    .get(0);
                if left == 0 {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("the sessions on {name} did not end");
        }
    }

    /// Records another schema version, as another Kiln would have.
    pub fn set_version(&self, version: i64) {
        match self {
            Fixture::Sqlite { .. } => self.raw(&format!("PRAGMA user_version = {version}")),
            Fixture::Postgres { .. } => {
                self.raw(&format!("UPDATE schema_version SET version = {version}"))
            }
        }
    }
}
