//! Runs lifecycle policies and StartResourceStateUpdate executions
//! (`kiln_core::lifecycle`): a thread that looks on the service clock for ENABLED policies
//! whose daily run is due and for executions that have not ended, and drives them image by
//! image. On a test clock (`--clock-file`) it looks every 75 ms, so a test that moves the clock
//! sees the run promptly; otherwise every few seconds, and at every committed write.
//!
//! Container images a DELETE includes are deleted here from the registries of
//! `--ecr-registry` (the engine does no network IO); images kept only in the local store
//! (`oci:` URIs) go with the image-store entry when the image is removed.

use crate::Shared;
use kiln_core::lifecycle::run::{run_due, Registries};
use std::sync::Arc;
use std::time::Duration;

const POLL_TEST_CLOCK: Duration = Duration::from_millis(75);
const POLL: Duration = Duration::from_secs(3);
/// The least time between two looks when writes keep waking the thread: a look reads every
/// policy and unfinished execution, which a busy API should not pay for on each write.
const MIN_GAP_TEST_CLOCK: Duration = Duration::from_millis(25);
const MIN_GAP: Duration = Duration::from_millis(500);

struct EcrDeletes<'a>(&'a Shared);

impl Registries for EcrDeletes<'_> {
    fn delete(&self, region: &str, image_uris: &[String]) -> Result<(), String> {
        let Some(registry) = self.0.config.ecr_registries.for_region(region) else {
            // No registry: the image lives only in the local store and goes with the image.
            return Ok(());
        };
        // Deleting the manifest by digest removes every tag naming it.
        let Some(uri) = image_uris
            .iter()
            .find(|u| u.contains("@sha256:"))
            .or(image_uris.first())
        else {
            return Ok(());
        };
        if uri.starts_with("oci:") {
            return Ok(());
        }
        match self.0.store.delete_registry(uri, &registry.access()) {
            Ok(()) => Ok(()),
            Err(e) => {
                let text = e.to_string();
                // Already gone is a success (§4.3: externally modified resources).
                if text.contains("manifest unknown") || text.contains("not found") {
                    Ok(())
                } else {
                    Err(format!(
                        "deleting {uri} from {}: {text}",
                        registry.host_port
                    ))
                }
            }
        }
    }
}

pub fn run_policies(shared: &Arc<Shared>) {
    let (poll, min_gap) = if shared.core.clock.is_manual() {
        (POLL_TEST_CLOCK, MIN_GAP_TEST_CLOCK)
    } else {
        (POLL, MIN_GAP)
    };
    loop {
        let began = std::time::Instant::now();
        let seen = shared.core.work.seen();
        if shared.stopping() {
            return;
        }
        let clock = shared.core.clock.clone();
        let now = move || clock.now_millis();
        let stop = || shared.stopping();
        match run_due(&shared.core.store, &EcrDeletes(shared), &now, &stop) {
            Ok(0) => {}
            Ok(steps) => {
                shared.core.work.notify();
                tracing::debug!(steps, "lifecycle executions advanced");
            }
            Err(e) => tracing::warn!(error = %e, "running lifecycle executions failed"),
        }
        shared.core.work.wait(seen, poll);
        if let Some(rest) = min_gap.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
