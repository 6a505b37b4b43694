//! `Txn` on a PostgreSQL connection. Every statement is prepared once per connection and kept:
//! an unprepared query costs a second round trip to the server.

use super::text::{dec, dec_opt, enc};
use crate::error::StoreError;
use crate::txn::{
    i64_of, slice_log, BuildLogPart, Lease, ListQuery, Read, Row, TokenKey, TokenRecord, Txn,
    LOG_CHUNKS_PER_READ,
};
use crate::vulndb::{
    FindingFilter, FindingQuery, FindingRow, SeverityCountsRow, VulnPackageKey, VulnRecordRow,
    VulnSourceStatus,
};
use kiln_domain::arn::ResourceKind;
use postgres::types::ToSql;
use postgres::{Client, Statement};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A pooled connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    statements: HashMap<&'static str, Statement>,
    /// A statement failed in the current transaction. PostgreSQL then refuses every later
    /// statement and turns `COMMIT` into a silent rollback, so a call that went on to return
    /// success must not be answered as committed.
    pub(super) failed: bool,
    /// Writes whose answer nobody needs, not sent yet (see [`Conn::defer`]).
    deferred: String,
    /// How many statements `deferred` holds.
    deferred_statements: usize,
    /// Answers read ahead by [`Txn::prefetch`], until the read is made or the call writes.
    pub(super) prefetched: Vec<(Read, Prefetched)>,
    /// The SQL-level prepared statements (`PREPARE`) exist on this connection.
    pub(super) ready: bool,
    /// The end of the open batch's previous call, sent with this call's first round trip (see
    /// `batch.rs`).
    pub(super) carried: Option<Carried>,
}

/// A call's end, not sent yet: its deferred writes, a marker naming it (so that a failure can
/// be told to be its own or the next call's), and the next call's savepoint.
pub(super) struct Carried {
    pub(super) sql: String,
    pub(super) statements: usize,
    /// The marker's value: the call's number in its batch.
    pub(super) member: usize,
    /// Where the call learns that its writes failed after all (it then rolled back alone).
    pub(super) failure: Arc<Mutex<Option<String>>>,
}

impl Carried {
    fn failed(self, reason: String) {
        *super::lock(&self.failure) = Some(reason);
    }
}

/// The setting the marker sets (transaction-local, undone with the savepoint it was set in).
pub(super) const MARKER: &str = "kiln.member";

/// A prefetched answer.
pub(super) enum Prefetched {
    Rows(Vec<Row>),
    Tags(BTreeMap<String, String>),
    Token(Option<TokenRecord>),
}

/// A parameter of a deferred statement.
pub(super) enum Lit<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

impl Conn {
    pub(super) fn new(client: Client) -> Conn {
        Conn {
            client,
            statements: HashMap::new(),
            failed: false,
            deferred: String::new(),
            deferred_statements: 0,
            prefetched: Vec::new(),
            ready: false,
            carried: None,
        }
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        self.statements.insert(sql, stmt.clone());
        Ok(stmt)
    }

    pub(super) fn noted<T>(&mut self, result: Result<T, postgres::Error>) -> Result<T, StoreError> {
        if result.is_err() {
            self.failed = true;
        }
        Ok(result?)
    }

