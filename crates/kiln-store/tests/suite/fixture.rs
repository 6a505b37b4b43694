//! A fresh database of each backend per test: a SQLite file in a temporary directory, or a
//! PostgreSQL database created on the server `KILN_TEST_DATABASE_URL` names and dropped after.

use kiln_store::{Database, Store, Sync};
use std::sync::atomic::{AtomicU64, Ordering};

pub enum Fixture {
    Sqlite {
        dir: tempfile::TempDir,
    },
    Postgres {
        /// The server's URL (its maintenance database), to drop the test database afterwards.
        admin: String,
        name: String,
        url: String,
    },
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{db}{query}", &base[..host_end])
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
        let Ok(admin) = std::env::var("KILN_TEST_DATABASE_URL") else {
            assert!(
                std::env::var("KILN_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KILN_TEST_REQUIRE_POSTGRES=1 but KILN_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipped: KILN_TEST_DATABASE_URL is not set");
            return None;
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "kiln_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to KILN_TEST_DATABASE_URL: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating a test database");
        let url = with_database(&admin, &name);
        Some(Fixture::Postgres { admin, name, url })
    }

    pub fn database(&self) -> Database {
        match self {
            Fixture::Sqlite { dir } => Database::Sqlite(dir.path().join("k.db")),
            Fixture::Postgres { url, .. } => Database::Postgres(url.clone()),
        }
    }

    pub fn open(&self) -> Store {
        Store::open(&self.database(), Sync::Normal).expect("opening the store")
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Fixture::Postgres { .. })
    }

    /// Runs SQL on the database outside any store (to tamper with it).
    fn raw(&self, sql: &str) {
        match self {
            Fixture::Sqlite { dir } => {
                let conn = rusqlite::Connection::open(dir.path().join("k.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Fixture::Postgres { url, .. } => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client.batch_execute(sql).unwrap();
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Fixture::Postgres { admin, name, .. } = self {
            if let Ok(mut client) = postgres::Client::connect(admin, postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u@127.0.0.1:5432/postgres", "t"),
        "postgres://u@127.0.0.1:5432/t"
    );
    assert_eq!(
        with_database("postgres://u@h:1?sslmode=disable", "t"),
        "postgres://u@h:1/t?sslmode=disable"
    );
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
            Fixture::Postgres { url, .. } => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client
                    .query_one("SELECT version FROM schema_version", &[])
                    .unwrap()
                    .get(0)
            }
        }
    }

    /// Ends every other session on the database, as a server restart would (PostgreSQL only).
    pub fn end_connections(&self) {
        if let Fixture::Postgres { admin, name, .. } = self {
            let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
            client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[name],
                )
                .unwrap();
            // Terminating is a signal: wait until the sessions are gone.
            for _ in 0..500 {
                let left: i64 = client
                    .query_one(
                        "SELECT COUNT(*) FROM pg_stat_activity
                         WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[name],
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
