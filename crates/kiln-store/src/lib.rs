//! Persistence for Kiln.
//!
//! Every API call runs inside one transaction ([`Txn`]): reads in a read-only one, every change
//! in the single write transaction of its call, so a call's checks and writes (including its
//! idempotency record) commit together or not at all. Resources are rows keyed by ARN with the
//! domain record encoded as JSON; tags, references between resources and idempotency tokens
//! have tables of their own.
//!
//! - [`txn`]: the backend-neutral transaction interface and its typed helpers.
//! - [`store`]: the [`Store`] callers hold, over one of the two backends.
//! - [`sqlite`]: the embedded SQLite backend (WAL, one writer, a pool of readers).
//! - [`postgres`]: the shared PostgreSQL backend (many processes, writes under one lock; a
//!   listener that hears the writes of other processes).

pub mod error;
mod migrate;
pub mod postgres;
pub mod sqlite;
pub mod store;
pub mod testing;
pub mod txn;
pub mod vulndb;

pub use error::StoreError;
pub use postgres::PgStore;
pub use sqlite::{SqliteStore, Sync};
pub use store::{Database, Store};
pub use txn::{BuildLogPart, Lease, ListQuery, Read, Row, TokenKey, TokenRecord, Txn, TxnExt};
pub use vulndb::{
    FindingFilter, FindingQuery, FindingRow, SeverityCountsRow, VulnPackageKey, VulnRecordRow,
    VulnSourceStatus,
};
