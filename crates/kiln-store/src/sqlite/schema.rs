//! The tables. Resources are a rowid table with a unique index on the ARN: bodies are a few
//! kilobytes of JSON, and SQLite keeps large rows out of index pages only in rowid tables.
//! Tokens are small rows keyed by their scope, so they need no second index; the hourly purge
//! scans them. Schedules are the due set of the scheduler: one row per pipeline that will run on
//! its schedule, indexed by time so that finding what is due never scans the others.
//!
//! Version 4 keeps vulnerability data (records by (source, id), an index of the packages each
//! affects) and scan findings (by image, with the columns ListImageScanFindings filters on).
//!
//! Version 5 lets a Get read a resource and its tags in one lookup: rows carry a copy of their
//! tags as a JSON object (`tag_json`), which every write of the tags table refreshes; the table
//! stays the truth for every other read of tags.
//!
//! Version 2 gives claimed builds a lease: when their worker last renewed it
//! (`heartbeat_millis`) and when it ends (`lease_expires_millis`), both null while unclaimed.
//!
//! The version is SQLite's `user_version`. Databases made before versions existed have 0 and
//! the tables of version 1: the first migration only creates what is missing, so they open
//! unchanged.

use crate::error::StoreError;
use rusqlite::Connection;

/// Every migration, in order: `MIGRATIONS[i]` leads from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The version a database has after every migration this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to the newest version this binary knows, in one transaction.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Read again under the write lock: only the version seen here is the one to migrate from.
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (version, sql) in crate::migrate::pending(path, found, MIGRATIONS)? {
        tx.execute_batch(sql)?;
        if version == 5 {
            fill_version_5(&tx)?;
        }
        tx.pragma_update(None, "user_version", version)?;
    }
    tx.commit()?;
    Ok(())
}

/// Gives every resource its tags' copy.
fn fill_version_5(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let rows: Vec<(i64, String)> = tx
        .prepare("SELECT id, arn FROM resources")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut fill = tx.prepare("UPDATE resources SET tag_json = ?1 WHERE id = ?2")?;
    for (id, arn) in rows {
        let tags = super::txn::tag_json(tx, &arn)?;
        fill.execute(rusqlite::params![tags, id])?;
    }
    Ok(())
}

const V1: &str = "
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY,
    arn TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    build INTEGER,
    body TEXT NOT NULL
);
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
CREATE TABLE IF NOT EXISTS builds (
    arn TEXT PRIMARY KEY,
    queued_millis INTEGER NOT NULL,
    worker TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedules (
    pipeline_arn TEXT PRIMARY KEY,
    next_run_millis INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS schedules_by_time ON schedules (next_run_millis, pipeline_arn);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

const V2: &str = "
ALTER TABLE builds ADD COLUMN heartbeat_millis INTEGER;
ALTER TABLE builds ADD COLUMN lease_expires_millis INTEGER;
CREATE INDEX builds_by_lease ON builds (lease_expires_millis) WHERE worker IS NOT NULL;
";

/// Build logs, for the API servers of other machines (written only on a shared database, but
/// the tables are the same on both backends).
const V3: &str = "
CREATE TABLE IF NOT EXISTS build_logs (
    build_id TEXT NOT NULL,
    start_byte INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    last INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (build_id, start_byte)
) WITHOUT ROWID;
";

/// Vulnerability records and scan findings. Records and findings are rowid tables (their
/// bodies are a kilobyte or more of JSON); the package index is a covering key of its own, so
/// a lookup by (ecosystem, name) reads no record it does not answer.
const V4: &str = "
CREATE TABLE IF NOT EXISTS vuln_records (
    rid INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    modified_millis INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (source, id)
);
CREATE INDEX IF NOT EXISTS vuln_records_by_id ON vuln_records (id);
CREATE TABLE IF NOT EXISTS vuln_packages (
    ecosystem TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (ecosystem, name, source, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vuln_packages_by_record ON vuln_packages (source, id);
CREATE TABLE IF NOT EXISTS scan_findings (
    fid INTEGER PRIMARY KEY,
    image_arn TEXT NOT NULL,
    vulnerability_id TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    pipeline_arn TEXT,
    severity TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (image_arn, vulnerability_id)
);
CREATE INDEX IF NOT EXISTS scan_findings_by_scope
    ON scan_findings (account, region, image_arn, vulnerability_id);
CREATE INDEX IF NOT EXISTS scan_findings_by_pipeline
    ON scan_findings (account, region, pipeline_arn, image_arn, vulnerability_id);
CREATE INDEX IF NOT EXISTS scan_findings_by_vulnerability
    ON scan_findings (account, region, vulnerability_id, image_arn);
CREATE INDEX IF NOT EXISTS scan_findings_by_severity
    ON scan_findings (account, region, severity, image_arn, vulnerability_id);
";

/// What a Get reads beside a resource's row (see the module's notes on version 5). The store
/// writes the column itself (`fill_version_5` for the rows already there): SQLite's JSON
/// functions end strings at a NUL, and tags are stored as they came.
const V5: &str = "
ALTER TABLE resources ADD COLUMN tag_json TEXT;
";
