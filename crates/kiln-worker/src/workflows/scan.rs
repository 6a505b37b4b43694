//! The vulnerability scan of a build (contract §2.1-2.2): CollectImageScanFindings reads the
//! packages of its instance (TEST_INSTANCE_CVE: the test instance, before the test components
//! run) and `kiln_core::scans` matches them against the data in the store. After the test
//! stage, a build with scanning on whose workflows collected nothing (a custom test workflow
//! without the step, or none at all) scans an instance of the image it made; then
//! ON_DEMAND_AMI_CVE's `scanResultCondition` may fail the image in the test stage, before
//! anything is distributed.
//!
//! The image's `scanState` follows: PENDING when the build starts, SCANNING while packages are
//! read, COLLECTING while findings are matched and stored, then COMPLETED or FAILED with the
//! reason; ABANDONED when the build ends first (`kiln_core::scans::abandon_if_unfinished`).

use super::context::BuildContext;
use kiln_core::scans::{self, ScanSummary};
use kiln_domain::resources::scan::{ScanState, ScanStatus};
use kiln_domain::resources::workflow::WorkflowType;
use kiln_instance::Instance;
use kiln_store::TxnExt;
use serde_json::Value;

fn set_state(ctx: &BuildContext, status: ScanStatus, reason: Option<String>) {
    let arn = ctx.image.arn.to_string();
    let written = ctx
        .shared
        .core
        .store
        .write(|tx| scans::set_state(tx, &arn, status, reason));
    if let Err(e) = written
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::warn!(arn, error = %e, "recording the scan state failed");
    }
}

/// Whether the image's build scans it.
pub fn enabled(ctx: &BuildContext) -> bool {
    ctx.image.scanning.as_ref().is_some_and(|s| s.is_on())
}

/// A build (or a retried one) starts with its scan PENDING.
pub fn start(ctx: &BuildContext) {
    if enabled(ctx) {
        set_state_anyway(ctx, ScanStatus::Pending, None);
    }
}

/// Scans `instance`'s root filesystem for the image; answers what it found, or why the scan
/// failed (the image's scanState says the same).
pub fn collect(ctx: &BuildContext, instance: &Instance) -> Result<String, String> {
    if !enabled(ctx) {
        return Ok("image scanning is not enabled for this image: nothing was collected".into());
    }
    set_state(ctx, ScanStatus::Scanning, None);
    let inventory = match ctx
        .builder()
        .collect_inventory(instance, ctx.shared.config.rpm_timeout)
    {
        Ok(inventory) => inventory,
        Err(reason) => {
            ctx.log.event(&format!("scan timed out: {reason}"));
            set_state(ctx, ScanStatus::TimedOut, Some(reason.clone()));
            return Err(format!("the image scan timed out: {reason}"));
        }
    };
    ctx.log.event(&format!(
        "scan: {} packages read ({} {})",
        inventory.packages.len(),
        inventory.os_id,
        inventory.os_version_id
    ));
    set_state(ctx, ScanStatus::Collecting, None);
    let now = ctx.now();
    let image = ctx.image.clone();
    let outcome = ctx
        .shared
        .core
        .store
        .write(|tx| scans::scan_image(tx, &image, inventory, now))
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match outcome {
        Ok(Ok(summary)) => {
            let text = describe(&summary);
            ctx.log.event(&format!("scan: {text}"));
            Ok(text)
        }
        Ok(Err(reason)) => {
            ctx.log.event(&format!("scan failed: {reason}"));
            Err(format!("the image scan failed: {reason}"))
        }
        Err(e) => {
            set_state(ctx, ScanStatus::Failed, Some(e.clone()));
            Err(format!("the image scan failed: {e}"))
        }
    }
}

fn describe(summary: &ScanSummary) -> String {
    summary.describe()
}

