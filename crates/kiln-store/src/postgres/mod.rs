//! The shared backend: one PostgreSQL database that many Kiln processes use at once.
//!
//! Every write transaction first takes one transaction-scoped advisory lock
//! (`pg_advisory_xact_lock(WRITE_LOCK)`), so writes run one at a time across every process on
//! the database, exactly as they run one at a time through SQLite's single writer. That keeps
//! every check-then-write sequence of the API (name clashes after normalisation, build numbers
//! as max + 1, idempotency tokens, references) correct without each one knowing about other
//! processes, and it never fails a call with a serialization error to retry. Under the lock,
//! READ COMMITTED sees every write committed before it, because the previous holder released
//! the lock only by committing.
//!
//! The lock is held until the commit's WAL flush ends, so one transaction per flush would cap
//! every process together at a few hundred writes a second. Instead each process commits its
//! concurrent write calls in batches, one savepoint per call and one `COMMIT` per batch (group
//! commit, `batch.rs`): a call is still all-or-nothing on its own, answered only once its batch
//! has committed, and serialized with every other call of every process.
//!
//! Reads run in REPEATABLE READ, READ ONLY transactions: one snapshot for the whole call, taken
//! after every write answered before it began (on any process), and they never wait for writes.
//! Every write transaction also bumps a database-wide counter, which lets the API's answer
//! cache serve on a shared database (`generation.rs`).
//!
//! Connections come from a small pool of our own (a mutex, a condition variable and a list):
//! each connection keeps its prepared statements, and a connection that broke is dropped
//! rather than put back. The writer connection stays out of the pool, with its transaction.

mod batch;
mod generation;
mod listen;
mod prefetch;
mod schema;
mod text;
mod txn;
mod vuln;

pub use listen::{Listener, CHANNEL};

pub use schema::SCHEMA_VERSION;

use crate::error::StoreError;
use crate::txn::Txn;
use postgres::NoTls;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard};
use txn::{Conn, PgTxn};

/// The advisory lock every write transaction holds ("KILNWRIT").
const WRITE_LOCK: i64 = 0x4B49_4C4E_5752_4954;
/// The advisory lock migrations hold ("KILNMIGR").
const MIGRATION_LOCK: i64 = 0x4B49_4C4E_4D49_4752;
/// Most connections one process opens.
const MAX_CONNECTIONS: usize = 32;
/// `BEGIN` of every read transaction.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

struct Pool {
    idle: Vec<Conn>,
    /// Connections open, idle or in use.
    open: usize,
}

