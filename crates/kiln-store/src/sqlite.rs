//! The embedded backend: one SQLite file in WAL mode.
//!
//! One connection writes, behind a mutex, so every write transaction sees the effects of the
//! previous one and check-then-insert sequences (name clashes, idempotency tokens, references)
//! cannot race. Reads use a small pool of read-only connections and never block the writer.
//! `synchronous=NORMAL` in WAL mode makes a committed transaction survive the process being
//! killed at any moment (the WAL is in the OS page cache once `COMMIT` returns); only a power
//! loss can lose the last commits, which `--sync full` would prevent at the cost of an fsync each.

use crate::error::StoreError;
use crate::txn::{ListQuery, Row, TokenKey, TokenRecord, Txn};
use kiln_domain::arn::ResourceKind;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    arn TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    build INTEGER,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS resources_by_scope ON resources (account, region, kind, arn);
CREATE TABLE IF NOT EXISTS refs (
    from_arn TEXT NOT NULL,
    to_arn TEXT NOT NULL,
    PRIMARY KEY (from_arn, to_arn)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_by_target ON refs (to_arn);
CREATE TABLE IF NOT EXISTS tags (
    arn TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (arn, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    operation TEXT NOT NULL,
    token TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_millis INTEGER NOT NULL,
    PRIMARY KEY (account, region, operation, token)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_by_age ON tokens (created_millis);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// How many idle read connections are kept.
const READ_POOL: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Survives a crash of the process (the default).
    Normal,
    /// Also survives a crash of the machine: an fsync per commit.
    Full,
}

pub struct SqliteStore {
    path: PathBuf,
    sync: Sync,
    /// The one write connection. It is taken out for the length of a transaction (the guard is
    /// held meanwhile); if a handler panics the connection is dropped, SQLite rolls back, and
    /// the next write opens a fresh one.
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
}

fn open_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path, sync: Sync) -> Result<SqliteStore, StoreError> {
        let writer = open_writer(path, sync)?;
        writer.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            sync,
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(conn)
    }

    /// Runs `f` in a read-only transaction. The outer `Result` is the store's own failure.
    pub fn read<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        let conn = self.reader()?;
        conn.execute_batch("BEGIN DEFERRED")?;
        let mut txn = SqliteTxn { conn };
        let result = f(&mut txn);
        txn.conn.execute_batch("ROLLBACK")?;
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READ_POOL {
            pool.push(txn.conn);
        }
        Ok(result)
    }

    /// Runs `f` in the write transaction: committed if `f` returns `Ok`, rolled back otherwise.
    pub fn write<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        let mut slot = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match slot.take() {
            Some(conn) => conn,
            None => open_writer(&self.path, self.sync)?,
        };
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut txn = SqliteTxn { conn };
        let result = f(&mut txn);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = txn.conn.execute_batch(end);
        if ended.is_err() {
            // Leave no half-open transaction on the connection we keep.
            let _ = txn.conn.execute_batch("ROLLBACK");
        }
        *slot = Some(txn.conn);
        ended?;
        Ok(result)
    }

    /// Forgets idempotency tokens created before `cutoff_millis`.
    pub fn purge_tokens(&self, cutoff_millis: i64) -> Result<usize, StoreError> {
        self.write(|tx| tx.purge_tokens(cutoff_millis))?
    }
}

fn open_writer(path: &Path, sync: Sync) -> Result<Connection, StoreError> {
    let writer = Connection::open(path).map_err(|e| open_error(path, e))?;
    writer.busy_timeout(std::time::Duration::from_secs(10))?;
    writer.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match sync {
        Sync::Normal => "NORMAL",
        Sync::Full => "FULL",
    };
    writer.pragma_update(None, "synchronous", sync)?;
    Ok(writer)
}

/// A transaction on a connection it owns (so that it is `'static` and can stand behind
/// `dyn Txn` in the generated handler trait).
struct SqliteTxn {
    conn: Connection,
}

fn kind_of(segment: &str) -> Result<ResourceKind, rusqlite::Error> {
    ResourceKind::from_segment(segment).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            format!("unknown kind {segment}").into(),
        )
    })
}

