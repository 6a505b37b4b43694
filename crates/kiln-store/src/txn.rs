//! The transaction interface the API runs against. It is object-safe and speaks in rows, so
//! both backends (SQLite, PostgreSQL) implement the same few methods; [`TxnExt`] adds the typed
//! helpers on top for every backend.

use crate::error::StoreError;
use crate::vulndb::{
    FindingFilter, FindingQuery, FindingRow, SeverityCountsRow, VulnPackageKey, VulnRecordRow,
    VulnSourceStatus,
};
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::Resource;
use std::collections::BTreeMap;

/// One stored resource. The key columns are derived from the ARN so that lists can filter on
/// them without decoding bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub arn: String,
    pub kind: ResourceKind,
    pub account: String,
    pub region: String,
    /// The normalised name (the ARN's name segment).
    pub name: String,
    pub version: Option<String>,
    pub build: Option<u32>,
    /// The domain record, encoded by [`TxnExt`].
    pub body: String,
}

/// Rows of one kind in one account and region, in ARN order, after a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub account: String,
    pub region: String,
    pub kind: ResourceKind,
    /// Only rows with this normalised name.
    pub name: Option<String>,
    /// Only rows whose ARN sorts after this one.
    pub after: Option<String>,
}

/// Idempotency tokens are scoped like resources: the same token may be used in another account,
/// region or operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub account: String,
    pub region: String,
    pub operation: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hash of the request's parameters, to tell a retry from a reuse.
    pub params_hash: String,
    /// The response the first call answered, as JSON.
    pub response: String,
    pub created_millis: i64,
}

/// A claimed build and the lease its worker holds on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub arn: String,
    pub worker: String,
    /// When the worker last renewed it (claimed it, at first); `None` for claims made before
    /// leases existed.
    pub heartbeat_millis: Option<i64>,
    pub expires_millis: Option<i64>,
}

/// A read a call is about to make, named ahead of time (see [`Txn::prefetch`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Read {
    /// [`Txn::get_row`].
    Row(String),
    /// [`Txn::list_rows`].
    List(ListQuery),
    /// [`Txn::tags`].
    Tags(String),
    /// [`Txn::get_token`].
    Token(TokenKey),
}

pub trait Txn {
    /// Says which reads the call will make next, so that a backend whose reads are network
    /// round trips can make them all in one. It changes no answer: a prefetched read answers
    /// what the read itself would have answered when it is made, and a read the call never
    /// makes costs nothing more than its share of that round trip. Backends whose reads are
    /// local ignore it.
    fn prefetch(&mut self, reads: &[Read]) -> Result<(), StoreError> {
        let _ = reads;
        Ok(())
    }

