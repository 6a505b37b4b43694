//! Keeps scan findings current: when an import moves the vulnerability data's generation,
//! the scans of AVAILABLE images with scanning on are evaluated again against the new data
//! (`kiln_core::scans::reevaluate_stale`), in the background, a bounded number per pass so a
//! stop is never far off. Every worker process runs one; two of them never evaluate the same
//! scan twice for one generation (the record's generation is compared in its transaction).

use crate::Shared;
use std::sync::Arc;
use std::time::Duration;

/// How many scans one pass evaluates before looking at the stop flag again.
const PASS: usize = 200;
/// The longest wait between two looks at the generation (imports in other processes on
/// SQLite, which sends no notification, are seen within it).
const POLL: Duration = Duration::from_secs(5);

pub fn keep_findings_current(shared: &Arc<Shared>) {
    let mut seen_generation = None;
    loop {
        let seen = shared.core.work.seen();
        if shared.stopping() {
            return;
        }
        let generation = kiln_core::vulndb::read_generation(&shared.core.store).ok();
        if generation.is_some() && generation != seen_generation {
            let clock = shared.core.clock.clone();
            match kiln_core::scans::reevaluate_stale(
                &shared.core.store,
                || clock.now_millis(),
                PASS,
            ) {
                Ok(0) => seen_generation = generation,
                Ok(n) => {
                    tracing::info!(
                        scans = n,
                        "image scans evaluated against new vulnerability data"
                    );
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "evaluating image scans again failed"),
            }
        }
        shared.core.work.wait(seen, POLL);
    }
}
