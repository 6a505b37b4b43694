//! The store callers hold: SQLite in the data directory (the default) or a shared PostgreSQL
//! database. An enum rather than a trait object because `read` and `write` are generic over the
//! caller's closure; on SQLite each call costs one extra match and nothing else.

use crate::error::StoreError;
use crate::postgres::{redact, PgStore};
use crate::sqlite::{SqliteStore, Sync};
use crate::txn::{Read, Txn};
use std::path::PathBuf;

/// Where the database is.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (one process at a time).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (any number of processes).
    Postgres(String),
}

impl Database {
    /// A `--database` value: a `postgres://` or `postgresql://` URL.
    pub fn parse(value: &str) -> Result<Database, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(Database::Postgres(value.to_string()))
        } else {
            Err(format!(
                "'{}' is not a database URL: expected postgres://user@host:port/database \
                 (without --database, Kiln uses SQLite in the data directory)",
                redact(value)
            ))
        }
    }
}

/// Never shows a URL's password.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f.debug_tuple("Postgres").field(&redact(url)).finish(),
        }
    }
}

pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating or migrating as needed) the database. `sync` applies to SQLite;
    /// PostgreSQL's durability is the server's `synchronous_commit`.
    pub fn open(database: &Database, sync: Sync) -> Result<Store, StoreError> {
        Ok(match database {
            Database::Sqlite(path) => Store::Sqlite(SqliteStore::open(path, sync)?),
            Database::Postgres(url) => Store::Postgres(PgStore::open(url)?),
        })
    }

    /// See [`SqliteStore::read`]: a read-only transaction that sees every answered write.
    #[inline]
    pub fn read<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        match self {
            Store::Sqlite(s) => s.read(f),
            Store::Postgres(s) => s.read(f),
        }
    }

    /// See [`SqliteStore::write`]: one write transaction at a time, committed before it returns.
    #[inline]
    pub fn write<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        match self {
            Store::Sqlite(s) => s.write(f),
            Store::Postgres(s) => s.write(f),
        }
    }

    /// Anything read at this generation is still current: on SQLite this process's commit
    /// count; on PostgreSQL the database-wide write counter, read by a query sent after this
    /// call began (one round trip, shared by concurrent callers).
    #[inline]
    pub fn generation(&self) -> u64 {
        match self {
            Store::Sqlite(s) => s.generation(),
            Store::Postgres(s) => s.generation(),
        }
    }

    /// [`Store::read`], also answering the generation what `f` read belongs to, if it is known:
    /// an answer of `f` may be served again while [`Store::generation`] answers that number.
    /// `reads` are the reads `f` will make first (see [`Txn::prefetch`]): on PostgreSQL they go
    /// with the transaction's `BEGIN`.
    pub fn read_at<R, E>(
        &self,
        reads: &[Read],
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<(Result<R, E>, Option<u64>), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let before = s.generation();
                let result = s.read(f)?;
                Ok((result, (s.generation() == before).then_some(before)))
            }
            Store::Postgres(s) => {
                let (result, at) = s.read_at(reads, f)?;
                Ok((result, Some(at)))
            }
        }
    }

    /// Forgets idempotency tokens created before `cutoff_millis`.
    pub fn purge_tokens(&self, cutoff_millis: i64) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.purge_tokens(cutoff_millis),
            Store::Postgres(s) => s.purge_tokens(cutoff_millis),
        }
    }

    /// Calls `on_wake` whenever another process (or this one) commits a write that queues a
    /// build or moves a schedule; see `postgres::listen`. `None` on SQLite, which one process
    /// owns: its writes wake its own workers and scheduler directly.
    pub fn listen(
        &self,
        on_wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Option<crate::postgres::Listener>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(s) => s.listen(on_wake).map(Some),
        }
    }

    /// Whether more than one process may use this database at once.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }
}