fn row_from(r: &rusqlite::Row<'_>) -> Result<Row, rusqlite::Error> {
    let kind: String = r.get(1)?;
    Ok(Row {
        arn: r.get(0)?,
        kind: kind_of(&kind)?,
        account: r.get(2)?,
        region: r.get(3)?,
        name: r.get(4)?,
        version: r.get(5)?,
        build: r.get(6)?,
        body: r.get(7)?,
    })
}

const ROW_COLUMNS: &str = "arn, kind, account, region, name, version, build, body";

impl Txn for SqliteTxn {
    fn get_row(&mut self, arn: &str) -> Result<Option<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM resources WHERE arn = ?1"
        ))?;
        Ok(stmt.query_row(params![arn], row_from).optional()?)
    }

    fn list_rows(&mut self, q: &ListQuery) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM resources
             WHERE account = ?1 AND region = ?2 AND kind = ?3
               AND (?4 IS NULL OR name = ?4) AND (?5 IS NULL OR arn > ?5)
             ORDER BY arn"
        ))?;
        let rows = stmt.query_map(
            params![q.account, q.region, q.kind.segment(), q.name, q.after],
            row_from,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn put_row(&mut self, row: &Row) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO resources ({ROW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))?;
        stmt.execute(params![
            row.arn,
            row.kind.segment(),
            row.account,
            row.region,
            row.name,
            row.version,
            row.build,
            row.body
        ])?;
        Ok(())
    }

    fn delete_row(&mut self, arn: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM resources WHERE arn = ?1")?
            .execute(params![arn])?;
        self.conn
            .prepare_cached("DELETE FROM tags WHERE arn = ?1")?
            .execute(params![arn])?;
        self.conn
            .prepare_cached("DELETE FROM refs WHERE from_arn = ?1")?
            .execute(params![arn])?;
        Ok(n > 0)
    }

    fn set_references(&mut self, from: &str, to: &[String]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM refs WHERE from_arn = ?1")?
            .execute(params![from])?;
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO refs (from_arn, to_arn) VALUES (?1, ?2)")?;
        for target in to {
            stmt.execute(params![from, target])?;
        }
        Ok(())
    }

    fn referrers(&mut self, to: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT from_arn FROM refs WHERE to_arn = ?1 ORDER BY from_arn")?;
        let rows = stmt.query_map(params![to], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    fn tags(&mut self, arn: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM tags WHERE arn = ?1")?;
        let rows = stmt.query_map(params![arn], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<BTreeMap<String, String>, _>>()?)
    }

    fn set_tags(&mut self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR REPLACE INTO tags (arn, key, value) VALUES (?1, ?2, ?3)")?;
        for (k, v) in tags {
            stmt.execute(params![arn, k, v])?;
        }
        Ok(())
    }

    fn remove_tags(&mut self, arn: &str, keys: &[String]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM tags WHERE arn = ?1 AND key = ?2")?;
        for k in keys {
            stmt.execute(params![arn, k])?;
        }
        Ok(())
    }

    fn get_token(&mut self, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT params_hash, response, created_millis FROM tokens
             WHERE account = ?1 AND region = ?2 AND operation = ?3 AND token = ?4",
        )?;
        Ok(stmt
            .query_row(
                params![key.account, key.region, key.operation, key.token],
                |r| {
                    Ok(TokenRecord {
                        params_hash: r.get(0)?,
                        response: r.get(1)?,
                        created_millis: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn put_token(&mut self, key: &TokenKey, record: &TokenRecord) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO tokens (account, region, operation, token, params_hash, response, created_millis)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                key.account,
                key.region,
                key.operation,
                key.token,
                record.params_hash,
                record.response,
                record.created_millis
            ])?;
        Ok(())
    }

    fn get_setting(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE name = ?1")?;
        Ok(stmt.query_row(params![name], |r| r.get(0)).optional()?)
    }

    fn purge_tokens(&mut self, cutoff_millis: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM tokens WHERE created_millis < ?1")?
            .execute(params![cutoff_millis])?)
    }

    fn put_setting(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)")?
            .execute(params![name, value])?;
        Ok(())
    }
}