pub struct PgStore {
    config: postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
    pool: Mutex<Pool>,
    returned: Condvar,
    /// `BEGIN`, the writer lock, the generation bump and the first savepoint: one round trip.
    begin_write: String,
    /// `BEGIN` of a read that also reads the generation its snapshot holds.
    begin_read_counted: String,
    /// `PREPARE`s every connection runs before its first use.
    prepare: String,
    writer: Box<batch::Writer>,
    counter: Box<generation::Counter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `e` means the server closed `conn` (so nothing sent on it ran).
fn is_closed(e: &postgres::Error, conn: &Conn) -> bool {
    e.is_closed()
        || conn.client.is_closed()
        || e.code() == Some(&postgres::error::SqlState::ADMIN_SHUTDOWN)
}

/// `url` with any password replaced, so that it can appear in messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/db`) and
    /// brings its schema up to date.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let config: postgres::Config = url.parse().map_err(|e| StoreError::Open {
            path: shown.clone(),
            message: format!("not a PostgreSQL URL: {e}"),
        })?;
        let store = PgStore {
            config,
            shown,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
            begin_write: format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK}); EXECUTE {}; SAVEPOINT member",
                generation::BUMP
            ),
            begin_read_counted: format!("{BEGIN_READ}; EXECUTE {}", generation::READ),
            prepare: txn::DEFERRED
                .iter()
                .chain(generation::PREPARED)
                .chain(prefetch::PREPARED)
                .map(|(name, sql)| format!("PREPARE {name} AS {sql};\n"))
                .collect(),
            writer: Box::new(batch::Writer::new()),
            counter: Box::default(),
        };
        // Not `connect`: the statements it prepares need the tables.
        let mut conn = store.checkout()?;
        schema::migrate(&mut conn.client, &store.shown)?;
        store.put_back(conn);
        Ok(store)
    }

    /// The database, without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The database's write generation, read by a query sent after this call began (shared
    /// with concurrent callers): an answer read at this generation is still current. See
    /// `generation.rs`.
    pub fn generation(&self) -> u64 {
        self.current_generation()
    }

    /// A connection (pooled, or newly opened) ready for the store's statements.
    fn connect(&self) -> Result<Conn, StoreError> {
        let mut conn = self.checkout()?;
        if !conn.ready {
            if let Err(e) = conn.client.batch_execute(&self.prepare) {
                drop(conn);
                self.forget();
                return Err(e.into());
            }
            conn.ready = true;
        }
        Ok(conn)
    }

    /// A pooled connection, or a new one while the pool is under its size.
    fn checkout(&self) -> Result<Conn, StoreError> {
        let mut pool = lock(&self.pool);
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.open < MAX_CONNECTIONS {
                pool.open += 1;
                break;
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
        drop(pool);
        match self.config.connect(NoTls) {
            Ok(client) => Ok(Conn::new(client)),
            Err(e) => {
                self.forget();
                Err(StoreError::Open {
                    path: self.shown.clone(),
                    message: e.to_string(),
                })
            }
        }
    }

    fn put_back(&self, conn: Conn) {
        if conn.client.is_closed() {
            self.forget();
            return;
        }
        lock(&self.pool).idle.push(conn);
        self.returned.notify_one();
    }

    /// A connection was dropped: another may be opened in its place.
    fn forget(&self) {
        lock(&self.pool).open -= 1;
        self.returned.notify_one();
    }

    /// Runs `f` in a read transaction begun with `begin` (`statements` statements, the last of
    /// which may answer a value), then ends it. The `reads` `f` will make (see
    /// [`Txn::prefetch`]) go with the `begin`, in the same round trip. Returns the first value
    /// the `begin` answered, if any. A connection whose transaction could not be ended is
    /// dropped.
    fn run<R, E>(
        &self,
        (begin, statements): (&str, usize),
        reads: &[crate::txn::Read],
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<(Result<R, E>, Option<String>), StoreError> {
        let wanted = prefetch::distinct(reads, &[]);
        let mut begin = format!("{begin};\n");
        prefetch::render_all(&wanted, &mut begin);
        let begin = begin.as_str();
        let mut conn = self.connect()?;
        let began = match conn.client.simple_query(begin) {
            Ok(messages) => messages,
            Err(e) => {
                if !is_closed(&e, &conn) {
                    self.discard_unless_idle(conn);
                    return Err(e.into());
                }
                // A pooled connection the server closed (it restarted, or dropped idle
                // clients): nothing has run on it yet, so the call can start over on a new one.
                drop(conn);
                self.forget();
                conn = self.connect()?;
                match conn.client.simple_query(begin) {
                    Ok(messages) => messages,
                    Err(e) => {
                        self.discard_unless_idle(conn);
                        return Err(e.into());
                    }
                }
            }
        };
        let mut results = prefetch::statement_results(began);
        let value = results
            .get(statements - 1)
            .and_then(|rows| rows.first())
            .and_then(|row| row.get(0))
            .map(str::to_string);
        if let Err(e) = conn.keep_answers(&wanted, statements, std::mem::take(&mut results)) {
            self.discard_unless_idle(conn);
            return Err(e);
        }
        let mut txn = PgTxn { conn };
        let result = match catch_unwind(AssertUnwindSafe(|| f(&mut txn))) {
            Ok(result) => result,
            Err(panic) => {
                // Dropping the connection ends its transaction on the server.
                drop(txn);
                self.forget();
                resume_unwind(panic);
            }
        };
        let mut conn = txn.conn;
        let (pending, _) = conn.end_call();
        let failed = std::mem::take(&mut conn.failed);
        if result.is_ok() && failed {
            self.discard_unless_idle(conn);
            return Err(StoreError::BatchFailed {
                reason: "a statement failed inside a call that then returned success".to_string(),
            });
        }
        let end = match result {
            Ok(_) => format!("{pending}COMMIT"),
            Err(_) => "ROLLBACK".to_string(),
        };
        match conn.client.batch_execute(&end) {
            Ok(()) => {
                self.put_back(conn);
                Ok((result, value))
            }
            Err(e) => {
                self.discard_unless_idle(conn);
                Err(StoreError::BatchFailed {
                    reason: e.to_string(),
                })
            }
        }
    }

    /// After a failed BEGIN or COMMIT the connection may be mid-transaction: roll back, and
    /// drop it if even that fails.
    fn discard_unless_idle(&self, mut conn: Conn) {
        if conn.client.batch_execute("ROLLBACK").is_ok() {
            self.put_back(conn);
        } else {
            drop(conn);
            self.forget();
        }
    }

    /// Runs `f` in a read-only transaction that sees every write answered before it began, by
    /// any process.
    pub fn read<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        Ok(self.run((BEGIN_READ, 1), &[], f)?.0)
    }

    /// [`PgStore::read`], also answering the write generation its snapshot holds: what `f`
    /// read is current for as long as [`PgStore::generation`] answers that number.
    pub fn read_at<R, E>(
        &self,
        reads: &[crate::txn::Read],
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<(Result<R, E>, u64), StoreError> {
        let (result, value) = self.run((&self.begin_read_counted, 2), reads, f)?;
        Ok((result, generation::parse(value.as_deref())?))
    }

    /// Runs `f` in a write transaction, one at a time across every process on the database,
    /// possibly together with other calls of this process (see `batch.rs`). Returns once its
    /// changes are committed; if `f` fails, only its own changes are rolled back.
    pub fn write<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        self.write_batched(f)
    }

    /// Forgets idempotency tokens created before `cutoff_millis`.
    pub fn purge_tokens(&self, cutoff_millis: i64) -> Result<usize, StoreError> {
        self.write(|tx| tx.purge_tokens(cutoff_millis))?
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://kiln:secret@db:5432/kiln"),
            "postgres://kiln:***@db:5432/kiln"
        );
        assert_eq!(
            super::redact("postgres://kiln@db/kiln"),
            "postgres://kiln@db/kiln"
        );
    }
}
