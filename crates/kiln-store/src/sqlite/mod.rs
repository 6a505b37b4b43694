//! The embedded backend: one SQLite file in WAL mode.
//!
//! Reads use a small pool of read-only connections and never wait for writers. An idle pooled
//! connection keeps its read transaction open while nothing has been committed since it began,
//! so a stream of reads takes no file locks per request (SQLite's locks are `fcntl` calls, which
//! cost more than the read itself). After every commit the writer ends the idle connections'
//! transactions, so the next read sees the commit and no stale snapshot holds back checkpoints.
//!
//! Writes go through one connection with **group commit**: each call runs in its own savepoint
//! inside a shared transaction, and the transaction is committed by the last call in line (the
//! one that finds nobody else waiting for the connection), or once a batch is large. A call
//! returns only after the transaction holding its savepoint has committed, so an answered write
//! is on disk; a call that fails rolls back its savepoint alone. Calls still run one at a time,
//! in order, so check-then-insert sequences (name clashes, idempotency tokens, references) cannot
//! race. Batching matters because each commit writes every page it touched to the WAL: many
//! small creates committed together share their pages.
//!
//! `synchronous=NORMAL` in WAL mode makes a committed transaction survive the process being
//! killed at any moment (the WAL is in the OS page cache once `COMMIT` returns); only a power
//! loss can lose the last commits, which [`Sync::Full`] prevents at the cost of an fsync each.

mod schema;
mod txn;
mod vuln;

pub use schema::SCHEMA_VERSION;

use crate::error::StoreError;
use crate::txn::Txn;
use rusqlite::{Connection, OpenFlags};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use txn::SqliteTxn;

/// How many idle read connections are kept.
const READ_POOL: usize = 8;
/// Most calls committed together; bounds the latency a batch adds to its first call.
const MAX_BATCH: usize = 64;
/// SQLite page cache per connection, in KiB (negative: KiB rather than pages).
const CACHE_KIB: i64 = -32 * 1024;
/// Reads through a memory map instead of a `pread` per page.
const MMAP_BYTES: i64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Survives a crash of the process (the default).
    Normal,
    /// Also survives a crash of the machine: an fsync per commit.
    Full,
}

/// The writer connection and the batch open on it.
struct WriterState {
    /// Taken out while a call runs; `None` afterwards only if that call panicked, in which case
    /// the next call opens a fresh connection.
    conn: Option<Connection>,
    /// The batch the open transaction belongs to, if one is open.
    open_batch: Option<u64>,
    calls_in_batch: usize,
    next_batch: u64,
}

/// What became of the batches: callers wait here for theirs.
#[derive(Default)]
struct Outcomes {
    /// Every batch up to and including this one has ended.
    ended_through: u64,
    /// Batches that ended without committing, with the reason (kept briefly).
    failed: Vec<(u64, String)>,
}

pub struct SqliteStore {
    path: PathBuf,
    sync: Sync,
    writer: Mutex<WriterState>,
    /// Calls waiting for the writer: while there are any, a finished call leaves the batch open
    /// for them to join.
    waiting: AtomicUsize,
    outcomes: Mutex<Outcomes>,
    ended: Condvar,
    readers: Mutex<Vec<Reader>>,
    /// Counts commits; a pooled read transaction is current if it began at the current count.
    generation: Arc<AtomicU64>,
    /// Tells the checkpoint thread to stop when the store is dropped.
    stop_checkpoints: Arc<AtomicBool>,
    /// Held for the life of the store: one process per database. Read snapshots are refreshed
    /// when this process commits, so a second writing process would leave them stale.
    _lock: std::fs::File,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpoints.store(true, Ordering::SeqCst);
    }
}

