//! The tables on PostgreSQL: the same as SQLite's, with every text column in the "C" collation
//! so that ARNs sort byte by byte as they do in SQLite (pagination cursors compare ARNs, and a
//! locale's collation would order them differently from one database to the next).
//!
//! Version 4 keeps vulnerability data (records by (source, id), an index of the packages each
//! affects) and scan findings (by image, with the columns ListImageScanFindings filters on).
//!
//! Version 2 gives claimed builds a lease: when their worker last renewed it
//! (`heartbeat_millis`) and when it ends (`lease_expires_millis`), both null while unclaimed.
//!
//! The version is the one row of `schema_version`. Migrations run under their own advisory lock,
//! so servers starting at once migrate one after the other.

use super::MIGRATION_LOCK;
use crate::error::StoreError;
use postgres::Client;

/// Every migration, in order: `MIGRATIONS[i]` leads from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The version a database has after every migration this binary knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
             version BIGINT NOT NULL
         )",
    )?;
    let found: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])?
        .map(|r| r.get(0))
        .unwrap_or(0);
    for (version, sql) in crate::migrate::pending(url, found, MIGRATIONS)? {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version (one, version) VALUES (TRUE, $1)
             ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            &[&version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

const V1: &str = r#"
CREATE TABLE resources (
    arn TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    account TEXT COLLATE "C" NOT NULL,
    region TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C",
    build BIGINT,
    body TEXT NOT NULL
);
CREATE INDEX resources_by_scope ON resources (account, region, kind, arn);
CREATE INDEX resources_by_kind ON resources (kind, arn);
CREATE TABLE refs (
    from_arn TEXT COLLATE "C" NOT NULL,
    to_arn TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (from_arn, to_arn)
);
CREATE INDEX refs_by_target ON refs (to_arn);
CREATE TABLE tags (
    arn TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (arn, key)
);
CREATE TABLE tokens (
    account TEXT COLLATE "C" NOT NULL,
    region TEXT COLLATE "C" NOT NULL,
    operation TEXT COLLATE "C" NOT NULL,
    token TEXT COLLATE "C" NOT NULL,
    params_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_millis BIGINT NOT NULL,
    PRIMARY KEY (account, region, operation, token)
);
CREATE TABLE builds (
    arn TEXT COLLATE "C" PRIMARY KEY,
    queued_millis BIGINT NOT NULL,
    worker TEXT
);
CREATE INDEX builds_waiting ON builds (queued_millis, arn) WHERE worker IS NULL;
CREATE TABLE schedules (
    pipeline_arn TEXT COLLATE "C" PRIMARY KEY,
    next_run_millis BIGINT NOT NULL
);
CREATE INDEX schedules_by_time ON schedules (next_run_millis, pipeline_arn);
CREATE TABLE settings (
    name TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

const V2: &str = r#"
ALTER TABLE builds ADD COLUMN heartbeat_millis BIGINT, ADD COLUMN lease_expires_millis BIGINT;
CREATE INDEX builds_by_lease ON builds (lease_expires_millis) WHERE worker IS NOT NULL;
"#;

/// Build logs, appended in chunks by the worker that runs the build, read by any API server.
const V3: &str = r#"
CREATE TABLE build_logs (
    build_id TEXT COLLATE "C" NOT NULL,
    start_byte BIGINT NOT NULL,
    chunk BYTEA NOT NULL,
    last BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (build_id, start_byte)
);
"#;

/// Vulnerability records and scan findings (see the module's note on version 4).
const V4: &str = r#"
CREATE TABLE vuln_records (
    source TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    modified_millis BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE INDEX vuln_records_by_id ON vuln_records (id);
CREATE TABLE vuln_packages (
    ecosystem TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    source TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (ecosystem, name, source, id)
);
CREATE INDEX vuln_packages_by_record ON vuln_packages (source, id);
CREATE TABLE scan_findings (
    image_arn TEXT COLLATE "C" NOT NULL,
    vulnerability_id TEXT COLLATE "C" NOT NULL,
    account TEXT COLLATE "C" NOT NULL,
    region TEXT COLLATE "C" NOT NULL,
    pipeline_arn TEXT COLLATE "C",
    severity TEXT COLLATE "C" NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (image_arn, vulnerability_id)
);
CREATE INDEX scan_findings_by_scope
    ON scan_findings (account, region, image_arn, vulnerability_id);
CREATE INDEX scan_findings_by_pipeline
    ON scan_findings (account, region, pipeline_arn, image_arn, vulnerability_id);
CREATE INDEX scan_findings_by_vulnerability
    ON scan_findings (account, region, vulnerability_id, image_arn);
CREATE INDEX scan_findings_by_severity
    ON scan_findings (account, region, severity, image_arn, vulnerability_id);
"#;
