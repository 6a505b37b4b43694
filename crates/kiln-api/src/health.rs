//! `GET /kiln/v1/health` (and `HEAD`): liveness and readiness for load balancers and systemd,
//! answered without a signature and without reading any account's data.
//!
//! The answer says whether the process is live (it answers at all), whether the database
//! answers a trivial read transaction within [`PROBE_TIMEOUT`], and whether builds can run on
//! this machine (what the binary's start-up checks found, kept in a [`Readiness`]; `checking`
//! until they finish). 200 while the database answers, 503 when it does not: a server without
//! its database can answer nothing else. Builds being impossible is reported, not a 503: the
//! API still works (a `kiln serve --build-concurrency 0` never builds at all).
//!
//! Only this exact path skips the signature check (the server compares the raw path); the
//! answer holds check names only, never paths, addresses or account ids. A probe of the
//! database is shared by the requests that arrive while it runs and its answer is kept for
//! [`FRESH`], so a load balancer polling hard costs the database one transaction a second; a
//! probe that hangs past its timeout is not started again while it hangs.

use crate::service::Service;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The one path answered without a signature.
pub const PATH: &str = "/kiln/v1/health";

/// How long the database may take to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a probe's answer is reused.
pub const FRESH: Duration = Duration::from_secs(1);

/// Whether builds can run here, as the start-up checks found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builds {
    /// The checks have not finished yet.
    Checking,
    Possible,
    /// Impossible: the names of the checks that stop them.
    Unavailable(Vec<String>),
}

/// The start-up checks' verdict, set by the binary once they finish.
#[derive(Debug)]
pub struct Readiness {
    builds: Mutex<Builds>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            builds: Mutex::new(Builds::Checking),
        }
    }
}

impl Readiness {
    pub fn set(&self, builds: Builds) {
        *self.builds.lock().unwrap_or_else(|p| p.into_inner()) = builds;
    }

    pub fn builds(&self) -> Builds {
        self.builds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The database probe shared by concurrent health requests.
#[derive(Default)]
pub(crate) struct DatabaseProbe {
    /// The last answer and when it was had; the lock is held while a probe runs, so that
    /// requests arriving meanwhile wait for its answer instead of sending their own.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// A probe's blocking call has not returned yet (possibly past its timeout).
    running: Arc<AtomicBool>,
}

impl DatabaseProbe {
    /// Whether the database answers a read transaction that reads nothing.
    pub(crate) async fn reachable(&self, service: &Arc<Service>) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last {
            if at.elapsed() < FRESH {
                return answer;
            }
        }
        let answer = if self.running.swap(true, Ordering::SeqCst) {
            // The previous probe is still waiting, past its timeout: the database does not
            // answer, and another blocked thread would not change that.
            false
        } else {
            let service = service.clone();
            let running = self.running.clone();
            let probe = tokio::task::spawn_blocking(move || {
                let answered = matches!(service.store.read(|_| Ok::<(), ()>(())), Ok(Ok(())));
                running.store(false, Ordering::SeqCst);
                answered
            });
            matches!(
                tokio::time::timeout(PROBE_TIMEOUT, probe).await,
                Ok(Ok(true))
            )
        };
        *last = Some((Instant::now(), answer));
        answer
    }
}

/// The status code and JSON body of a health answer.
pub(crate) fn answer(database: bool, builds: Option<Builds>) -> (u16, String) {
    let (builds, checks) = match builds {
        None => ("unknown", Vec::new()),
        Some(Builds::Checking) => ("checking", Vec::new()),
        Some(Builds::Possible) => ("possible", Vec::new()),
        Some(Builds::Unavailable(checks)) => ("unavailable", checks),
    };
    let body = serde_json::json!({
        "status": if database { "ok" } else { "unavailable" },
        "database": if database { "ok" } else { "unreachable" },
        "builds": builds,
        "checks": checks,
    });
    (if database { 200 } else { 503 }, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_checks_and_say_503_without_the_database() {
        let (status, body) = answer(true, Some(Builds::Possible));
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["builds"], "possible");
        assert_eq!(v["checks"], serde_json::json!([]));

        let (status, body) = answer(false, Some(Builds::Unavailable(vec!["privileges".into()])));
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["database"], "unreachable");
        assert_eq!(v["builds"], "unavailable");
        assert_eq!(v["checks"], serde_json::json!(["privileges"]));

        let readiness = Readiness::default();
        assert_eq!(readiness.builds(), Builds::Checking);
        readiness.set(Builds::Possible);
        assert_eq!(readiness.builds(), Builds::Possible);
    }
}
