//! Reads made ahead, several in one round trip ([`Txn::prefetch`](crate::Txn::prefetch)).
//!
//! A write call runs under the database-wide writer lock, and each of its reads is a round
//! trip while that lock is held: a CreateImagePipeline used to make five (its token, its
//! recipe, its infrastructure configuration, its name, and its schedule) before its writes.
//! Named ahead, they go as one simple query of `EXECUTE`s of statements prepared on every
//! connection, behind the call's deferred writes (so they see them), and their answers wait in
//! the connection until the call reads them. Any write of the call drops the answers not yet
//! read: under the writer lock (or in a read's snapshot) nothing else can change them.

use super::text::{dec, dec_opt, enc};
use super::txn::{build_of, kind_of, render_execute, Conn, Lit, Prefetched};
use super::txn::{GET_ROW_SQL, LIST_ROWS_SQL, TAGS_SQL, TOKEN_SQL};
use crate::error::StoreError;
use crate::txn::{Read, Row, TokenRecord};
use postgres::{SimpleQueryMessage, SimpleQueryRow};
use std::collections::BTreeMap;

const GET_ROW: &str = "kiln_get_row";
const LIST_ROWS: &str = "kiln_list_rows";
const TAGS: &str = "kiln_tags";
const TOKEN: &str = "kiln_token";

/// The statements prefetched reads run, by name; prepared on each connection before its first
/// use, with the same text the reads send on their own.
pub(super) const PREPARED: &[(&str, &str)] = &[
    (GET_ROW, GET_ROW_SQL),
    (LIST_ROWS, LIST_ROWS_SQL),
    (TAGS, TAGS_SQL),
    (TOKEN, TOKEN_SQL),
];

impl Conn {
    pub(super) fn prefetch(&mut self, reads: &[Read]) -> Result<(), StoreError> {
        let wanted = distinct(reads, &self.prefetched);
        if wanted.is_empty() {
            return Ok(());
        }
        let (deferred, deferred_statements) = self.take_deferred_counted();
        let mut sql = String::new();
        // The previous call's end (see `batch.rs`) goes first, in the same round trip.
        let carried = self.carried.take();
        let mut skip = deferred_statements;
        if let Some(carried) = &carried {
            sql.push_str(&carried.sql);
            skip += carried.statements;
        }
        sql.push_str(&deferred);
        render_all(&wanted, &mut sql);
        let messages = match (self.client.simple_query(&sql), carried) {
            (Ok(messages), _) => messages,
            (Err(e), None) => return self.noted(Err(e)),
            (Err(e), Some(carried)) => {
                if self.blame(carried, &e)? {
                    return self.noted(Err(e));
                }
                // The previous call's end failed, and nothing of this call ran: again, alone.
                self.restore_deferred(deferred, deferred_statements);
                return self.prefetch(reads);
            }
        };
        self.keep_answers(&wanted, skip, statement_results(messages))
    }

    /// Keeps the answers to `wanted`, the results after the first `skip` in `results`.
    pub(super) fn keep_answers(
        &mut self,
        wanted: &[&Read],
        skip: usize,
        results: Vec<Vec<SimpleQueryRow>>,
    ) -> Result<(), StoreError> {
        if results.len() != skip + wanted.len() {
            self.failed = true;
            return Err(StoreError::BatchFailed {
                reason: format!(
                    "a prefetch of {} statements answered {} results",
                    skip + wanted.len(),
                    results.len()
                ),
            });
        }
        for (read, rows) in wanted.iter().zip(results.into_iter().skip(skip)) {
            let answer = answer(read, &rows)?;
            self.prefetched.push(((*read).clone(), answer));
        }
        Ok(())
    }
}

/// `reads` without repeats and without those already answered in `known`.
pub(super) fn distinct<'r>(reads: &'r [Read], known: &[(Read, Prefetched)]) -> Vec<&'r Read> {
    let mut wanted: Vec<&Read> = Vec::with_capacity(reads.len());
    for read in reads {
        if !wanted.contains(&read) && !known.iter().any(|(r, _)| r == read) {
            wanted.push(read);
        }
    }
    wanted
}

