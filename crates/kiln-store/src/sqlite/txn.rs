//! `Txn` on a SQLite connection.

use crate::error::StoreError;
use crate::txn::{
    i64_of, slice_log, BuildLogPart, Lease, ListQuery, Row, TokenKey, TokenRecord, Txn,
    LOG_CHUNKS_PER_READ,
};
use crate::vulndb::{
    FindingFilter, FindingQuery, FindingRow, SeverityCountsRow, VulnPackageKey, VulnRecordRow,
    VulnSourceStatus,
};
use kiln_domain::arn::ResourceKind;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// The columns [`row_from`] reads, spelled out by a macro so that the statements using them
/// are constants: `prepare_cached` then looks up a literal instead of a string formatted on
/// every call (a Get's row read is the hot path).
macro_rules! row_columns {
    () => {
        "arn, kind, account, region, name, version, build, body"
    };
}

/// A transaction on a connection it owns (so that it is `'static` and can stand behind
/// `dyn Txn` in the generated handler trait). Beginning and ending it is the store's job.
pub(super) struct SqliteTxn {
    pub(super) conn: Connection,
    /// The copy of its tags (`tag_json`) of the row read last, or whose tags were written last,
    /// with its ARN. A Get reads a resource and then its tags: this answers the second from the
    /// first (and a write of tags after it starts from it). Dropped by every other write.
    known_tags: Option<(String, String)>,
}

impl SqliteTxn {
    pub(super) fn new(conn: Connection) -> SqliteTxn {
        SqliteTxn {
            conn,
            known_tags: None,
        }
    }

    /// `arn`'s tags as its row's copy holds them, if that copy is the one read or written last.
    fn known_tags(&self, arn: &str) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        match &self.known_tags {
            Some((known, json)) if known == arn => {
                serde_json::from_str(json)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        arn: arn.to_string(),
                        message: format!("tag_json: {e}"),
                    })
            }
            _ => Ok(None),
        }
    }

    /// Inserts or replaces `row`, whose tags were just written as `tags` (none: not written).
    /// The row's copy of its tags is `tags` when the table holds just those for the ARN; when it
    /// holds more (tags stored before the row), null: read the table until tags are next
    /// written. A row stored again without tags keeps its copy.
    fn upsert_row(&mut self, row: &Row, tags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        self.known_tags = None;
        let json = if tags.is_empty() {
            "{}".to_string()
        } else {
            to_tag_json(&row.arn, tags)?
        };
        let count = i64::try_from(tags.len()).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(concat!(
            "INSERT INTO resources (",
            row_columns!(),
            ", tag_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                CASE WHEN (SELECT COUNT(*) FROM tags WHERE arn = ?1) = ?9 THEN ?10 END)
             ON CONFLICT (arn) DO UPDATE SET kind = excluded.kind, account = excluded.account,
             region = excluded.region, name = excluded.name, version = excluded.version,
             build = excluded.build, body = excluded.body,
             tag_json = CASE WHEN ?9 = 0 THEN tag_json ELSE excluded.tag_json END"
        ))?;
        stmt.execute(params![
            row.arn,
            row.kind.segment(),
            row.account,
            row.region,
            row.name,
            row.version,
            row.build,
            row.body,
            count,
            json
        ])?;
        Ok(())
    }

    /// After a write of `arn`'s tags, which now are `tags` (`None`: read them from the table):
    /// its row's copy (if it has a row) is the table's again.
    fn refresh_tag_json(
        &mut self,
        arn: &str,
        tags: Option<BTreeMap<String, String>>,
    ) -> Result<(), StoreError> {
        let tags = match tags {
            Some(tags) => tags,
            None => table_tags(&self.conn, arn)?,
        };
        let json = to_tag_json(arn, &tags)?;
        let updated = self
            .conn
            .prepare_cached("UPDATE resources SET tag_json = ?2 WHERE arn = ?1")?
            .execute(params![arn, json])?;
        if updated > 0 {
            self.known_tags = Some((arn.to_string(), json));
        }
        Ok(())
    }
}