    fn get_row(&mut self, arn: &str) -> Result<Option<Row>, StoreError>;
    fn list_rows(&mut self, query: &ListQuery) -> Result<Vec<Row>, StoreError>;
    /// How many rows of one kind an account holds in a region (for quotas), without reading them.
    fn count_rows(
        &mut self,
        account: &str,
        region: &str,
        kind: ResourceKind,
    ) -> Result<u64, StoreError>;
    /// Rows of one kind in every account and region, in ARN order after `after`, at most
    /// `limit` (for work that spans accounts, such as indexing schedules).
    fn rows_of_kind(
        &mut self,
        kind: ResourceKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;
    /// Inserts or replaces the row with this ARN.
    fn put_row(&mut self, row: &Row) -> Result<(), StoreError>;
    /// [`Txn::put_row`], then [`Txn::set_tags`] with `tags` (nothing if there are none): as a
    /// create stores a resource and the tags it came with. One write where the backend keeps
    /// tags beside the row (SQLite).
    fn put_row_tagged(
        &mut self,
        row: &Row,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.put_row(row)?;
        if tags.is_empty() {
            return Ok(());
        }
        self.set_tags(&row.arn, tags)
    }
    /// Deletes the row, its tags and the references it holds. `false` if there was none.
    fn delete_row(&mut self, arn: &str) -> Result<bool, StoreError>;

    /// Replaces the set of ARNs that `from` depends on.
    fn set_references(&mut self, from: &str, to: &[String]) -> Result<(), StoreError>;
    /// ARNs of resources that depend on `to`.
    fn referrers(&mut self, to: &str) -> Result<Vec<String>, StoreError>;

    fn tags(&mut self, arn: &str) -> Result<BTreeMap<String, String>, StoreError>;
    fn set_tags(&mut self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError>;
    fn remove_tags(&mut self, arn: &str, keys: &[String]) -> Result<(), StoreError>;

    fn get_token(&mut self, key: &TokenKey) -> Result<Option<TokenRecord>, StoreError>;
    fn put_token(&mut self, key: &TokenKey, record: &TokenRecord) -> Result<(), StoreError>;
    /// Forgets tokens created before `cutoff_millis`; returns how many.
    fn purge_tokens(&mut self, cutoff_millis: i64) -> Result<usize, StoreError>;

    /// Queues the build of an image (its ARN), in the same transaction that creates it.
    fn enqueue_build(&mut self, arn: &str, queued_millis: i64) -> Result<(), StoreError>;
    /// Claims the oldest unclaimed build for `worker`, with a lease until `now_millis +
    /// lease_millis` that [`Txn::renew_leases`] extends; `None` when none waits.
    fn claim_build(
        &mut self,
        worker: &str,
        now_millis: i64,
        lease_millis: i64,
    ) -> Result<Option<String>, StoreError>;
    /// The heartbeat of `worker`: every build it holds is leased until `expires_millis`, seen
    /// alive at `now_millis`. Returns how many builds it holds.
    fn renew_leases(
        &mut self,
        worker: &str,
        now_millis: i64,
        expires_millis: i64,
    ) -> Result<usize, StoreError>;
    /// Claimed builds whose lease ended before `now_millis` (a claim without a lease, made
    /// before leases existed, counts as ended), oldest lease first, at most `limit`.
    fn expired_leases(&mut self, now_millis: i64, limit: usize) -> Result<Vec<Lease>, StoreError>;
    /// Removes the queue entry of `lease` if it is still that claim and its lease still ended
    /// before `now_millis`; `false` when the worker renewed it or someone else took it first.
    fn take_expired(&mut self, lease: &Lease, now_millis: i64) -> Result<bool, StoreError>;
    /// Removes a build from the queue (finished, cancelled before it started, or recovered).
    fn finish_build(&mut self, arn: &str) -> Result<(), StoreError>;
    /// Every queued or claimed build: `(arn, worker)`.
    fn queued_builds(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError>;

    /// Sets (or with `None` removes) when a pipeline's schedule runs next.
    fn set_next_run(
        &mut self,
        pipeline_arn: &str,
        next_millis: Option<i64>,
    ) -> Result<(), StoreError>;
    /// The pipelines due at `now_millis` (next run at or before it), earliest first, at most
    /// `limit`.
    fn due_runs(&mut self, now_millis: i64, limit: usize)
        -> Result<Vec<(String, i64)>, StoreError>;
    /// The earliest next run of any pipeline.
    fn earliest_run(&mut self) -> Result<Option<i64>, StoreError>;
    /// Claims the run of `pipeline_arn` due at `due_millis` by moving its next run to `next`
    /// (`None` removes it); `false` when the pipeline's next run is no longer `due_millis`
    /// (another scheduler claimed it, or the pipeline changed).
    fn claim_run(
        &mut self,
        pipeline_arn: &str,
        due_millis: i64,
        next_millis: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// A named value that must survive restarts (for example the pagination signing key).
    fn get_setting(&mut self, name: &str) -> Result<Option<String>, StoreError>;
    fn put_setting(&mut self, name: &str, value: &str) -> Result<(), StoreError>;

    /// Appends `chunk` to the log of build `build_id` at byte `offset` (the log's size before
    /// it); `last` closes the log (the build wrote everything it will write).
    fn append_build_log(
        &mut self,
        build_id: &str,
        offset: u64,
        chunk: &[u8],
        last: bool,
    ) -> Result<(), StoreError>;
    /// Up to `max` bytes of the log of build `build_id` from byte `offset`.
    fn read_build_log(
        &mut self,
        build_id: &str,
        offset: u64,
        max: usize,
    ) -> Result<BuildLogPart, StoreError>;
    /// Forgets the log of build `build_id`; answers how many chunks it had.
    fn delete_build_log(&mut self, build_id: &str) -> Result<u64, StoreError>;

    // Vulnerability data (see `vulndb`). An import runs in one write transaction, so readers
    // see all of it or none of it.

    /// The stored `modified` of those of `ids` that `source` holds.
    fn vuln_modified(
        &mut self,
        source: &str,
        ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Every id `source` holds, in byte order.
    fn vuln_ids(&mut self, source: &str) -> Result<Vec<String>, StoreError>;
    /// Inserts or replaces records by (source, id), with their package keys (a replaced
    /// record's old keys go with it). A (source, id) given twice: the last one stays.
    fn put_vuln_records(&mut self, rows: &[VulnRecordRow]) -> Result<(), StoreError>;
    /// Removes records of `source` (and their package keys); answers how many there were.
    fn delete_vuln_records(&mut self, source: &str, ids: &[String]) -> Result<u64, StoreError>;
    /// Every record (of any source) with at least one of `keys`, once each, by (source, id),
    /// with `packages` left empty.
    fn vuln_records_for_packages(
        &mut self,
        keys: &[VulnPackageKey],
    ) -> Result<Vec<VulnRecordRow>, StoreError>;
    /// Every record (of any source) whose id is one of `ids`, by (source, id), with `packages`
    /// left empty.
    fn vuln_records_by_id(&mut self, ids: &[String]) -> Result<Vec<VulnRecordRow>, StoreError>;
    /// What each source holds, by source name.
    fn vuln_status(&mut self) -> Result<Vec<VulnSourceStatus>, StoreError>;
    /// Wakes the background work of every process sharing the database once this transaction
    /// commits (an import tells the others to re-evaluate their images). A single-process
    /// store has nobody else to wake.
    fn notify_workers(&mut self) -> Result<(), StoreError>;

    // Scan findings (see `vulndb`).

    /// Replaces every finding of `image_arn` with `rows` (none: forgets them). Rows naming
    /// another image are refused as corrupt rather than stored under the wrong image.
    fn replace_findings(&mut self, image_arn: &str, rows: &[FindingRow]) -> Result<(), StoreError>;
    /// Changes some findings of `image_arn`: `put` inserts or replaces by vulnerability id,
    /// `remove` forgets those ids (what a re-evaluation changed, without rewriting the rest).
    fn update_findings(
        &mut self,
        image_arn: &str,
        put: &[FindingRow],
        remove: &[String],
    ) -> Result<(), StoreError>;
    /// The findings of one image, by vulnerability id.
    fn findings_of_image(&mut self, image_arn: &str) -> Result<Vec<FindingRow>, StoreError>;
    /// One page of an account's findings in a Region (see [`FindingQuery`]).
    fn list_findings(&mut self, query: &FindingQuery) -> Result<Vec<FindingRow>, StoreError>;
    /// Severity counts of an account's findings in a Region, optionally filtered.
    fn count_findings(
        &mut self,
        account: &str,
        region: &str,
        filter: Option<&FindingFilter>,
    ) -> Result<SeverityCountsRow, StoreError>;
}

/// Part of a build log kept in the database (for the API servers of other machines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildLogPart {
    /// The bytes from the offset asked for.
    pub data: Vec<u8>,
    /// The log's size so far.
    pub size: u64,
    /// The log was closed: it will not grow.
    pub complete: bool,
}

/// A byte offset as SQL's 64-bit integer (logs never reach 2^63 bytes).
pub(crate) fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How many chunks one [`Txn::read_build_log`] reads at most; a reader asks again for more.
pub(crate) const LOG_CHUNKS_PER_READ: i64 = 256;

/// Cuts the bytes from `offset`, at most `max`, out of `chunks` (`(start, bytes)` in order,
/// the first one holding `offset` or starting after it).
pub(crate) fn slice_log(chunks: &[(u64, Vec<u8>)], offset: u64, max: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for (start, bytes) in chunks {
        if data.len() >= max {
            break;
        }
        let skip = usize::try_from(offset.saturating_sub(*start)).unwrap_or(usize::MAX);
        if skip >= bytes.len() {
            continue;
        }
        let take = (bytes.len() - skip).min(max - data.len());
        data.extend_from_slice(&bytes[skip..skip + take]);
    }
    data
}

/// The row `resource` is stored as: its record as JSON, under its ARN.
fn row_of<T: Resource>(resource: &T) -> Result<Row, StoreError> {
    let arn: &Arn = resource.arn();
    let body = serde_json::to_string(resource).map_err(|e| StoreError::Corrupt {
        arn: arn.to_string(),
        message: e.to_string(),
    })?;
    Ok(Row {
        arn: arn.to_string(),
        kind: arn.kind,
        account: arn.account.clone(),
        region: arn.region.clone(),
        name: arn.name.clone(),
        version: arn.version.clone(),
        build: arn.build,
        body,
    })
}

fn decode<T: Resource>(row: &Row) -> Result<T, StoreError> {
    serde_json::from_str(&row.body).map_err(|e| StoreError::Corrupt {
        arn: row.arn.clone(),
        message: e.to_string(),
    })
}

/// Typed access to resources, for every backend.
pub trait TxnExt: Txn {
    fn get<T: Resource>(&mut self, arn: &str) -> Result<Option<T>, StoreError> {
        self.get_row(arn)?.map(|row| decode(&row)).transpose()
    }

    fn list<T: Resource>(&mut self, query: &ListQuery) -> Result<Vec<T>, StoreError> {
        self.list_rows(query)?.iter().map(decode).collect()
    }

    fn put<T: Resource>(&mut self, resource: &T) -> Result<(), StoreError> {
        self.put_row(&row_of(resource)?)
    }

    /// Stores `resource` with the tags it was created with (see [`Txn::put_row_tagged`]).
    fn put_tagged<T: Resource>(
        &mut self,
        resource: &T,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Result<(), StoreError> {
        let row = row_of(resource)?;
        match tags {
            Some(tags) => self.put_row_tagged(&row, tags),
            None => self.put_row(&row),
        }
    }
}

impl<T: Txn + ?Sized> TxnExt for T {}