/// After the test stage: the scan the workflows did not make, then ON_DEMAND_AMI_CVE's gate.
/// An `Err` fails the image in the test stage with that message.
pub fn after_tests(ctx: &BuildContext) -> Result<(), String> {
    if !enabled(ctx) {
        return Ok(());
    }
    let arn = ctx.image.arn.to_string();
    let state = crate::run::read_image(ctx.shared, &arn).and_then(|i| i.scan_state);
    let scanned = state.as_ref().is_some_and(|s| s.status.is_terminal());
    if !scanned {
        ctx.log
            .event("scan: the test workflows collected no findings; scanning the image");
        if let Err(e) = scan_built(ctx) {
            ctx.log.event(&format!("scan failed: {e}"));
            set_state(ctx, ScanStatus::Failed, Some(e));
        }
    }
    if let Err(e) = push_scan_copy(ctx) {
        ctx.log.event(&format!("scan: {e}"));
        set_state_anyway(ctx, ScanStatus::Failed, Some(e));
    }
    let Some(condition) = ctx
        .image
        .scanning
        .as_ref()
        .filter(|s| s.on_demand())
        .and_then(|s| s.scan_result_condition.clone())
    else {
        return Ok(());
    };
    let image =
        crate::run::read_image(ctx.shared, &arn).ok_or_else(|| "the image is gone".to_string())?;
    match image.scan_state {
        Some(ScanState {
            status: ScanStatus::Completed,
            ..
        }) => {}
        other => {
            return Err(format!(
                "scanResultCondition cannot be checked: the image scan did not complete ({})",
                other
                    .and_then(|s| s.reason.or(Some(s.status.as_str().to_string())))
                    .unwrap_or_else(|| "it never ran".into())
            ))
        }
    }
    let findings = ctx
        .shared
        .core
        .store
        .read(|tx| scans::findings_of(tx, &arn))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let failing = scans::failing_findings(&findings, &condition);
    if failing.is_empty() {
        ctx.log.event(&format!(
            "scan: no counted finding above {}: the image passes scanResultCondition",
            condition.maximum_severity_label
        ));
        Ok(())
    } else {
        Err(scans::gate_message(&failing, &condition))
    }
}

/// Scans an instance of the image the build made (launched and terminated here).
fn scan_built(ctx: &BuildContext) -> Result<(), String> {
    let launched = super::steps::launch(ctx, WorkflowType::Test, &Value::Null)?;
    let id = launched
        .get("instanceId")
        .and_then(Value::as_str)
        .ok_or("the scan instance has no id")?
        .to_string();
    let result = match ctx.instance(&id) {
        Ok(Some(instance)) => collect(ctx, &instance).map(|_| ()),
        Ok(None) => Err("the image has no root filesystem to scan".into()),
        Err(e) => Err(e),
    };
    let ended = ctx.end_instance(&id, false);
    result.and(ended)
}

/// A container image's copy for the scan (`ecrConfiguration`), pushed to the Region's
/// registry when there is one; without, the image was scanned in Kiln's store (the API refused
/// an `ecrConfiguration` that would have nowhere to go).
fn push_scan_copy(ctx: &BuildContext) -> Result<(), String> {
    let Some(d) = ctx.image.scan_copy_destination() else {
        return Ok(());
    };
    let Some(registry) = ctx.shared.config.ecr_registries.for_region(&d.region) else {
        if ctx
            .image
            .scanning
            .as_ref()
            .is_some_and(|s| s.ecr_configured)
        {
            // The API refuses such a request; a Kiln restarted without the registry since
            // must not take ecrConfiguration for done.
            return Err(format!(
                "{}: the scanned copy goes to '{}' in {}, which has no registry for container images (--ecr-registry)",
                d.source, d.repository, d.region
            ));
        }
        ctx.log.event(
            "scan: no registry for container images is configured: the image was scanned in this machine's image store",
        );
        return Ok(());
    };
    let built = ctx
        .built()?
        .ok_or("the build made no image to copy for the scan")?;
    let repository = registry.repository(&d.repository);
    ctx.shared
        .store
        .push_registry_tags(
            &built,
            &registry.host_port,
            &repository,
            &d.tags,
            &registry.access(),
        )
        .map_err(|e| {
            format!(
                "pushing the scanned copy to {}/{repository} ({}): {e}",
                registry.host_port, d.source
            )
        })?;
    ctx.log.event(&format!(
        "scan: the scanned copy is {}",
        d.tags
            .iter()
            .map(|t| registry.reference(&d.repository, t))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    Ok(())
}

/// Sets the scan state even over a COMPLETED scan (the copy it was to be read from failed).
fn set_state_anyway(ctx: &BuildContext, status: ScanStatus, reason: Option<String>) {
    let arn = ctx.image.arn.to_string();
    let written = ctx.shared.core.store.write(|tx| {
        let Some(mut image) = tx.get::<kiln_domain::resources::image::Image>(&arn)? else {
            return Ok(());
        };
        image.scan_state = Some(ScanState { status, reason });
        tx.put(&image)
    });
    if let Err(e) = written
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::warn!(arn, error = %e, "recording the scan state failed");
    }
}
