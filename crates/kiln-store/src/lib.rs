//! Persistence for Kiln.
//!
//! Every API call runs inside one transaction ([`Txn`]): reads in a read-only one, every change
//! in the single write transaction of its call, so a call's checks and writes (including its
//! idempotency record) commit together or not at all. Resources are rows keyed by ARN with the
//! domain record encoded as JSON; tags, references between resources and idempotency tokens
//! have tables of their own.
//!
//! - [`txn`]: the backend-neutral transaction interface and its typed helpers.
//! - [`sqlite`]: the embedded SQLite backend (WAL, one writer, a pool of readers).

pub mod error;
pub mod sqlite;
pub mod txn;

pub use error::StoreError;
pub use sqlite::SqliteStore;
pub use txn::{ListQuery, Row, TokenKey, TokenRecord, Txn, TxnExt};
