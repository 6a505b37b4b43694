//! For tests of shared databases, in this crate and in others: a throwaway PostgreSQL database
//! created on the server `KILN_TEST_DATABASE_URL` names and dropped when the value is dropped.
//! Without that variable the tests that ask for one skip, unless `KILN_TEST_REQUIRE_POSTGRES=1`
//! says one must be there: then they fail, so that CI cannot skip them silently.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct TestDatabase {
    /// The server's URL (its maintenance database), to drop the test database afterwards.
    admin: String,
    name: String,
    /// The URL of the test database.
    pub url: String,
}

impl TestDatabase {
    /// A new database, or `None` (skip) when no server is configured. The blocking client runs
    /// on a thread of its own, as it refuses to run inside an async runtime (the SDK tests').
    pub fn create() -> Option<TestDatabase> {
        std::thread::spawn(TestDatabase::create_here)
            .join()
            .expect("creating a test database")
    }

    fn create_here() -> Option<TestDatabase> {
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
        Some(TestDatabase { admin, name, url })
    }
}

impl TestDatabase {
    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's maintenance database, for what must not run inside the test database.
    pub fn admin_url(&self) -> &str {
        &self.admin
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
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

#[cfg(test)]
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
