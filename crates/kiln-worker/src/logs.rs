//! A build's log: `<data>/logs/<build id>/build.log`, written line by line as the build runs
//! (stage changes, each step's start and end, every output line), so `kiln logs --follow` can
//! read it live. The component engine's own `TOE_*` folders (detailed output, chaining) sit
//! beside it in `toe/`.

use kiln_core::clock::Clock;
use kiln_toe::actions::Stream;
use kiln_toe::engine::{Observer, StepAt};
use kiln_toe::report::{Status, StepReport};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const LOG_FILE: &str = "build.log";
/// Beside the log: the ARN of the image the build makes.
pub const ARN_FILE: &str = "image.arn";

/// The log of one build.
pub struct BuildLog {
    file: Mutex<File>,
    /// The service's clock: a build on a test clock logs the times its image records.
    clock: Arc<dyn Clock>,
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
        })
    }

    fn write_line(&self, line: &str) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // A full disk must not stop a build; the failure shows as a gap in the log.
        let _ = writeln!(file, "{line}");
    }

    /// A line of the build itself (stage changes, the outcome).
    pub fn event(&self, text: &str) {
        self.write_line(&format!("{} {text}", stamp(self.clock.as_ref())));
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
        self.write_line(&format!("    {mark} {line}"));
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
}
