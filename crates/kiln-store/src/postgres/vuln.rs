//! Vulnerability records and scan findings on PostgreSQL. Writes go in chunks of rows passed as
//! arrays (`unnest`), so an import of 100,000 records is a few hundred round trips instead of
//! one per row; lookups by many keys are one query over an array of them. Reads run after the
//! call's deferred writes are sent (`Conn::query`), so they see the transaction's own writes.

use super::text::{dec, dec_opt, enc};
use super::txn::PgTxn;
use crate::error::StoreError;
use crate::vulndb::{
    check_findings_image, last_finding_of_each, last_of_each, FindingFilter, FindingQuery,
    FindingRow, SeverityCountsRow, VulnPackageKey, VulnRecordRow, VulnSourceStatus,
};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Rows per statement: large enough that round trips do not matter, small enough that one
/// statement's parameters stay a few megabytes.
const CHUNK: usize = 1000;
/// Keys per lookup statement (an array parameter each).
const LOOKUP_CHUNK: usize = 5000;

/// Which of a chunk's records exist. Writes run under the database-wide writer lock, so none
/// appears between this and the writes that follow.
const EXISTING: &str = "SELECT source, id FROM vuln_records
     WHERE (source, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";
/// New records and every key: `COPY`, the server's fastest way in (an insert's `ON CONFLICT`
/// alone doubles its work per row, and the executor adds more).
const COPY_RECORDS: &str =
    "COPY vuln_records (source, id, modified_millis, body) FROM STDIN (FORMAT binary)";
const COPY_KEYS: &str =
    "COPY vuln_packages (ecosystem, name, source, id) FROM STDIN (FORMAT binary)";
const UPDATE_RECORDS: &str = "UPDATE vuln_records r SET modified_millis = u.modified, body = u.body
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) AS u(source, id, modified, body)
     WHERE r.source = u.source AND r.id = u.id";
