//! A build's log: `<data>/logs/<build id>/build.log`, written line by line as the build runs
//! (stage changes, each step's start and end, every output line), so `kiln logs --follow` can
//! read it live. The component engine's own `TOE_*` folders (detailed output, chaining) sit
//! beside it in `toe/`.
//!
//! On a shared database the log is also appended to the database ([`kiln_store::Txn::append_build_log`]),
//! so that an API server on another machine can answer `kiln logs`: a thread of the log's own
//! writes what accumulated every [`FLUSH_EVERY`] and at once after a stage change or the
//! outcome, and closes the log when the build ends. The build never waits for the database: a
//! line only goes into a buffer, and past [`MAX_PENDING`] unwritten bytes lines are dropped
//! (from the database's copy only) and the gap is noted.

use kiln_core::clock::Clock;
use kiln_core::Core;
use kiln_toe::actions::Stream;
use kiln_toe::engine::{Observer, StepAt};
use kiln_toe::report::{Status, StepReport};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the database's copy of a log catches up with the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Unwritten bytes kept for the database at most; more are dropped from its copy.
pub const MAX_PENDING: usize = 8 << 20;

pub const LOG_FILE: &str = "build.log";
/// Beside the log: the ARN of the image the build makes.
pub const ARN_FILE: &str = "image.arn";

/// The log of one build.
pub struct BuildLog {
    file: Mutex<File>,
    /// The service's clock: a build on a test clock logs the times its image records.
    clock: Arc<dyn Clock>,
    /// The database's copy, on a shared database.
    remote: Option<RemoteLog>,
}

/// What the log's database thread has still to write.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Bytes dropped since the last write (the database fell behind).
    dropped: u64,
    /// Write now rather than at the next tick (a stage changed).
    urgent: bool,
    /// The build ended: write the rest, close the log, stop.
    closing: bool,
}