/// The tags the tags table holds for `arn`.
fn table_tags(conn: &Connection, arn: &str) -> Result<BTreeMap<String, String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM tags WHERE arn = ?1")?;
    let rows = stmt.query_map(params![arn], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<BTreeMap<String, String>, _>>()?)
}

/// The copy of `tags` a row keeps in `tag_json`.
fn to_tag_json(arn: &str, tags: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(tags).map_err(|e| StoreError::Corrupt {
        arn: arn.to_string(),
        message: format!("tags: {e}"),
    })
}

/// The copy of `arn`'s tags its row keeps in `tag_json`, made from the tags table.
pub(super) fn tag_json(conn: &Connection, arn: &str) -> Result<String, StoreError> {
    to_tag_json(arn, &table_tags(conn, arn)?)
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

impl Txn for SqliteTxn {
    fn get_row(&mut self, arn: &str) -> Result<Option<Row>, StoreError> {
        let found = self
            .conn
            .prepare_cached(concat!(
                "SELECT ",
                row_columns!(),
                ", tag_json FROM resources WHERE arn = ?1"
            ))?
            .query_row(params![arn], |r| {
                Ok((row_from(r)?, r.get::<_, Option<String>>(8)?))
            })
            .optional()?;
        let Some((row, tags)) = found else {
            return Ok(None);
        };
        self.known_tags = tags.map(|tags| (row.arn.clone(), tags));
        Ok(Some(row))
    }

    fn list_rows(&mut self, q: &ListQuery) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(concat!(
            "SELECT ",
            row_columns!(),
            " FROM resources
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

    fn count_rows(
        &mut self,
        account: &str,
        region: &str,
        kind: ResourceKind,
    ) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT COUNT(*) FROM resources WHERE account = ?1 AND region = ?2 AND kind = ?3",
        )?;
        let n: i64 = stmt.query_row(params![account, region, kind.segment()], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn rows_of_kind(
        &mut self,
        kind: ResourceKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(concat!(
            "SELECT ",
            row_columns!(),
            " FROM resources
             WHERE kind = ?1 AND (?2 IS NULL OR arn > ?2) ORDER BY arn LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![kind.segment(), after, limit], row_from)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn put_row(&mut self, row: &Row) -> Result<(), StoreError> {
        self.upsert_row(row, &BTreeMap::new())
    }

    fn put_row_tagged(
        &mut self,
        row: &Row,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.known_tags = None;
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR REPLACE INTO tags (arn, key, value) VALUES (?1, ?2, ?3)")?;
        for (k, v) in tags {
            stmt.execute(params![row.arn, k, v])?;
        }
        drop(stmt);
        self.upsert_row(row, tags)
    }

    fn delete_row(&mut self, arn: &str) -> Result<bool, StoreError> {
        self.known_tags = None;
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
        match self.known_tags(arn)? {
            Some(tags) => Ok(tags),
            None => table_tags(&self.conn, arn),
        }
    }

    fn set_tags(&mut self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let known = self.known_tags(arn)?;
        self.known_tags = None;
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR REPLACE INTO tags (arn, key, value) VALUES (?1, ?2, ?3)")?;
        for (k, v) in tags {
            stmt.execute(params![arn, k, v])?;
        }
        drop(stmt);
        let now = known.map(|mut known| {
            known.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            known
        });
        self.refresh_tag_json(arn, now)
    }

    fn remove_tags(&mut self, arn: &str, keys: &[String]) -> Result<(), StoreError> {
        let known = self.known_tags(arn)?;
        self.known_tags = None;
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM tags WHERE arn = ?1 AND key = ?2")?;
        for k in keys {
            stmt.execute(params![arn, k])?;
        }
        drop(stmt);
        let now = known.map(|mut known| {
            known.retain(|k, _| !keys.contains(k));
            known
        });
        self.refresh_tag_json(arn, now)
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
                "INSERT INTO tokens (account, region, operation, token, params_hash, response, created_millis)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (account, region, operation, token) DO UPDATE SET
                 params_hash = excluded.params_hash, response = excluded.response, created_millis = excluded.created_millis",
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

    fn append_build_log(
        &mut self,
        build_id: &str,
        offset: u64,
        chunk: &[u8],
        last: bool,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO build_logs (build_id, start_byte, chunk, last) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![build_id, i64_of(offset), chunk, last])?;
        Ok(())
    }

    fn read_build_log(
        &mut self,
        build_id: &str,
        offset: u64,
        max: usize,
    ) -> Result<BuildLogPart, StoreError> {
        // The newest chunk ends the log, and only the closing append is `last`.
        let (size, complete): (i64, bool) = self
            .conn
            .prepare_cached(
                "SELECT start_byte + length(chunk), last FROM build_logs
                 WHERE build_id = ?1 ORDER BY start_byte DESC LIMIT 1",
            )?
            .query_row(params![build_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, false));
        // From the chunk that holds `offset` on.
        let chunks = self
            .conn
            .prepare_cached(
                "SELECT start_byte, chunk FROM build_logs
                 WHERE build_id = ?1 AND start_byte >= COALESCE(
                     (SELECT MAX(start_byte) FROM build_logs
                      WHERE build_id = ?1 AND start_byte <= ?2), 0)
                 ORDER BY start_byte LIMIT ?3",
            )?
            .query_map(
                params![build_id, i64_of(offset), LOG_CHUNKS_PER_READ],
                |r| Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?)),
            )?
            .collect::<Result<Vec<(u64, Vec<u8>)>, _>>()?;
        Ok(BuildLogPart {
            data: slice_log(&chunks, offset, max),
            size: u64::try_from(size).unwrap_or(0),
            complete,
        })
    }

    fn delete_build_log(&mut self, build_id: &str) -> Result<u64, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM build_logs WHERE build_id = ?1")?
            .execute(params![build_id])?;
        Ok(n as u64)
    }

    fn enqueue_build(&mut self, arn: &str, queued_millis: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO builds (arn, queued_millis, worker) VALUES (?1, ?2, NULL)",
            )?
            .execute(params![arn, queued_millis])?;
        Ok(())
    }

    fn claim_build(
        &mut self,
        worker: &str,
        now_millis: i64,
        lease_millis: i64,
    ) -> Result<Option<String>, StoreError> {
        let arn: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT arn FROM builds WHERE worker IS NULL ORDER BY queued_millis, arn LIMIT 1",
            )?
            .query_row([], |r| r.get(0))
            .optional()?;
        if let Some(arn) = &arn {
            self.conn
                .prepare_cached(
                    "UPDATE builds SET worker = ?2, heartbeat_millis = ?3, lease_expires_millis = ?4
                     WHERE arn = ?1",
                )?
                .execute(params![
                    arn,
                    worker,
                    now_millis,
                    now_millis.saturating_add(lease_millis)
                ])?;
        }
        Ok(arn)
    }

    fn renew_leases(
        &mut self,
        worker: &str,
        now_millis: i64,
        expires_millis: i64,
    ) -> Result<usize, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE builds SET heartbeat_millis = ?2, lease_expires_millis = ?3
                 WHERE worker = ?1",
            )?
            .execute(params![worker, now_millis, expires_millis])?;
        Ok(n)
    }

    fn expired_leases(&mut self, now_millis: i64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT arn, worker, heartbeat_millis, lease_expires_millis FROM builds
             WHERE worker IS NOT NULL
               AND (lease_expires_millis IS NULL OR lease_expires_millis < ?1)
             ORDER BY lease_expires_millis, arn LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![now_millis, limit], |r| {
            Ok(Lease {
                arn: r.get(0)?,
                worker: r.get(1)?,
                heartbeat_millis: r.get(2)?,
                expires_millis: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn take_expired(&mut self, lease: &Lease, now_millis: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM builds WHERE arn = ?1 AND worker = ?2
                   AND (lease_expires_millis IS NULL OR lease_expires_millis < ?3)",
            )?
            .execute(params![lease.arn, lease.worker, now_millis])?;
        Ok(n > 0)
    }

    fn finish_build(&mut self, arn: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM builds WHERE arn = ?1")?
            .execute(params![arn])?;
        Ok(())
    }

    fn queued_builds(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT arn, worker FROM builds ORDER BY queued_millis, arn")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_next_run(
        &mut self,
        pipeline_arn: &str,
        next_millis: Option<i64>,
    ) -> Result<(), StoreError> {
        match next_millis {
            Some(next) => self
                .conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO schedules (pipeline_arn, next_run_millis) VALUES (?1, ?2)",
                )?
                .execute(params![pipeline_arn, next])?,
            None => self
                .conn
                .prepare_cached("DELETE FROM schedules WHERE pipeline_arn = ?1")?
                .execute(params![pipeline_arn])?,
        };
        Ok(())
    }

    fn due_runs(
        &mut self,
        now_millis: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT pipeline_arn, next_run_millis FROM schedules WHERE next_run_millis <= ?1 \
             ORDER BY next_run_millis, pipeline_arn LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_millis, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn earliest_run(&mut self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT MIN(next_run_millis) FROM schedules")?
            .query_row([], |r| r.get(0))?)
    }

    fn claim_run(
        &mut self,
        pipeline_arn: &str,
        due_millis: i64,
        next_millis: Option<i64>,
    ) -> Result<bool, StoreError> {
        let n = match next_millis {
            Some(next) => self
                .conn
                .prepare_cached(
                    "UPDATE schedules SET next_run_millis = ?3 \
                     WHERE pipeline_arn = ?1 AND next_run_millis = ?2",
                )?
                .execute(params![pipeline_arn, due_millis, next])?,
            None => self
                .conn
                .prepare_cached(
                    "DELETE FROM schedules WHERE pipeline_arn = ?1 AND next_run_millis = ?2",
                )?
                .execute(params![pipeline_arn, due_millis])?,
        };
        Ok(n == 1)
    }

    fn vuln_modified(
        &mut self,
        source: &str,
        ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.vuln_modified_impl(source, ids)
    }

    fn vuln_ids(&mut self, source: &str) -> Result<Vec<String>, StoreError> {
        self.vuln_ids_impl(source)
    }

    fn put_vuln_records(&mut self, rows: &[VulnRecordRow]) -> Result<(), StoreError> {
        self.put_vuln_records_impl(rows)
    }

    fn delete_vuln_records(&mut self, source: &str, ids: &[String]) -> Result<u64, StoreError> {
        self.delete_vuln_records_impl(source, ids)
    }

    fn vuln_records_for_packages(
        &mut self,
        keys: &[VulnPackageKey],
    ) -> Result<Vec<VulnRecordRow>, StoreError> {
        self.vuln_records_for_packages_impl(keys)
    }

    fn vuln_records_by_id(&mut self, ids: &[String]) -> Result<Vec<VulnRecordRow>, StoreError> {
        self.vuln_records_by_id_impl(ids)
    }

    fn vuln_status(&mut self) -> Result<Vec<VulnSourceStatus>, StoreError> {
        self.vuln_status_impl()
    }

    /// One process owns a SQLite database: its own workers learn of the import directly.
    fn notify_workers(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn replace_findings(&mut self, image_arn: &str, rows: &[FindingRow]) -> Result<(), StoreError> {
        self.replace_findings_impl(image_arn, rows)
    }

    fn update_findings(
        &mut self,
        image_arn: &str,
        put: &[FindingRow],
        remove: &[String],
    ) -> Result<(), StoreError> {
        self.update_findings_impl(image_arn, put, remove)
    }

    fn findings_of_image(&mut self, image_arn: &str) -> Result<Vec<FindingRow>, StoreError> {
        self.findings_of_image_impl(image_arn)
    }

    fn list_findings(&mut self, query: &FindingQuery) -> Result<Vec<FindingRow>, StoreError> {
        self.list_findings_impl(query)
    }

    fn count_findings(
        &mut self,
        account: &str,
        region: &str,
        filter: Option<&FindingFilter>,
    ) -> Result<SeverityCountsRow, StoreError> {
        self.count_findings_impl(account, region, filter)
    }
}
