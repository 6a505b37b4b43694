//! Vulnerability records and scan findings on SQLite. Every statement is a cached prepared
//! one: an import of 100,000 records runs a few hundred thousand of them, and each costs a few
//! microseconds once planned. Lookups by many keys run one indexed lookup per key, which in an
//! embedded database costs what one statement over all of them would.

use super::txn::SqliteTxn;
use crate::error::StoreError;
use crate::vulndb::{
    check_findings_image, filter_parts, last_of_each, FindingFilter, FindingQuery, FindingRow,
    SeverityCountsRow, VulnPackageKey, VulnRecordRow, VulnSourceStatus,
};
use rusqlite::params;
use std::collections::BTreeMap;

const FINDING_COLUMNS: &str =
    "image_arn, account, region, pipeline_arn, vulnerability_id, severity, body";

fn finding_from(r: &rusqlite::Row<'_>) -> Result<FindingRow, rusqlite::Error> {
    Ok(FindingRow {
        image_arn: r.get(0)?,
        account: r.get(1)?,
        region: r.get(2)?,
        pipeline_arn: r.get(3)?,
        vulnerability_id: r.get(4)?,
        severity: r.get(5)?,
        body: r.get(6)?,
    })
}

fn record_from(r: &rusqlite::Row<'_>) -> Result<VulnRecordRow, rusqlite::Error> {
    Ok(VulnRecordRow {
        source: r.get(0)?,
        id: r.get(1)?,
        modified_millis: r.get(2)?,
        packages: Vec::new(),
        body: r.get(3)?,
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl SqliteTxn {
    pub(super) fn vuln_modified_impl(
        &mut self,
        source: &str,
        ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT modified_millis FROM vuln_records WHERE source = ?1 AND id = ?2",
        )?;
        let mut found = Vec::new();
        for id in ids {
            let mut rows = stmt.query(params![source, id])?;
            if let Some(row) = rows.next()? {
                found.push((id.clone(), row.get(0)?));
            }
        }
        Ok(found)
    }

    pub(super) fn vuln_ids_impl(&mut self, source: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM vuln_records WHERE source = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![source], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn put_vuln_records_impl(
        &mut self,
        rows: &[VulnRecordRow],
    ) -> Result<(), StoreError> {
        let mut upsert = self.conn.prepare_cached(
            "INSERT INTO vuln_records (source, id, modified_millis, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, id) DO UPDATE SET
             modified_millis = excluded.modified_millis, body = excluded.body",
        )?;
        let mut forget_keys = self
            .conn
            .prepare_cached("DELETE FROM vuln_packages WHERE source = ?1 AND id = ?2")?;
        let mut add_key = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO vuln_packages (ecosystem, name, source, id)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for row in last_of_each(rows) {
            upsert.execute(params![row.source, row.id, row.modified_millis, row.body])?;
            // A replaced record's keys go with it (an index lookup that finds nothing for a
            // new one).
            forget_keys.execute(params![row.source, row.id])?;
            for key in &row.packages {
                add_key.execute(params![key.ecosystem, key.name, row.source, row.id])?;
            }
        }
        Ok(())
    }

    pub(super) fn delete_vuln_records_impl(
        &mut self,
        source: &str,
        ids: &[String],
    ) -> Result<u64, StoreError> {
        let mut forget_keys = self
            .conn
            .prepare_cached("DELETE FROM vuln_packages WHERE source = ?1 AND id = ?2")?;
        let mut forget = self
            .conn
            .prepare_cached("DELETE FROM vuln_records WHERE source = ?1 AND id = ?2")?;
        let mut n = 0u64;
        for id in ids {
            forget_keys.execute(params![source, id])?;
            n += forget.execute(params![source, id])? as u64;
        }
        Ok(n)
    }

    pub(super) fn vuln_records_for_packages_impl(
        &mut self,
        keys: &[VulnPackageKey],
    ) -> Result<Vec<VulnRecordRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.source, r.id, r.modified_millis, r.body
             FROM vuln_packages p JOIN vuln_records r ON r.source = p.source AND r.id = p.id
             WHERE p.ecosystem = ?1 AND p.name = ?2",
        )?;
        let mut found = BTreeMap::new();
        for key in keys {
            for record in stmt.query_map(params![key.ecosystem, key.name], record_from)? {
                let record = record?;
                found
                    .entry((record.source.clone(), record.id.clone()))
                    .or_insert(record);
            }
        }
        Ok(found.into_values().collect())
    }

    pub(super) fn vuln_records_by_id_impl(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<VulnRecordRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT source, id, modified_millis, body FROM vuln_records WHERE id = ?1",
        )?;
        let mut found = BTreeMap::new();
        for id in ids {
            for record in stmt.query_map(params![id], record_from)? {
                let record = record?;
                found
                    .entry((record.source.clone(), record.id.clone()))
                    .or_insert(record);
            }
        }
        Ok(found.into_values().collect())
    }

    pub(super) fn vuln_status_impl(&mut self) -> Result<Vec<VulnSourceStatus>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT source, COUNT(*), MAX(modified_millis) FROM vuln_records
             GROUP BY source ORDER BY source",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(VulnSourceStatus {
                source: r.get(0)?,
                records: count(r.get(1)?),
                newest_modified_millis: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn replace_findings_impl(
        &mut self,
        image_arn: &str,
        rows: &[FindingRow],
    ) -> Result<(), StoreError> {
        check_findings_image(image_arn, rows)?;
        self.conn
            .prepare_cached("DELETE FROM scan_findings WHERE image_arn = ?1")?
            .execute(params![image_arn])?;
        self.update_findings_impl(image_arn, rows, &[])
    }

    pub(super) fn update_findings_impl(
        &mut self,
        image_arn: &str,
        put: &[FindingRow],
        remove: &[String],
    ) -> Result<(), StoreError> {
        check_findings_image(image_arn, put)?;
        let mut delete = self.conn.prepare_cached(
            "DELETE FROM scan_findings WHERE image_arn = ?1 AND vulnerability_id = ?2",
        )?;
        for id in remove {
            delete.execute(params![image_arn, id])?;
        }
        let mut insert = self.conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO scan_findings ({FINDING_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))?;
        for row in put {
            insert.execute(params![
                row.image_arn,
                row.account,
                row.region,
                row.pipeline_arn,
                row.vulnerability_id,
                row.severity,
                row.body
            ])?;
        }
        Ok(())
    }

    pub(super) fn findings_of_image_impl(
        &mut self,
        image_arn: &str,
    ) -> Result<Vec<FindingRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FINDING_COLUMNS} FROM scan_findings WHERE image_arn = ?1
             ORDER BY vulnerability_id"
        ))?;
        let rows = stmt.query_map(params![image_arn], finding_from)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn list_findings_impl(
        &mut self,
        q: &FindingQuery,
    ) -> Result<Vec<FindingRow>, StoreError> {
        // Without a cursor, everything sorts after ("", ""): ARNs and ids are never empty.
        let (after_image, after_id) = q
            .after
            .as_ref()
            .map(|(a, v)| (a.as_str(), v.as_str()))
            .unwrap_or(("", ""));
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let (condition, value) = match &q.filter {
            Some(filter) => {
                let (column, value) = filter_parts(filter);
                (format!("AND {column} = ?6"), Some(value))
            }
            None => ("AND ?6 IS NULL".to_string(), None),
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FINDING_COLUMNS} FROM scan_findings
             WHERE account = ?1 AND region = ?2 {condition}
               AND (image_arn, vulnerability_id) > (?3, ?4)
             ORDER BY image_arn, vulnerability_id LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![q.account, q.region, after_image, after_id, limit, value],
            finding_from,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn count_findings_impl(
        &mut self,
        account: &str,
        region: &str,
        filter: Option<&FindingFilter>,
    ) -> Result<SeverityCountsRow, StoreError> {
        let (condition, value) = match filter {
            Some(filter) => {
                let (column, value) = filter_parts(filter);
                (format!("AND {column} = ?3"), Some(value))
            }
            None => ("AND ?3 IS NULL".to_string(), None),
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT COUNT(*),
                    COUNT(*) FILTER (WHERE severity = 'CRITICAL'),
                    COUNT(*) FILTER (WHERE severity = 'HIGH'),
                    COUNT(*) FILTER (WHERE severity = 'MEDIUM')
             FROM scan_findings WHERE account = ?1 AND region = ?2 {condition}"
        ))?;
        Ok(stmt.query_row(params![account, region, value], |r| {
            Ok(SeverityCountsRow {
                all: count(r.get(0)?),
                critical: count(r.get(1)?),
                high: count(r.get(2)?),
                medium: count(r.get(3)?),
            })
        })?)
    }
}