    /// Queues a write whose result nobody reads, to go with the next round trip: the next
    /// statement that needs an answer, or the store's end of the call (which sends it with the
    /// next savepoint or the `COMMIT`). Every write of a call thus costs one round trip in
    /// all instead of one each, while the writer lock is held. `name` is one of [`DEFERRED`],
    /// run with `EXECUTE` so that the server plans it once per connection; the parameters are
    /// rendered as literals (escape strings, so the server's `standard_conforming_strings`
    /// does not matter). A write that then fails marks the call failed, like any statement.
    pub(super) fn defer(&mut self, name: &'static str, params: &[Lit<'_>]) {
        self.wrote();
        render_execute(name, params, &mut self.deferred);
        self.deferred_statements += 1;
    }

    /// The deferred writes, to send ahead of what ends the call, and how many statements
    /// they are.
    pub(super) fn take_deferred_counted(&mut self) -> (String, usize) {
        let statements = std::mem::take(&mut self.deferred_statements);
        (std::mem::take(&mut self.deferred), statements)
    }

    /// Puts back deferred writes taken for a round trip that did not run them.
    pub(super) fn restore_deferred(&mut self, sql: String, statements: usize) {
        self.deferred = sql + &self.deferred;
        self.deferred_statements += statements;
    }

    /// The call ends: its deferred writes, to send ahead of what ends it. What it read ahead
    /// and did not read is forgotten: the connection's next call is another transaction.
    pub(super) fn end_call(&mut self) -> (String, usize) {
        self.prefetched.clear();
        self.take_deferred_counted()
    }

    /// The call changed the database: what was read ahead may no longer be what a read would
    /// answer.
    fn wrote(&mut self) {
        self.prefetched.clear();
    }

    /// The prefetched answer to the first read `wanted` accepts, taken out.
    pub(super) fn take_prefetched(&mut self, wanted: impl Fn(&Read) -> bool) -> Option<Prefetched> {
        let at = self.prefetched.iter().position(|(read, _)| wanted(read))?;
        Some(self.prefetched.swap_remove(at).1)
    }

    /// Sends the previous call's end on its own. If its writes fail, they are rolled back
    /// alone, and its savepoint serves this call.
    pub(super) fn send_carried(&mut self) -> Result<(), StoreError> {
        let Some(carried) = self.carried.take() else {
            return Ok(());
        };
        if let Err(e) = self.client.batch_execute(&carried.sql) {
            carried.failed(e.to_string());
            let undone = self.client.batch_execute("ROLLBACK TO SAVEPOINT member");
            self.noted(undone)?;
        }
        Ok(())
    }

    /// After `failure` of a round trip that began with `carried`: undoes what failed and says
    /// whose it was. `Ok(true)`: this call's own statements failed (the previous call's end
    /// went through, and this call is back at its savepoint); `Ok(false)`: the previous call's
    /// end failed (it is rolled back, and its savepoint serves this call, whose statements
    /// did not run).
    pub(super) fn blame(
        &mut self,
        carried: Carried,
        failure: &postgres::Error,
    ) -> Result<bool, StoreError> {
        let answered = self.client.simple_query(&format!(
            "ROLLBACK TO SAVEPOINT member; SELECT current_setting('{MARKER}', true)"
        ));
        let messages = self.noted(answered)?;
        let marker = super::generation::first_value(&messages);
        if marker == Some(carried.member.to_string().as_str()) {
            return Ok(true);
        }
        carried.failed(failure.to_string());
        Ok(false)
    }

    /// Sends the deferred writes, so that what comes next sees them.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.send_carried()?;
        if self.deferred.is_empty() {
            return Ok(());
        }
        let (sql, _) = self.take_deferred_counted();
        let result = self.client.batch_execute(&sql);
        self.noted(result)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        self.flush()?;
        let result = self
            .statement(sql)
            .and_then(|stmt| self.client.query(&stmt, params));
        self.noted(result)
    }

    /// [`Conn::query`] for a statement that changes the database.
    fn query_write(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        self.wrote();
        self.query(sql, params)
    }

    /// A statement that changes the database, answering how many rows it changed.
    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.wrote();
        self.flush()?;
        let result = self
            .statement(sql)
            .and_then(|stmt| self.client.execute(&stmt, params));
        self.noted(result)
    }
}

impl Conn {
    /// Runs `f` on the client after the call's deferred writes, as a write (for `COPY`, which
    /// has no prepared statement): a failure marks the call failed like any statement's.
    pub(super) fn write_with_client<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.wrote();
        self.flush()?;
        let result = f(&mut self.client);
        self.noted(result)
    }
}