/// How often the checkpoint thread looks for new commits.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Copies committed pages from the WAL back into the database file, off the commit path.
/// PASSIVE checkpoints never block readers or the writer; the WAL restarts from its beginning
/// once a checkpoint has caught up and no reader still needs the old frames.
fn checkpointer(path: PathBuf, generation: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let conn = match Connection::open(&path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing_free_warning(&format!(
                "checkpoints disabled: cannot open {}: {e}",
                path.display()
            ));
            return;
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(1));
    let mut done = generation.load(Ordering::SeqCst);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let now = generation.load(Ordering::SeqCst);
        if now != done {
            let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
            // Once every frame is back in the database, new read transactions skip the WAL
            // altogether; bumping the count makes pooled readers start new ones.
            let complete = matches!(result, Ok((0, log, copied)) if log == copied);
            done = if complete {
                generation.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                now
            };
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// The store has no logger of its own; a failed checkpoint thread is reported on stderr.
fn tracing_free_warning(message: &str) {
    eprintln!("kiln-store: {message}");
}

/// A pooled read connection and, if its read transaction is open, the commit count it began at.
struct Reader {
    conn: Connection,
    snapshot: Option<u64>,
}

fn open_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    Ok(())
}

fn open_writer(path: &Path, sync: Sync) -> Result<Connection, StoreError> {
    let writer = Connection::open(path).map_err(|e| open_error(path, e))?;
    writer.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match sync {
        Sync::Normal => "NORMAL",
        Sync::Full => "FULL",
    };
    writer.pragma_update(None, "synchronous", sync)?;
    // Checkpoints run on their own thread (see `checkpointer`), never inside a commit: a
    // checkpoint copies and syncs many pages, and would stall every call waiting for the writer.
    writer.pragma_update(None, "wal_autocheckpoint", 0)?;
    writer.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    tune(&writer)?;
    Ok(writer)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path, sync: Sync) -> Result<SqliteStore, StoreError> {
        let lock_path = path.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| open_error(&lock_path, e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                open_error(path, "another kiln process is using this database")
            }
            std::fs::TryLockError::Error(e) => open_error(&lock_path, e),
        })?;
        let mut writer = open_writer(path, sync)?;
        schema::migrate(&mut writer, &path.display().to_string())?;
        let generation = Arc::new(AtomicU64::new(0));
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        {
            let (db, generation, stop) = (
                path.to_path_buf(),
                generation.clone(),
                stop_checkpoints.clone(),
            );
            std::thread::Builder::new()
                .name("kiln-checkpoint".into())
                .spawn(move || checkpointer(db, generation, stop))
                .map_err(|e| open_error(path, e))?;
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            sync,
            writer: Mutex::new(WriterState {
                conn: Some(writer),
                open_batch: None,
                calls_in_batch: 0,
                next_batch: 1,
            }),
            waiting: AtomicUsize::new(0),
            outcomes: Mutex::new(Outcomes::default()),
            ended: Condvar::new(),
            readers: Mutex::new(Vec::new()),
            generation,
            stop_checkpoints,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts commits (and completed checkpoints). Anything read while it stayed the same is
    /// still what the database holds.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn reader(&self) -> Result<Reader, StoreError> {
        if let Some(reader) = lock(&self.readers).pop() {
            return Ok(reader);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, e))?;
        tune(&conn)?;
        Ok(Reader {
            conn,
            snapshot: None,
        })
    }

    /// Runs `f` in a read-only transaction that sees every write answered before it began. The
    /// outer `Result` is the store's own failure.
    pub fn read<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        let Reader { conn, snapshot } = self.reader()?;
        let current = self.generation.load(Ordering::SeqCst);
        if snapshot != Some(current) {
            if snapshot.is_some() {
                conn.prepare_cached("ROLLBACK")?.execute([])?;
            }
            // The snapshot is taken by the first read; it includes at least `current` commits.
            conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
        }
        let mut txn = SqliteTxn::new(conn);
        let result = f(&mut txn);
        let mut reader = Reader {
            conn: txn.conn,
            snapshot: Some(current),
        };
        if self.generation.load(Ordering::SeqCst) != current {
            // A commit landed meanwhile: do not pool a snapshot that is already old.
            reader.conn.prepare_cached("ROLLBACK")?.execute([])?;
            reader.snapshot = None;
        }
        let mut pool = lock(&self.readers);
        if pool.len() < READ_POOL {
            pool.push(reader);
        }
        Ok(result)
    }

    /// After a commit: counts it, and ends the read transactions of idle pooled connections.
    fn committed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut pool = lock(&self.readers);
        for reader in pool.iter_mut().filter(|r| r.snapshot.is_some()) {
            if reader
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut s| s.execute([]))
                .is_err()
            {
                reader.snapshot = Some(u64::MAX); // never current: ended on its next use
            } else {
                reader.snapshot = None;
            }
        }
    }

    /// Runs `f` in the write transaction: its changes are committed if it returns `Ok` and
    /// rolled back if it returns `Err`. Returns once they are committed.
    pub fn write<R, E>(
        &self,
        f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
    ) -> Result<Result<R, E>, StoreError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut state = lock(&self.writer);
        self.waiting.fetch_sub(1, Ordering::SeqCst);

        let conn = match state.conn.take() {
            Some(conn) => conn,
            None => open_writer(&self.path, self.sync)?,
        };
        let mut txn = SqliteTxn::new(conn);
        let batch = match state.open_batch {
            Some(batch) => batch,
            None => {
                if let Err(e) = txn
                    .conn
                    .prepare_cached("BEGIN IMMEDIATE")
                    .and_then(|mut s| s.execute([]))
                {
                    state.conn = Some(txn.conn);
                    return Err(e.into());
                }
                let batch = state.next_batch;
                state.next_batch += 1;
                state.open_batch = Some(batch);
                state.calls_in_batch = 0;
                batch
            }
        };
        state.calls_in_batch += 1;
        let first_in_batch = state.calls_in_batch == 1;

        // The first call of a batch needs no savepoint: if it fails, the whole transaction
        // (which holds nothing else) is rolled back. Savepoints cost a copy of every page the
        // call touches, so an uncontended writer does not pay for them.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            if first_in_batch {
                Ok(f(&mut txn))
            } else {
                run_in_savepoint(&mut txn, f)
            }
        }));
        let result = match ran {
            Ok(Ok(Err(e))) if first_in_batch => {
                let rolled_back = txn
                    .conn
                    .prepare_cached("ROLLBACK")
                    .and_then(|mut s| s.execute([]).map(|_| ()));
                state.conn = Some(txn.conn);
                self.end_batch(
                    &mut state,
                    batch,
                    rolled_back.as_ref().err().map(|e| e.to_string()),
                );
                rolled_back?;
                return Ok(Err(e));
            }
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                // The savepoint could not be opened or closed: the batch is unusable.
                let _ = txn.conn.execute_batch("ROLLBACK");
                self.end_batch(&mut state, batch, Some(e.to_string()));
                state.conn = Some(txn.conn);
                return Err(e);
            }
            Err(panic) => {
                // Dropping the connection rolls the whole batch back; the next call opens anew.
                drop(txn);
                self.end_batch(
                    &mut state,
                    batch,
                    Some("a call in the same batch panicked".to_string()),
                );
                drop(state);
                resume_unwind(panic);
            }
        };

        let last_in_line =
            self.waiting.load(Ordering::SeqCst) == 0 || state.calls_in_batch >= MAX_BATCH;
        if last_in_line {
            let committed = txn
                .conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]).map(|_| ()));
            let failure = committed.as_ref().err().map(|e| e.to_string());
            if failure.is_some() {
                let _ = txn.conn.execute_batch("ROLLBACK");
            }
            state.conn = Some(txn.conn);
            if failure.is_none() {
                self.committed();
            }
            self.end_batch(&mut state, batch, failure);
            drop(state);
            committed?;
            return Ok(result);
        }
        state.conn = Some(txn.conn);
        drop(state);
        self.wait_for(batch)?;
        Ok(result)
    }

    fn end_batch(&self, state: &mut WriterState, batch: u64, failure: Option<String>) {
        state.open_batch = None;
        state.calls_in_batch = 0;
        let mut outcomes = lock(&self.outcomes);
        outcomes.ended_through = batch;
        if let Some(reason) = failure {
            outcomes.failed.push((batch, reason));
        }
        // Keep the failures that some caller may not have seen yet.
        outcomes.failed.retain(|(b, _)| batch - b < 1024);
        self.ended.notify_all();
    }

    fn wait_for(&self, batch: u64) -> Result<(), StoreError> {
        let mut outcomes = lock(&self.outcomes);
        while outcomes.ended_through < batch {
            outcomes = self.ended.wait(outcomes).unwrap_or_else(|p| p.into_inner());
        }
        match outcomes.failed.iter().find(|(b, _)| *b == batch) {
            Some((_, reason)) => Err(StoreError::BatchFailed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Forgets idempotency tokens created before `cutoff_millis`.
    pub fn purge_tokens(&self, cutoff_millis: i64) -> Result<usize, StoreError> {
        self.write(|tx| tx.purge_tokens(cutoff_millis))?
    }
}

/// Runs `f` in a savepoint: released if `f` succeeds, rolled back if it fails. The outer
/// `Result` is SQLite failing to manage the savepoint itself.
fn run_in_savepoint<R, E>(
    txn: &mut SqliteTxn,
    f: impl FnOnce(&mut (dyn Txn + 'static)) -> Result<R, E>,
) -> Result<Result<R, E>, StoreError> {
    txn.conn.prepare_cached("SAVEPOINT call")?.execute([])?;
    let result = f(txn);
    if result.is_err() {
        txn.conn.prepare_cached("ROLLBACK TO call")?.execute([])?;
    }
    txn.conn.prepare_cached("RELEASE call")?.execute([])?;
    Ok(result)
}
