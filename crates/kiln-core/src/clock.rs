//! Kiln's time. Every request, every schedule decision and the scheduler's waits read one
//! [`Clock`], so tests can run a server on a clock they move ([`FileClock`], `kiln serve
//! --clock-file`) or drive the scheduler on one they set ([`ManualClock`]) instead of waiting
//! for real minutes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
    /// Whether the time can jump (a test clock): the scheduler then looks at it often instead
    /// of sleeping until the next run.
    fn is_manual(&self) -> bool {
        false
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that stands still until it is set.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(millis: i64) -> ManualClock {
        ManualClock(AtomicI64::new(millis))
    }

    pub fn set(&self, millis: i64) {
        self.0.store(millis, Ordering::SeqCst);
    }

    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn is_manual(&self) -> bool {
        true
    }
}

/// A clock read from a file holding an RFC 3339 instant (`2030-01-01T10:00:00Z`), for tests of
/// a whole server: the test moves time by rewriting the file, also across restarts. While the
/// file is missing or unreadable the last good reading stands (the system clock at first).
#[derive(Debug)]
pub struct FileClock {
    path: PathBuf,
    last: Mutex<i64>,
}

impl FileClock {
    pub fn new(path: PathBuf) -> FileClock {
        FileClock {
            path,
            last: Mutex::new(SystemClock.now_millis()),
        }
    }
}

impl Clock for FileClock {
    fn now_millis(&self) -> i64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let read = std::fs::read_to_string(&self.path).ok().and_then(|text| {
            chrono::DateTime::parse_from_rfc3339(text.trim())
                .ok()
                .map(|t| t.timestamp_millis())
        });
        if let Some(millis) = read {
            *last = millis;
        }
        *last
    }

    fn is_manual(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_clock_follows_the_file_and_keeps_the_last_good_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now");
        std::fs::write(&path, "2030-01-01T10:00:00Z\n").unwrap();
        let clock = FileClock::new(path.clone());
        assert_eq!(clock.now_millis(), 1_893_492_000_000);
        std::fs::write(&path, "2030-01-01T10:01:00+00:00").unwrap();
        assert_eq!(clock.now_millis(), 1_893_492_060_000);
        std::fs::write(&path, "not a time").unwrap();
        assert_eq!(clock.now_millis(), 1_893_492_060_000);
        assert!(clock.is_manual());
    }
}