/// `EXECUTE name(params...);` with the parameters as literals.
pub(super) fn render_execute(name: &str, params: &[Lit<'_>], out: &mut String) {
    out.push_str("EXECUTE ");
    out.push_str(name);
    for (i, param) in params.iter().enumerate() {
        out.push_str(if i == 0 { "(" } else { ", " });
        literal(param, out);
    }
    out.push_str(if params.is_empty() { ";\n" } else { ");\n" });
}

/// `param` as an SQL literal.
fn literal(param: &Lit<'_>, out: &mut String) {
    match param {
        Lit::Text(Some(text)) => {
            out.push_str("E'");
            for c in text.chars() {
                match c {
                    '\'' => out.push_str("''"),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        Lit::Int(Some(n)) => out.push_str(&n.to_string()),
        Lit::Text(None) | Lit::Int(None) => out.push_str("NULL"),
    }
}

const PUT_ROW: &str = "kiln_put_row";
const DELETE_TAGS: &str = "kiln_delete_tags";
const DELETE_REFS: &str = "kiln_delete_refs";
const PUT_REF: &str = "kiln_put_ref";
const PUT_TAG: &str = "kiln_put_tag";
const REMOVE_TAG: &str = "kiln_remove_tag";
const PUT_TOKEN: &str = "kiln_put_token";
const PUT_SETTING: &str = "kiln_put_setting";
const ENQUEUE_BUILD: &str = "kiln_enqueue_build";
const SET_NEXT_RUN: &str = "kiln_set_next_run";
const CLEAR_NEXT_RUN: &str = "kiln_clear_next_run";
pub(super) const NOTIFY_WORK: &str = "kiln_notify_work";

/// The writes [`Conn::defer`] sends, by name; prepared on each connection before its first use.
pub(super) const DEFERRED: &[(&str, &str)] = &[
    (
        PUT_ROW,
        "INSERT INTO resources (arn, kind, account, region, name, version, build, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (arn) DO UPDATE SET kind = excluded.kind, account = excluded.account,
         region = excluded.region, name = excluded.name, version = excluded.version,
         build = excluded.build, body = excluded.body",
    ),
    (DELETE_TAGS, "DELETE FROM tags WHERE arn = $1"),
    (DELETE_REFS, "DELETE FROM refs WHERE from_arn = $1"),
    (
        PUT_REF,
        "INSERT INTO refs (from_arn, to_arn) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    ),
    (
        PUT_TAG,
        "INSERT INTO tags (arn, key, value) VALUES ($1, $2, $3)
         ON CONFLICT (arn, key) DO UPDATE SET value = excluded.value",
    ),
    (REMOVE_TAG, "DELETE FROM tags WHERE arn = $1 AND key = $2"),
    (
        PUT_TOKEN,
        "INSERT INTO tokens (account, region, operation, token, params_hash, response,
                             created_millis)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (account, region, operation, token) DO UPDATE SET
         params_hash = excluded.params_hash, response = excluded.response,
         created_millis = excluded.created_millis",
    ),
    (
        PUT_SETTING,
        "INSERT INTO settings (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    ),
    // The notification wakes the workers of every process when the transaction commits (see
    // `listen.rs`); sent with the insert, it costs no round trip of its own.
    (
        ENQUEUE_BUILD,
        "WITH queued AS (
             INSERT INTO builds (arn, queued_millis, worker) VALUES ($1, $2, NULL)
             ON CONFLICT DO NOTHING)
         SELECT pg_notify('kiln_work', '')",
    ),
    // The notification wakes the schedulers of every process: the earliest run may have moved.
    (
        SET_NEXT_RUN,
        "WITH scheduled AS (
             INSERT INTO schedules (pipeline_arn, next_run_millis) VALUES ($1, $2)
             ON CONFLICT (pipeline_arn) DO UPDATE SET next_run_millis = excluded.next_run_millis)
         SELECT pg_notify('kiln_work', '')",
    ),
    (
        CLEAR_NEXT_RUN,
        "DELETE FROM schedules WHERE pipeline_arn = $1",
    ),
    // What `enqueue_build` sends, alone: new vulnerability data for every process's workers.
    (NOTIFY_WORK, "SELECT pg_notify('kiln_work', '')"),
];

/// The reads [`Txn::prefetch`] can make ahead, also prepared by name (see `prefetch.rs`).
pub(super) const GET_ROW_SQL: &str = "SELECT arn, kind, account, region, name, version, build, body
     FROM resources WHERE arn = $1";
pub(super) const LIST_ROWS_SQL: &str =
    "SELECT arn, kind, account, region, name, version, build, body FROM resources
     WHERE account = $1 AND region = $2 AND kind = $3
       AND ($4::text IS NULL OR name = $4) AND ($5::text IS NULL OR arn > $5)
     ORDER BY arn";
pub(super) const TAGS_SQL: &str = "SELECT key, value FROM tags WHERE arn = $1";
pub(super) const TOKEN_SQL: &str = "SELECT params_hash, response, created_millis FROM tokens
     WHERE account = $1 AND region = $2 AND operation = $3 AND token = $4";

/// A transaction on a connection it owns (so that it is `'static`, like SQLite's). Beginning
/// and ending it is the store's job.
pub(super) struct PgTxn {
    pub(super) conn: Conn,
}

fn row_from(r: &postgres::Row) -> Result<Row, StoreError> {
    let arn = dec(r.try_get(0)?);
    let kind: &str = r.try_get(1)?;
    Ok(Row {
        kind: kind_of(&arn, kind)?,
        account: dec(r.try_get(2)?),
        region: dec(r.try_get(3)?),
        name: dec(r.try_get(4)?),
        version: dec_opt(r.try_get(5)?),
        build: build_of(&arn, r.try_get(6)?)?,
        body: dec(r.try_get(7)?),
        arn,
    })
}

/// The stored kind of the row `arn`.
pub(super) fn kind_of(arn: &str, kind: &str) -> Result<ResourceKind, StoreError> {
    ResourceKind::from_segment(kind).ok_or_else(|| StoreError::Corrupt {
        arn: arn.to_string(),
        message: format!("unknown kind {kind}"),
    })
}

/// The stored build number of the row `arn`.
pub(super) fn build_of(arn: &str, build: Option<i64>) -> Result<Option<u32>, StoreError> {
    build
        .map(|b| {
            u32::try_from(b).map_err(|_| StoreError::Corrupt {
                arn: arn.to_string(),
                message: format!("build number {b} out of range"),
            })
        })
        .transpose()
}

fn rows_from(rows: Vec<postgres::Row>) -> Result<Vec<Row>, StoreError> {
    rows.iter().map(row_from).collect()
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Txn for PgTxn {
    fn prefetch(&mut self, reads: &[Read]) -> Result<(), StoreError> {
        self.conn.prefetch(reads)
    }

    fn get_row(&mut self, arn: &str) -> Result<Option<Row>, StoreError> {
        if let Some(Prefetched::Rows(rows)) = self
            .conn
            .take_prefetched(|r| matches!(r, Read::Row(a) if a == arn))
        {
            return Ok(rows.into_iter().next());
        }
        let rows = self.conn.query(GET_ROW_SQL, &[&enc(arn)])?;
        rows.first().map(row_from).transpose()
    }

    fn list_rows(&mut self, q: &ListQuery) -> Result<Vec<Row>, StoreError> {
        if let Some(Prefetched::Rows(rows)) = self
            .conn
            .take_prefetched(|r| matches!(r, Read::List(query) if query == q))
        {
            return Ok(rows);
        }
        let rows = self.conn.query(
            LIST_ROWS_SQL,
            &[
                &enc(&q.account),
                &enc(&q.region),
                &q.kind.segment(),
                &q.name.as_deref().map(enc),
                &q.after.as_deref().map(enc),
            ],
        )?;
        rows_from(rows)
    }

    fn count_rows(
        &mut self,
        account: &str,
        region: &str,
        kind: ResourceKind,
    ) -> Result<u64, StoreError> {
        let rows = self.conn.query(
            "SELECT COUNT(*) FROM resources WHERE account = $1 AND region = $2 AND kind = $3",
            &[&enc(account), &enc(region), &kind.segment()],
        )?;
        let n: i64 = rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn rows_of_kind(
        &mut self,
        kind: ResourceKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let rows = self.conn.query(
            "SELECT arn, kind, account, region, name, version, build, body FROM resources
             WHERE kind = $1 AND ($2::text IS NULL OR arn > $2) ORDER BY arn LIMIT $3",
            &[&kind.segment(), &after.map(enc), &limit_of(limit)],
        )?;
        rows_from(rows)
    }

    fn put_row(&mut self, row: &Row) -> Result<(), StoreError> {
        self.conn.defer(
            PUT_ROW,
            &[
                Lit::Text(Some(&enc(&row.arn))),
                Lit::Text(Some(row.kind.segment())),
                Lit::Text(Some(&enc(&row.account))),
                Lit::Text(Some(&enc(&row.region))),
                Lit::Text(Some(&enc(&row.name))),
                Lit::Text(row.version.as_deref().map(enc).as_deref()),
                Lit::Int(row.build.map(i64::from)),
                Lit::Text(Some(&enc(&row.body))),
            ],
        );
        Ok(())
    }

    fn delete_row(&mut self, arn: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM resources WHERE arn = $1", &[&enc(arn)])?;
        let arn = enc(arn);
        self.conn.defer(DELETE_TAGS, &[Lit::Text(Some(&arn))]);
        self.conn.defer(DELETE_REFS, &[Lit::Text(Some(&arn))]);
        Ok(n > 0)
    }

    fn set_references(&mut self, from: &str, to: &[String]) -> Result<(), StoreError> {
        let from = enc(from);
        self.conn.defer(DELETE_REFS, &[Lit::Text(Some(&from))]);
        for target in to {
            self.conn.defer(
                PUT_REF,
                &[Lit::Text(Some(&from)), Lit::Text(Some(&enc(target)))],
            );
        }
        Ok(())
    }

    fn referrers(&mut self, to: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT from_arn FROM refs WHERE to_arn = $1 ORDER BY from_arn",
            &[&enc(to)],
        )?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0).map(dec))
            .collect::<Result<_, _>>()?)
    }

    fn tags(&mut self, arn: &str) -> Result<BTreeMap<String, String>, StoreError> {
        if let Some(Prefetched::Tags(tags)) = self
            .conn
            .take_prefetched(|r| matches!(r, Read::Tags(a) if a == arn))
        {
            return Ok(tags);
        }
        let rows = self.conn.query(TAGS_SQL, &[&enc(arn)])?;
        Ok(rows
            .iter()
            .map(|r| Ok((dec(r.try_get(0)?), dec(r.try_get(1)?))))
            .collect::<Result<_, postgres::Error>>()?)
    }

    fn set_tags(&mut self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let arn = enc(arn);
        for (k, v) in tags {
            self.conn.defer(
                PUT_TAG,
                &[
                    Lit::Text(Some(&arn)),
                    Lit::Text(Some(&enc(k))),
                    Lit::Text(Some(&enc(v))),
                ],
            );
        }
        Ok(())
    }

    fn remove_tags(&mut self, arn: &str, keys: &[String]) -> Result<(), StoreError> {
        let arn = enc(arn);
        for k in keys {
            self.conn.defer(
                REMOVE_TAG,
                &[Lit::Text(Some(&arn)), Lit::Text(Some(&enc(k)))],
            );
        }
        Ok(())
    }

    fn get_token(&mut self, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        if let Some(Prefetched::Token(token)) = self
            .conn
            .take_prefetched(|r| matches!(r, Read::Token(k) if k == key))
        {
            return Ok(token);
        }
        let rows = self.conn.query(
            TOKEN_SQL,
            &[
                &enc(&key.account),
                &enc(&key.region),
                &enc(&key.operation),
                &enc(&key.token),
            ],
        )?;
        Ok(rows
            .first()
            .map(|r| -> Result<TokenRecord, postgres::Error> {
                Ok(TokenRecord {
                    params_hash: dec(r.try_get(0)?),
                    response: dec(r.try_get(1)?),
                    created_millis: r.try_get(2)?,
                })
            })
            .transpose()?)
    }

    fn put_token(&mut self, key: &TokenKey, record: &TokenRecord) -> Result<(), StoreError> {
        self.conn.defer(
            PUT_TOKEN,
            &[
                Lit::Text(Some(&enc(&key.account))),
                Lit::Text(Some(&enc(&key.region))),
                Lit::Text(Some(&enc(&key.operation))),
                Lit::Text(Some(&enc(&key.token))),
                Lit::Text(Some(&enc(&record.params_hash))),
                Lit::Text(Some(&enc(&record.response))),
                Lit::Int(Some(record.created_millis)),
            ],
        );
        Ok(())
    }

    fn purge_tokens(&mut self, cutoff_millis: i64) -> Result<usize, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM tokens WHERE created_millis < $1",
            &[&cutoff_millis],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn enqueue_build(&mut self, arn: &str, queued_millis: i64) -> Result<(), StoreError> {
        self.conn.defer(
            ENQUEUE_BUILD,
            &[Lit::Text(Some(&enc(arn))), Lit::Int(Some(queued_millis))],
        );
        Ok(())
    }

    fn claim_build(
        &mut self,
        worker: &str,
        now_millis: i64,
        lease_millis: i64,
    ) -> Result<Option<String>, StoreError> {
        // SKIP LOCKED: a row another transaction is claiming is passed over instead of waited
        // for, so claims that do not run under the writer lock still never return the same row.
        let rows = self.conn.query_write(
            "UPDATE builds SET worker = $1, heartbeat_millis = $2, lease_expires_millis = $3
             WHERE arn = (
                 SELECT arn FROM builds WHERE worker IS NULL
                 ORDER BY queued_millis, arn LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING arn",
            &[
                &enc(worker),
                &now_millis,
                &now_millis.saturating_add(lease_millis),
            ],
        )?;
        Ok(rows.first().map(|r| r.try_get(0).map(dec)).transpose()?)
    }

    fn renew_leases(
        &mut self,
        worker: &str,
        now_millis: i64,
        expires_millis: i64,
    ) -> Result<usize, StoreError> {
        let n = self.conn.execute(
            "UPDATE builds SET heartbeat_millis = $2, lease_expires_millis = $3
             WHERE worker = $1",
            &[&enc(worker), &now_millis, &expires_millis],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn expired_leases(&mut self, now_millis: i64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let rows = self.conn.query(
            "SELECT arn, worker, heartbeat_millis, lease_expires_millis FROM builds
             WHERE worker IS NOT NULL
               AND (lease_expires_millis IS NULL OR lease_expires_millis < $1)
             ORDER BY lease_expires_millis NULLS FIRST, arn LIMIT $2",
            &[&now_millis, &limit_of(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(Lease {
                    arn: dec(r.try_get(0)?),
                    worker: dec(r.try_get(1)?),
                    heartbeat_millis: r.try_get(2)?,
                    expires_millis: r.try_get(3)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()?)
    }

    fn take_expired(&mut self, lease: &Lease, now_millis: i64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM builds WHERE arn = $1 AND worker = $2
               AND (lease_expires_millis IS NULL OR lease_expires_millis < $3)",
            &[&enc(&lease.arn), &enc(&lease.worker), &now_millis],
        )?;
        Ok(n > 0)
    }

    fn finish_build(&mut self, arn: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM builds WHERE arn = $1", &[&enc(arn)])?;
        Ok(())
    }

    fn queued_builds(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = self.conn.query(
            "SELECT arn, worker FROM builds ORDER BY queued_millis, arn",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| Ok((dec(r.try_get(0)?), dec_opt(r.try_get(1)?))))
            .collect::<Result<_, postgres::Error>>()?)
    }

    fn set_next_run(
        &mut self,
        pipeline_arn: &str,
        next_millis: Option<i64>,
    ) -> Result<(), StoreError> {
        let arn = enc(pipeline_arn);
        match next_millis {
            Some(next) => self
                .conn
                .defer(SET_NEXT_RUN, &[Lit::Text(Some(&arn)), Lit::Int(Some(next))]),
            None => self.conn.defer(CLEAR_NEXT_RUN, &[Lit::Text(Some(&arn))]),
        }
        Ok(())
    }

    fn due_runs(
        &mut self,
        now_millis: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self.conn.query(
            "SELECT pipeline_arn, next_run_millis FROM schedules WHERE next_run_millis <= $1
             ORDER BY next_run_millis, pipeline_arn LIMIT $2",
            &[&now_millis, &limit_of(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| Ok((dec(r.try_get(0)?), r.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()?)
    }

    fn earliest_run(&mut self) -> Result<Option<i64>, StoreError> {
        let rows = self
            .conn
            .query("SELECT MIN(next_run_millis) FROM schedules", &[])?;
        Ok(rows.first().map(|r| r.try_get(0)).transpose()?.flatten())
    }

    fn claim_run(
        &mut self,
        pipeline_arn: &str,
        due_millis: i64,
        next_millis: Option<i64>,
    ) -> Result<bool, StoreError> {
        // Compare-and-set: a concurrent claim waits for the row lock, then re-checks the due
        // time against the committed row and matches nothing.
        let n = match next_millis {
            Some(next) => self.conn.execute(
                "UPDATE schedules SET next_run_millis = $3
                 WHERE pipeline_arn = $1 AND next_run_millis = $2",
                &[&enc(pipeline_arn), &due_millis, &next],
            )?,
            None => self.conn.execute(
                "DELETE FROM schedules WHERE pipeline_arn = $1 AND next_run_millis = $2",
                &[&enc(pipeline_arn), &due_millis],
            )?,
        };
        Ok(n == 1)
    }

    fn get_setting(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .conn
            .query("SELECT value FROM settings WHERE name = $1", &[&enc(name)])?;
        Ok(rows.first().map(|r| r.try_get(0).map(dec)).transpose()?)
    }

    fn put_setting(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn.defer(
            PUT_SETTING,
            &[Lit::Text(Some(&enc(name))), Lit::Text(Some(&enc(value)))],
        );
        Ok(())
    }

    fn append_build_log(
        &mut self,
        build_id: &str,
        offset: u64,
        chunk: &[u8],
        last: bool,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO build_logs (build_id, start_byte, chunk, last) VALUES ($1, $2, $3, $4)",
            &[&enc(build_id), &i64_of(offset), &chunk, &last],
        )?;
        Ok(())
    }

    fn read_build_log(
        &mut self,
        build_id: &str,
        offset: u64,
        max: usize,
    ) -> Result<BuildLogPart, StoreError> {
        let id = enc(build_id);
        // The newest chunk ends the log, and only the closing append is `last`.
        let head = self.conn.query(
            "SELECT start_byte + length(chunk), last FROM build_logs
             WHERE build_id = $1 ORDER BY start_byte DESC LIMIT 1",
            &[&id],
        )?;
        let (size, complete): (i64, bool) = match head.first() {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, false),
        };
        // From the chunk that holds `offset` on.
        let rows = self.conn.query(
            "SELECT start_byte, chunk FROM build_logs
             WHERE build_id = $1 AND start_byte >= COALESCE(
                 (SELECT MAX(start_byte) FROM build_logs
                  WHERE build_id = $1 AND start_byte <= $2), 0)
             ORDER BY start_byte LIMIT $3",
            &[&id, &i64_of(offset), &LOG_CHUNKS_PER_READ],
        )?;
        let chunks = rows
            .iter()
            .map(|r| {
                let start: i64 = r.try_get(0)?;
                Ok((
                    u64::try_from(start).unwrap_or(0),
                    r.try_get::<_, Vec<u8>>(1)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(BuildLogPart {
            data: slice_log(&chunks, offset, max),
            size: u64::try_from(size).unwrap_or(0),
            complete,
        })
    }

    fn delete_build_log(&mut self, build_id: &str) -> Result<u64, StoreError> {
        self.conn.execute(
            "DELETE FROM build_logs WHERE build_id = $1",
            &[&enc(build_id)],
        )
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

    fn notify_workers(&mut self) -> Result<(), StoreError> {
        self.conn.defer(NOTIFY_WORK, &[]);
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