struct RemoteLog {
    pending: Arc<(Mutex<Pending>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

impl RemoteLog {
    fn start(core: Arc<Core>, build_id: String) -> std::io::Result<RemoteLog> {
        let pending: Arc<(Mutex<Pending>, Condvar)> = Arc::default();
        let shared = pending.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kiln-log-{build_id}"))
            .spawn(move || write_to_database(&core, &build_id, &shared))?;
        Ok(RemoteLog {
            pending,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn push(&self, line: &[u8], urgent: bool) {
        let (pending, wake) = &*self.pending;
        let mut p = lock(pending);
        if p.bytes.len() + line.len() > MAX_PENDING {
            p.dropped += line.len() as u64;
        } else {
            p.bytes.extend_from_slice(line);
        }
        if urgent {
            p.urgent = true;
            wake.notify_one();
        }
    }

    /// Writes what is left, closes the log in the database and waits for that.
    fn close(&self) {
        let (pending, wake) = &*self.pending;
        lock(pending).closing = true;
        wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The log's database thread: appends what accumulated, in order, until the log closes. A
/// failed write is tried again with what came since.
fn write_to_database(core: &Core, build_id: &str, pending: &(Mutex<Pending>, Condvar)) {
    let (pending, wake) = pending;
    let mut offset: u64 = 0;
    let mut warned = false;
    loop {
        let (mut chunk, closing) = {
            let guard = lock(pending);
            let (mut p, _) = wake
                .wait_timeout_while(guard, FLUSH_EVERY, |p| !p.urgent && !p.closing)
                .unwrap_or_else(|p| p.into_inner());
            p.urgent = false;
            if p.dropped > 0 {
                let note = format!(
                    "    [kiln: {} bytes of log are missing here: the database fell behind]\n",
                    p.dropped
                );
                p.bytes.extend_from_slice(note.as_bytes());
                p.dropped = 0;
            }
            (std::mem::take(&mut p.bytes), p.closing)
        };
        if !chunk.is_empty() || closing {
            let written = core
                .store
                .write(|tx| tx.append_build_log(build_id, offset, &chunk, closing));
            match written.and_then(|r| r) {
                Ok(()) => offset += chunk.len() as u64,
                Err(e) => {
                    if !warned {
                        tracing::warn!(build_id, error = %e, "appending a build log to the database failed; retrying");
                        warned = true;
                    }
                    if closing {
                        return;
                    }
                    let mut p = lock(pending);
                    chunk.append(&mut p.bytes);
                    p.bytes = chunk;
                }
            }
        }
        if closing {
            return;
        }
    }
}

/// The log file of a build.
pub fn log_path(logs_dir: &Path, build_id: &str) -> PathBuf {
    logs_dir.join(build_id).join(LOG_FILE)
}

fn stamp(clock: &dyn Clock) -> String {
    chrono::DateTime::from_timestamp_millis(clock.now_millis())
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl BuildLog {
    /// Opens the log of build `build_id` of the image `arn` (recorded beside it, so that an
    /// instance's directory name leads back to its image).
    pub fn create(
        logs_dir: &Path,
        build_id: &str,
        arn: &str,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<BuildLog> {
        let path = log_path(logs_dir, build_id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(ARN_FILE), arn)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(BuildLog {
            file: Mutex::new(file),
            clock,
            remote: None,
        })
    }

    /// The same log, also appended to the (shared) database of `core` for other machines.
    pub fn with_database(mut self, core: Arc<Core>, build_id: &str) -> std::io::Result<BuildLog> {
        self.remote = Some(RemoteLog::start(core, build_id.to_string())?);
        Ok(self)
    }

    fn write_line(&self, line: &str, urgent: bool) {
        let text = format!("{line}\n");
        {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            // A full disk must not stop a build; the failure shows as a gap in the log.
            let _ = file.write_all(text.as_bytes());
        }
        if let Some(remote) = &self.remote {
            remote.push(text.as_bytes(), urgent);
        }
    }

    /// A line of the build itself (stage changes, the outcome).
    pub fn event(&self, text: &str) {
        self.write_line(&format!("{} {text}", stamp(self.clock.as_ref())), true);
    }

    /// Ends the database's copy (written to the end and closed); the file needs nothing.
    pub fn close(&self) {
        if let Some(remote) = &self.remote {
            remote.close();
        }
    }
}

impl Drop for BuildLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Observer for BuildLog {
    fn step_started(&self, at: &StepAt) {
        if at.depth == 0 {
            self.event(&format!(
                "{} {}/{} ({}) started",
                at.document,
                at.phase,
                at.step,
                at.action.name()
            ));
        }
    }

    fn step_finished(&self, at: &StepAt, report: &StepReport, elapsed: Duration) {
        if at.depth > 0 {
            return;
        }
        let mut line = format!(
            "{} {}/{} {} in {} ms",
            at.document,
            at.phase,
            at.step,
            report.status.name(),
            elapsed.as_millis()
        );
        if report.status == Status::Failed {
            if let Some(message) = &report.failure_message {
                line.push_str(&format!(": {message}"));
            }
        }
        self.event(&line);
    }

    fn output(&self, _at: &StepAt, stream: Stream, line: &str) {
        let mark = match stream {
            Stream::Stdout => "│",
            Stream::Stderr => "│!",
        };
        self.write_line(&format!("    {mark} {line}"), false);
    }
}

/// Up to `max` bytes of a build's log from `offset`, and the log's size. A build that has not
/// started has an empty log.
pub fn read_from(path: &Path, offset: u64, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    if offset >= size {
        return Ok((Vec::new(), size));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(max as u64).read_to_end(&mut data)?;
    Ok((data, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_append_and_read_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(kiln_core::clock::ManualClock::at(1_893_492_000_000));
        let log = BuildLog::create(dir.path(), "b1", "arn:x", clock).unwrap();
        log.event("stage build started");
        let path = log_path(dir.path(), "b1");
        let (first, size) = read_from(&path, 0, 1 << 20).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&first),
            "2030-01-01T10:00:00.000Z stage build started\n",
            "lines are stamped with the service clock"
        );
        log.event("AVAILABLE");
        let (rest, total) = read_from(&path, size, 1 << 20).unwrap();
        assert!(String::from_utf8_lossy(&rest).ends_with("AVAILABLE\n"));
        assert_eq!(total, size + rest.len() as u64);
        let (none, _) = read_from(&dir.path().join("missing"), 0, 10).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn the_database_copy_is_the_file_and_is_closed_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let core =
            Arc::new(Core::open(&dir.path().join("data"), kiln_store::Sync::Normal).unwrap());
        let clock = Arc::new(kiln_core::clock::ManualClock::at(1_893_492_000_000));
        let logs = dir.path().join("logs");
        let log = BuildLog::create(&logs, "b1", "arn:x", clock)
            .unwrap()
            .with_database(core.clone(), "b1")
            .unwrap();
        let read = || {
            core.store
                .read(|tx| tx.read_build_log("b1", 0, 1 << 20))
                .unwrap()
                .unwrap()
        };
        log.event("stage build started");
        // A stage change is written at once (well before the next tick would).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while read().size == 0 {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!read().complete);
        for i in 0..100 {
            log.write_line(&format!("    │ line {i}"), false);
        }
        log.event("AVAILABLE");
        drop(log);
        let copy = read();
        assert!(copy.complete, "closed when the log is dropped");
        let (file, _) = read_from(&log_path(&logs, "b1"), 0, 1 << 20).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&copy.data),
            String::from_utf8_lossy(&file)
        );
    }
}