/// Appends the `EXECUTE`s that make `reads`.
pub(super) fn render_all(reads: &[&Read], out: &mut String) {
    for read in reads {
        render(read, out);
    }
}

/// Appends the `EXECUTE` that makes `read`.
fn render(read: &Read, out: &mut String) {
    match read {
        Read::Row(arn) => render_execute(GET_ROW, &[Lit::Text(Some(&enc(arn)))], out),
        Read::Tags(arn) => render_execute(TAGS, &[Lit::Text(Some(&enc(arn)))], out),
        Read::List(q) => render_execute(
            LIST_ROWS,
            &[
                Lit::Text(Some(&enc(&q.account))),
                Lit::Text(Some(&enc(&q.region))),
                Lit::Text(Some(q.kind.segment())),
                Lit::Text(q.name.as_deref().map(enc).as_deref()),
                Lit::Text(q.after.as_deref().map(enc).as_deref()),
            ],
            out,
        ),
        Read::Token(key) => render_execute(
            TOKEN,
            &[
                Lit::Text(Some(&enc(&key.account))),
                Lit::Text(Some(&enc(&key.region))),
                Lit::Text(Some(&enc(&key.operation))),
                Lit::Text(Some(&enc(&key.token))),
            ],
            out,
        ),
    }
}

/// The rows of each statement of a simple query, in order.
pub(super) fn statement_results(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<SimpleQueryRow>> {
    let mut results = Vec::new();
    let mut rows = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(row),
            SimpleQueryMessage::CommandComplete(_) => results.push(std::mem::take(&mut rows)),
            _ => {}
        }
    }
    results
}

fn answer(read: &Read, rows: &[SimpleQueryRow]) -> Result<Prefetched, StoreError> {
    Ok(match read {
        Read::Row(_) | Read::List(_) => {
            Prefetched::Rows(rows.iter().map(row_of).collect::<Result<_, _>>()?)
        }
        Read::Tags(_) => Prefetched::Tags(
            rows.iter()
                .map(|r| Ok((text(r, 0)?, text(r, 1)?)))
                .collect::<Result<BTreeMap<_, _>, StoreError>>()?,
        ),
        Read::Token(_) => Prefetched::Token(
            rows.first()
                .map(|r| -> Result<TokenRecord, StoreError> {
                    Ok(TokenRecord {
                        params_hash: text(r, 0)?,
                        response: text(r, 1)?,
                        created_millis: number(r, 2, "tokens.created_millis")?.unwrap_or(0),
                    })
                })
                .transpose()?,
        ),
    })
}

fn row_of(r: &SimpleQueryRow) -> Result<Row, StoreError> {
    let arn = text(r, 0)?;
    Ok(Row {
        kind: kind_of(&arn, r.try_get(1)?.unwrap_or_default())?,
        account: text(r, 2)?,
        region: text(r, 3)?,
        name: text(r, 4)?,
        version: dec_opt(r.try_get(5)?.map(str::to_string)),
        build: build_of(&arn, number(r, 6, &arn)?)?,
        body: text(r, 7)?,
        arn,
    })
}

/// Column `i`, a NOT NULL text column.
fn text(r: &SimpleQueryRow, i: usize) -> Result<String, StoreError> {
    Ok(dec(r.try_get(i)?.unwrap_or_default().to_string()))
}

/// Column `i`, a BIGINT in its text form (`what` names it in the error).
fn number(r: &SimpleQueryRow, i: usize, what: &str) -> Result<Option<i64>, StoreError> {
    r.try_get(i)?
        .map(|v| {
            v.parse().map_err(|_| StoreError::Corrupt {
                arn: what.to_string(),
                message: format!("'{v}' is not a number"),
            })
        })
        .transpose()
}