const FORGET_KEYS: &str = "DELETE FROM vuln_packages
     WHERE (source, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";
const FOR_PACKAGES: &str = "SELECT source, id, modified_millis, body FROM vuln_records
     WHERE (source, id) IN (
         SELECT p.source, p.id FROM vuln_packages p
         WHERE (p.ecosystem, p.name) IN (SELECT * FROM unnest($1::text[], $2::text[])))";

/// A findings query for each filter (none, then [`FindingFilter`]'s order): statements are
/// prepared by their text, and one per filter lets each use its own index.
/// `$n` is the filter value's parameter (null without a filter).
macro_rules! per_filter {
    ($head:literal, $n:literal, $tail:literal) => {
        [
            concat!($head, " AND $", $n, "::text IS NULL ", $tail),
            concat!($head, " AND image_arn = $", $n, " ", $tail),
            concat!($head, " AND pipeline_arn = $", $n, " ", $tail),
            concat!($head, " AND vulnerability_id = $", $n, " ", $tail),
            concat!($head, " AND severity = $", $n, " ", $tail),
        ]
    };
}

const LIST_FINDINGS: [&str; 5] = per_filter!(
    "SELECT image_arn, account, region, pipeline_arn, vulnerability_id, severity, body
     FROM scan_findings WHERE account = $1 AND region = $2",
    6,
    "AND (image_arn, vulnerability_id) > ($3, $4)
     ORDER BY image_arn, vulnerability_id LIMIT $5"
);

const COUNT_FINDINGS: [&str; 5] = per_filter!(
    "SELECT COUNT(*),
            COUNT(*) FILTER (WHERE severity = 'CRITICAL'),
            COUNT(*) FILTER (WHERE severity = 'HIGH'),
            COUNT(*) FILTER (WHERE severity = 'MEDIUM')
     FROM scan_findings WHERE account = $1 AND region = $2",
    3,
    ""
);

/// The statement of `filter` among those of [`per_filter`], and the value it compares.
fn pick<'a>(
    statements: &[&'static str; 5],
    filter: Option<&'a FindingFilter>,
) -> (&'static str, Option<&'a str>) {
    match filter {
        None => (statements[0], None),
        Some(FindingFilter::Image(v)) => (statements[1], Some(v)),
        Some(FindingFilter::Pipeline(v)) => (statements[2], Some(v)),
        Some(FindingFilter::Vulnerability(v)) => (statements[3], Some(v)),
        Some(FindingFilter::Severity(v)) => (statements[4], Some(v)),
    }
}

fn record_from(r: &postgres::Row) -> Result<VulnRecordRow, postgres::Error> {
    Ok(VulnRecordRow {
        source: dec(r.try_get(0)?),
        id: dec(r.try_get(1)?),
        modified_millis: r.try_get(2)?,
        packages: Vec::new(),
        body: dec(r.try_get(3)?),
    })
}

fn finding_from(r: &postgres::Row) -> Result<FindingRow, postgres::Error> {
    Ok(FindingRow {
        image_arn: dec(r.try_get(0)?),
        account: dec(r.try_get(1)?),
        region: dec(r.try_get(2)?),
        pipeline_arn: dec_opt(r.try_get(3)?),
        vulnerability_id: dec(r.try_get(4)?),
        severity: dec(r.try_get(5)?),
        body: dec(r.try_get(6)?),
    })
}

/// A chunk's records as the four arrays of the insert and update statements.
fn columns(rows: &[&VulnRecordRow]) -> (Vec<String>, Vec<String>, Vec<i64>, Vec<String>) {
    (
        rows.iter().map(|r| enc(&r.source).into_owned()).collect(),
        rows.iter().map(|r| enc(&r.id).into_owned()).collect(),
        rows.iter().map(|r| r.modified_millis).collect(),
        rows.iter().map(|r| enc(&r.body).into_owned()).collect(),
    )
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn encoded(values: &[String]) -> Vec<String> {
    values.iter().map(|v| enc(v).into_owned()).collect()
}

impl PgTxn {
    pub(super) fn vuln_modified_impl(
        &mut self,
        source: &str,
        ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let rows = self.conn.query(
                "SELECT id, modified_millis FROM vuln_records WHERE source = $1 AND id = ANY($2)",
                &[&enc(source), &encoded(chunk)],
            )?;
            for r in &rows {
                found.push((dec(r.try_get(0)?), r.try_get(1)?));
            }
        }
        Ok(found)
    }

    pub(super) fn vuln_ids_impl(&mut self, source: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT id FROM vuln_records WHERE source = $1 ORDER BY id",
            &[&enc(source)],
        )?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0).map(dec))
            .collect::<Result<_, _>>()?)
    }

    pub(super) fn put_vuln_records_impl(
        &mut self,
        rows: &[VulnRecordRow],
    ) -> Result<(), StoreError> {
        for chunk in last_of_each(rows).chunks(CHUNK) {
            let existing = self.existing(chunk)?;
            let (old, new): (Vec<&VulnRecordRow>, Vec<&VulnRecordRow>) = chunk
                .iter()
                .partition(|r| existing.contains(&(r.source.as_str(), r.id.as_str())));
            if !new.is_empty() {
                self.conn.write_with_client(|client| {
                    let sink = client.copy_in(COPY_RECORDS)?;
                    let types = [Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT];
                    let mut writer = BinaryCopyInWriter::new(sink, &types);
                    for r in &new {
                        writer.write(&[
                            &enc(&r.source),
                            &enc(&r.id),
                            &r.modified_millis,
                            &enc(&r.body),
                        ])?;
                    }
                    writer.finish()
                })?;
            }
            if !old.is_empty() {
                let (sources, ids, modified, bodies) = columns(&old);
                self.conn
                    .execute(UPDATE_RECORDS, &[&sources, &ids, &modified, &bodies])?;
                // A replaced record's old keys go with it.
                self.conn.execute(FORGET_KEYS, &[&sources, &ids])?;
            }
            // No key can clash: the records' old keys are gone, each record comes once in a
            // call (`last_of_each`), and its keys once each.
            self.conn.write_with_client(|client| {
                let sink = client.copy_in(COPY_KEYS)?;
                let types = [Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT];
                let mut writer = BinaryCopyInWriter::new(sink, &types);
                for row in chunk {
                    let (source, id) = (enc(&row.source), enc(&row.id));
                    let keys: BTreeSet<&VulnPackageKey> = row.packages.iter().collect();
                    for key in keys {
                        writer.write(&[&enc(&key.ecosystem), &enc(&key.name), &source, &id])?;
                    }
                }
                writer.finish()
            })?;
        }
        Ok(())
    }

    /// The (source, id) of those of `chunk` that are stored.
    fn existing<'a>(
        &mut self,
        chunk: &[&'a VulnRecordRow],
    ) -> Result<HashSet<(&'a str, &'a str)>, StoreError> {
        let sources: Vec<String> = chunk.iter().map(|r| enc(&r.source).into_owned()).collect();
        let ids: Vec<String> = chunk.iter().map(|r| enc(&r.id).into_owned()).collect();
        let rows = self.conn.query(EXISTING, &[&sources, &ids])?;
        let mut stored = HashSet::new();
        for r in &rows {
            stored.insert((dec(r.try_get(0)?), dec(r.try_get(1)?)));
        }
        Ok(chunk
            .iter()
            .filter(|r| stored.contains(&(r.source.clone(), r.id.clone())))
            .map(|r| (r.source.as_str(), r.id.as_str()))
            .collect())
    }

    pub(super) fn delete_vuln_records_impl(
        &mut self,
        source: &str,
        ids: &[String],
    ) -> Result<u64, StoreError> {
        let source = enc(source);
        let mut n = 0;
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let chunk = encoded(chunk);
            self.conn.execute(
                "DELETE FROM vuln_packages WHERE source = $1 AND id = ANY($2)",
                &[&source, &chunk],
            )?;
            n += self.conn.execute(
                "DELETE FROM vuln_records WHERE source = $1 AND id = ANY($2)",
                &[&source, &chunk],
            )?;
        }
        Ok(n)
    }

    pub(super) fn vuln_records_for_packages_impl(
        &mut self,
        keys: &[VulnPackageKey],
    ) -> Result<Vec<VulnRecordRow>, StoreError> {
        let mut found = BTreeMap::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let ecosystems: Vec<String> = chunk
                .iter()
                .map(|k| enc(&k.ecosystem).into_owned())
                .collect();
            let names: Vec<String> = chunk.iter().map(|k| enc(&k.name).into_owned()).collect();
            for r in &self.conn.query(FOR_PACKAGES, &[&ecosystems, &names])? {
                let record = record_from(r)?;
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
        let mut found = BTreeMap::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let rows = self.conn.query(
                "SELECT source, id, modified_millis, body FROM vuln_records WHERE id = ANY($1)",
                &[&encoded(chunk)],
            )?;
            for r in &rows {
                let record = record_from(r)?;
                found
                    .entry((record.source.clone(), record.id.clone()))
                    .or_insert(record);
            }
        }
        Ok(found.into_values().collect())
    }

    pub(super) fn vuln_status_impl(&mut self) -> Result<Vec<VulnSourceStatus>, StoreError> {
        let rows = self.conn.query(
            "SELECT source, COUNT(*), MAX(modified_millis) FROM vuln_records
             GROUP BY source ORDER BY source",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(VulnSourceStatus {
                    source: dec(r.try_get(0)?),
                    records: count(r.try_get(1)?),
                    newest_modified_millis: r.try_get(2)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()?)
    }

    pub(super) fn replace_findings_impl(
        &mut self,
        image_arn: &str,
        rows: &[FindingRow],
    ) -> Result<(), StoreError> {
        check_findings_image(image_arn, rows)?;
        self.conn.execute(
            "DELETE FROM scan_findings WHERE image_arn = $1",
            &[&enc(image_arn)],
        )?;
        self.update_findings_impl(image_arn, rows, &[])
    }

    pub(super) fn update_findings_impl(
        &mut self,
        image_arn: &str,
        put: &[FindingRow],
        remove: &[String],
    ) -> Result<(), StoreError> {
        check_findings_image(image_arn, put)?;
        if !remove.is_empty() {
            let ids: Vec<String> = remove.iter().map(|id| enc(id).into_owned()).collect();
            self.conn.execute(
                "DELETE FROM scan_findings WHERE image_arn = $1 AND vulnerability_id = ANY($2)",
                &[&enc(image_arn), &ids],
            )?;
        }
        for chunk in last_finding_of_each(put).chunks(CHUNK) {
            let column = |f: fn(&FindingRow) -> &str| -> Vec<String> {
                chunk.iter().map(|r| enc(f(r)).into_owned()).collect()
            };
            let pipelines: Vec<Option<String>> = chunk
                .iter()
                .map(|r| r.pipeline_arn.as_deref().map(|p| enc(p).into_owned()))
                .collect();
            self.conn.execute(
                "INSERT INTO scan_findings
                     (image_arn, account, region, pipeline_arn, vulnerability_id, severity, body)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[])
                 ON CONFLICT (image_arn, vulnerability_id) DO UPDATE SET
                     account = EXCLUDED.account, region = EXCLUDED.region,
                     pipeline_arn = EXCLUDED.pipeline_arn, severity = EXCLUDED.severity,
                     body = EXCLUDED.body",
                &[
                    &column(|r| &r.image_arn),
                    &column(|r| &r.account),
                    &column(|r| &r.region),
                    &pipelines,
                    &column(|r| &r.vulnerability_id),
                    &column(|r| &r.severity),
                    &column(|r| &r.body),
                ],
            )?;
        }
        Ok(())
    }

    pub(super) fn findings_of_image_impl(
        &mut self,
        image_arn: &str,
    ) -> Result<Vec<FindingRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT image_arn, account, region, pipeline_arn, vulnerability_id, severity, body
             FROM scan_findings WHERE image_arn = $1 ORDER BY vulnerability_id",
            &[&enc(image_arn)],
        )?;
        Ok(rows.iter().map(finding_from).collect::<Result<_, _>>()?)
    }

    pub(super) fn list_findings_impl(
        &mut self,
        q: &FindingQuery,
    ) -> Result<Vec<FindingRow>, StoreError> {
        // Without a cursor, everything sorts after ("", ""): ARNs and ids are never empty.
        let (after_image, after_id) = q
            .after
            .as_ref()
            .map(|(a, v)| (enc(a), enc(v)))
            .unwrap_or_default();
        let (sql, value) = pick(&LIST_FINDINGS, q.filter.as_ref());
        let rows = self.conn.query(
            sql,
            &[
                &enc(&q.account),
                &enc(&q.region),
                &after_image,
                &after_id,
                &i64::try_from(q.limit).unwrap_or(i64::MAX),
                &value.map(enc),
            ],
        )?;
        Ok(rows.iter().map(finding_from).collect::<Result<_, _>>()?)
    }

    pub(super) fn count_findings_impl(
        &mut self,
        account: &str,
        region: &str,
        filter: Option<&FindingFilter>,
    ) -> Result<SeverityCountsRow, StoreError> {
        let (sql, value) = pick(&COUNT_FINDINGS, filter);
        let rows = self
            .conn
            .query(sql, &[&enc(account), &enc(region), &value.map(enc)])?;
        let Some(r) = rows.first() else {
            return Ok(SeverityCountsRow::default());
        };
        Ok(SeverityCountsRow {
            all: count(r.try_get(0)?),
            critical: count(r.try_get(1)?),
            high: count(r.try_get(2)?),
            medium: count(r.try_get(3)?),
        })
    }
}
